/*
 * The route table: the engine's own routes, then each module's (W.wk_mods).
 * A path names one endpoint; the methods it accepts are a bit set, and HEAD
 * is allowed wherever GET is.  An unknown path is 404, a known path with
 * another method is 405 with Allow (SPEC section 4).  /auth comes first:
 * it is the hot path.
 */
#include <string.h>

#include "worker/worker.h"

static const struct worker_route dispatch_routes[] = {
	{ "/auth", 0, EP_AUTH, WR_M(HTTP_GET) | WR_M(HTTP_HEAD), "GET, HEAD",
	    h_auth },
	{ "/healthz", 0, EP_HEALTHZ, WR_M(HTTP_GET) | WR_M(HTTP_HEAD), "GET, HEAD",
	    h_healthz },
	{ "/readyz", 0, EP_READYZ, WR_M(HTTP_GET) | WR_M(HTTP_HEAD), "GET, HEAD",
	    h_readyz },
	{ "/metrics", 0, EP_METRICS, WR_M(HTTP_GET) | WR_M(HTTP_HEAD), "GET, HEAD",
	    h_metrics },
};

static const struct worker_route *
dispatch_match(const struct worker_route *rt, size_t nrt, struct http_str path)
{
	size_t	 i, n;

	for (i = 0; i < nrt; i++) {
		n = strlen(rt[i].wr_path);
		if (rt[i].wr_prefix ? (path.s_len > n &&
		    memcmp(path.s_ptr, rt[i].wr_path, n) == 0) :
		    (path.s_len == n && memcmp(path.s_ptr, rt[i].wr_path,
		    n) == 0))
			return &rt[i];
	}
	return NULL;
}

static const struct worker_route *
dispatch_find(struct http_str path)
{
	const struct worker_module *const *m;
	const struct worker_route *rt;

	rt = dispatch_match(dispatch_routes, sizeof(dispatch_routes) /
	    sizeof(dispatch_routes[0]), path);
	for (m = W.wk_mods; rt == NULL && *m != NULL; m++)
		rt = dispatch_match((*m)->wm_routes, (*m)->wm_nroutes, path);
	return rt;
}

/* An endpoint's label is the path of its first route. */
static void
dispatch_label(const struct worker_route *rt, size_t nrt)
{
	size_t	 i;

	for (i = 0; i < nrt; i++)
		if (rt[i].wr_ep < EP__COUNT && W.wk_ep_name[rt[i].wr_ep] == NULL)
			W.wk_ep_name[rt[i].wr_ep] = rt[i].wr_path;
}

void
dispatch_init(void)
{
	const struct worker_module *const *m;
	int	 ep;

	dispatch_label(dispatch_routes, sizeof(dispatch_routes) /
	    sizeof(dispatch_routes[0]));
	for (m = W.wk_mods; *m != NULL; m++)
		dispatch_label((*m)->wm_routes, (*m)->wm_nroutes);
	for (ep = 0; ep < EP__COUNT; ep++)
		if (W.wk_ep_name[ep] == NULL)
			W.wk_ep_name[ep] = "other";
}

enum handler_result
dispatch(struct conn *c)
{
	const struct worker_route *rt;

	if ((rt = dispatch_find(c->c_req.rq_path)) == NULL) {
		c->c_ep = EP_OTHER;
		resp_error(c, 404, "not_found", "no such endpoint");
		return HANDLER_DONE;
	}
	c->c_ep = rt->wr_ep;
	if ((rt->wr_methods & WR_M(c->c_req.rq_method)) == 0) {
		resp_start(c, 405);
		resp_header(c, "Allow", rt->wr_allow);
		resp_error_end(c, "method_not_allowed",
		    "this endpoint does not accept that method");
		return HANDLER_DONE;
	}
	return rt->wr_fn(c);
}
