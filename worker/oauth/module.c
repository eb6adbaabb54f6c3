/*
 * OAuth plugged into the engine: its routes and its per-worker set-up,
 * which the master hands to worker_main (worker.h: struct worker_module).
 */
#include "worker/oauth/oauth.h"
#include "worker/oauth/web.h"

static const struct worker_route oauth_routes[] = {
	{ "/token", 0, EP_TOKEN, WR_M(HTTP_POST), "POST", h_token },
	{ "/device_authorization", 0, EP_DEVICE, WR_M(HTTP_POST), "POST",
	    h_device_authorization },
	{ "/authorize", 0, EP_AUTHORIZE, WR_M(HTTP_GET) | WR_M(HTTP_POST),
	    "GET, POST", web_authorize },
	{ "/signin", 0, EP_WEB, WR_M(HTTP_POST), "POST", web_signin },
	{ "/consent", 0, EP_WEB, WR_M(HTTP_POST), "POST", web_consent },
	{ "/logout", 0, EP_WEB, WR_M(HTTP_POST), "POST", web_logout },
	{ "/device", 0, EP_WEB, WR_M(HTTP_GET) | WR_M(HTTP_POST), "GET, POST",
	    web_device },
	{ "/introspect", 0, EP_INTROSPECT, WR_M(HTTP_POST), "POST",
	    h_introspect },
	{ "/revoke", 0, EP_REVOKE, WR_M(HTTP_POST), "POST", h_revoke },
	{ "/credentials/revoke", 0, EP_LEAK, WR_M(HTTP_POST), "POST", h_leak },
	{ "/.well-known/oauth-authorization-server", 0, EP_WELLKNOWN,
	    WR_M(HTTP_GET) | WR_M(HTTP_HEAD), "GET, HEAD", h_wellknown },
	{ "/pats", 0, EP_PATS, WR_M(HTTP_GET) | WR_M(HTTP_HEAD) |
	    WR_M(HTTP_POST), "GET, HEAD, POST", h_pats },
	{ "/pats/", 1, EP_PATS, WR_M(HTTP_DELETE) | WR_M(HTTP_POST),
	    "DELETE, POST", h_pat_item },
	{ "/sessions", 0, EP_SESSIONS, WR_M(HTTP_GET) | WR_M(HTTP_HEAD),
	    "GET, HEAD", h_sessions },
	{ "/sessions/", 1, EP_SESSIONS, WR_M(HTTP_DELETE), "DELETE",
	    h_session_delete },
};

/* After the engine's set-up: the client cache (none: every client
 * authentication is fetched, which is slower but correct). */
static int
oauth_init(void)
{
	OA.oa_clients = client_cache_new();
	return web_init();
}

const struct worker_module oauth_module = {
	"oauth", oauth_routes, sizeof(oauth_routes) / sizeof(oauth_routes[0]),
	oauth_init,
};
