/*
 * The route table.  A path names one endpoint; the methods it accepts are a
 * bit set, and HEAD is allowed wherever GET is.  An unknown path is 404, a
 * known path with another method is 405 with Allow (SPEC section 4).
 */
#include <string.h>

#include "worker/worker.h"

#define RT_M(m) (1u << (m))

struct route {
	const char	*rt_path;
	int		 rt_prefix;	/* rt_path is a prefix ("/pats/") */
	enum endpoint	 rt_ep;
	unsigned	 rt_methods;
	const char	*rt_allow;
	handler_fn	 rt_fn;
};

static const struct route routes[] = {
	{ "/auth", 0, EP_AUTH, RT_M(HTTP_GET) | RT_M(HTTP_HEAD), "GET, HEAD",
	    h_auth },
	{ "/healthz", 0, EP_HEALTHZ, RT_M(HTTP_GET) | RT_M(HTTP_HEAD), "GET, HEAD",
	    h_healthz },
	{ "/readyz", 0, EP_READYZ, RT_M(HTTP_GET) | RT_M(HTTP_HEAD), "GET, HEAD",
	    h_readyz },
	{ "/metrics", 0, EP_METRICS, RT_M(HTTP_GET) | RT_M(HTTP_HEAD), "GET, HEAD",
	    h_metrics },
	{ "/token", 0, EP_TOKEN, RT_M(HTTP_POST), "POST", h_token },
	{ "/authorize", 0, EP_AUTHORIZE, RT_M(HTTP_POST), "POST", h_authorize },
	{ "/introspect", 0, EP_INTROSPECT, RT_M(HTTP_POST), "POST",
	    h_introspect },
	{ "/revoke", 0, EP_REVOKE, RT_M(HTTP_POST), "POST", h_revoke },
	{ "/.well-known/oauth-authorization-server", 0, EP_WELLKNOWN,
	    RT_M(HTTP_GET) | RT_M(HTTP_HEAD), "GET, HEAD", h_wellknown },
	{ "/pats", 0, EP_PATS, RT_M(HTTP_GET) | RT_M(HTTP_HEAD) | RT_M(HTTP_POST),
	    "GET, HEAD, POST", h_pats },
	{ "/pats/", 1, EP_PATS, RT_M(HTTP_DELETE), "DELETE", h_pat_delete },
};

static const struct route *
route_find(struct http_str path)
{
	size_t	 i, n;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		n = strlen(routes[i].rt_path);
		if (routes[i].rt_prefix ? (path.s_len > n &&
		    memcmp(path.s_ptr, routes[i].rt_path, n) == 0) :
		    (path.s_len == n && memcmp(path.s_ptr, routes[i].rt_path,
		    n) == 0))
			return &routes[i];
	}
	return NULL;
}

enum handler_result
dispatch(struct conn *c)
{
	const struct route *rt;

	if ((rt = route_find(c->c_req.rq_path)) == NULL) {
		c->c_ep = EP_OTHER;
		resp_error(c, 404, "not_found", "no such endpoint");
		return HANDLER_DONE;
	}
	c->c_ep = rt->rt_ep;
	if ((rt->rt_methods & RT_M(c->c_req.rq_method)) == 0) {
		resp_start(c, 405);
		resp_header(c, "Allow", rt->rt_allow);
		resp_json_end(c, resp_error_obj("method_not_allowed",
		    "this endpoint does not accept that method"));
		return HANDLER_DONE;
	}
	return rt->rt_fn(c);
}
