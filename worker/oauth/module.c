/*
 * OAuth plugged into the engine: its routes and its per-worker set-up,
 * which the master hands to worker_main (worker.h: struct worker_module).
 */
#include "worker/oauth/oauth.h"

static const struct worker_route oauth_routes[] = {
	{ "/token", 0, EP_TOKEN, WR_M(HTTP_POST), "POST", h_token },
	{ "/device_authorization", 0, EP_DEVICE, WR_M(HTTP_POST), "POST",
	    h_device_authorization },
	{ "/authorize", 0, EP_AUTHORIZE, WR_M(HTTP_POST), "POST", h_authorize },
	{ "/introspect", 0, EP_INTROSPECT, WR_M(HTTP_POST), "POST",
	    h_introspect },
	{ "/revoke", 0, EP_REVOKE, WR_M(HTTP_POST), "POST", h_revoke },
	{ "/.well-known/oauth-authorization-server", 0, EP_WELLKNOWN,
	    WR_M(HTTP_GET) | WR_M(HTTP_HEAD), "GET, HEAD", h_wellknown },
	{ "/pats", 0, EP_PATS, WR_M(HTTP_GET) | WR_M(HTTP_HEAD) |
	    WR_M(HTTP_POST), "GET, HEAD, POST", h_pats },
	{ "/pats/", 1, EP_PATS, WR_M(HTTP_DELETE), "DELETE", h_pat_delete },
};

/* After the engine's set-up: the client cache (none: every client
 * authentication is fetched, which is slower but correct). */
static int
oauth_init(void)
{
	OA.oa_clients = client_cache_new();
	return 0;
}

const struct worker_module oauth_module = {
	"oauth", oauth_routes, sizeof(oauth_routes) / sizeof(oauth_routes[0]),
	oauth_init,
};
