/*
 * The browser pages of sign-in for people (SPEC 11): GET /authorize,
 * POST /signin, POST /consent, POST /logout, GET and POST /device.
 * worker/oauth/README.md has the flow.
 *
 *   web.c            the request state, cookies, CSRF, the pages' headers,
 *                    template loading and rendering, redirects.
 *   web_authorize.c  GET /authorize and POST /consent.
 *   web_signin.c     POST /signin and POST /logout.
 *   web_device.c     GET and POST /device.
 *
 * Like the form endpoints (oauth.h), each request's state is one struct
 * web_req in c_pending_data, wiped and freed through its struct pending
 * header; every step finds it again there.  Pages are HTML rendered from
 * the templates (built in by contrib/html2c.sh, or the operator's
 * template_dir) through proto/html.c, whose one escaper every value
 * passes.  Only hashes of the session cookie, the consent ticket and the
 * code reach PostgreSQL; the cookie value and the password only the
 * request's memory.
 */
#ifndef TOKEND_WEB_H
#define TOKEND_WEB_H

#include <stddef.h>
#include <stdint.h>

struct web_tmpl {
	const char	*wt_name;		/* "signin": signin.html */
	const char	*wt_text;
};

/* contrib/html2c.sh's output: worker/oauth/templates/ (NULL-ended). */
extern const struct web_tmpl web_builtin[];
extern const size_t web_nbuiltin;

#ifndef WEB_TEMPLATES_ONLY

#include "worker/oauth/oauth.h"

#define WEB_COOKIE_SESSION	"tokend_session"
#define WEB_COOKIE_CSRF		"tokend_csrf"
#define WEB_HEX			(2 * TOKEN_HASH_LEN + 1)
#define WEB_TICKET_TTL		600	/* seconds a consent page is good for */
#define WEB_DEVICE_MAX_WRONG	5	/* wrong user codes per address ... */
#define WEB_DEVICE_WINDOW	300	/* ... in this many seconds */
#define WEB_NEXT_MAX		(OA_URI_MAX * 3 + OA_STATE_MAX * 3 + 512)

struct web_req {
	struct pending	 wr_pd;			/* first: c_pending_data */
	struct form	 wr_form;		/* query or body, in wr_arena */
	char		 wr_session[WEB_HEX];	/* hex SHA-256 of the cookie */
	int		 wr_has_session;	/* the request sent one */
	char		 wr_csrf[WEB_HEX];	/* what this request's forms carry */
	int		 wr_csrf_new;		/* minted now: nothing to check */
	char		 wr_csrf_cookie[WEB_HEX]; /* to set, or "" */
	char		 wr_set_session[TOKEN_LEN + 1]; /* to set, or "" */
	int		 wr_clear_session;
	int		 wr_retry_after;	/* a 429's Retry-After, or 0 */
	char		 wr_form_src[OA_URI_MAX + 1]; /* form-action beyond 'self' */
	char		 wr_tok[TOKEN_LEN + 1];	/* minted: code or ticket */
	char		 wr_user[TI_USER_LEN];
	int64_t		 wr_user_id;
	int		 wr_disabled;		/* POST /signin: the user's flag */
	/* GET /authorize: the client and the session, from tokend_web_begin. */
	char		 wr_client_pk[24];
	char		 wr_client_scope[TI_SCOPE_LEN];
	int		 wr_public;
	int		 wr_first_party;
	char		 wr_session_id[24];
	char		 wr_consent[TI_SCOPE_LEN];
	char		 wr_scope[TI_SCOPE_LEN];	/* normalised */
	char		 wr_code_user[8 + 1];	/* POST /device: normalised */
	size_t		 wr_arenalen;
	char		 wr_arena[];
};

/* ---- web.c ---------------------------------------------------------------- */

/* Load template_dir's files over the built-in pages.  0, or -1 (logged). */
int	web_init(void);

/*
 * c's request state from its query (body 0) or its form body (1), with
 * the cookies read, stored in c_pending_data.  NULL after answering (a
 * malformed query or body: the error page, 400; no memory: 503).
 */
struct web_req *web_req_new(struct conn *c, int body);
/* A step's result: DONE frees the state.  Returns r. */
enum handler_result web_done(struct conn *c, enum handler_result r);
/* From a callback: on DONE free the state and resume the connection. */
void	web_resume(struct conn *c, enum handler_result r);
/* The state again, from a pgq callback expecting one row; NULL after the
 * 503 page and resuming c. */
struct web_req *web_row(struct conn *c, PGresult *res);

/* Is the POST's csrf field the one this request's forms carry?  1, or 0
 * after the 403 page. */
int	web_csrf_ok(struct conn *c, struct web_req *wr);

/* A page: template name's body in the layout, with every security header
 * and the cookies wr asks for. */
void	web_page(struct conn *c, struct web_req *wr, int status,
	    const char *name, const char *title, const struct html_var *vars,
	    size_t nvars);
/* The error page. */
void	web_error(struct conn *c, struct web_req *wr, int status,
	    const char *title, const char *message);
/* The sign-in page: next is where to go once signed in, client who asks
 * (NULL: none named), error a failure to show (NULL: none). */
void	web_signin_page(struct conn *c, struct web_req *wr, int status,
	    const char *next, const char *client, const char *username,
	    const char *error);
/* The consent page for wr_tok's ticket. */
void	web_consent_page(struct conn *c, struct web_req *wr,
	    const char *client, const char *user, const char *scope);
/* 303 to location, with the cookies wr asks for. */
void	web_redirect(struct conn *c, struct web_req *wr, const char *location);
/*
 * 303 to redirect_uri with kv's query parameters (npairs name/value pairs,
 * a NULL value skipped) and iss (RFC 9207).  A result too long for the
 * Location header is the error page.
 */
void	web_redirect_client(struct conn *c, struct web_req *wr,
	    const char *redirect_uri, const char *const *kv, size_t npairs);
/* A query for wr's request (sql's parameters in p); DONE after the 503
 * page when it cannot be queued. */
enum handler_result web_query(struct conn *c, const char *sql, int n,
	    const char *const *p, pgq_cb cb);
/* Mint wr_tok (kind's prefix) and its hex hash into hash.  0 or -1. */
int	web_mint(struct web_req *wr, enum token_kind kind, char hash[WEB_HEX]);

/* ---- the handlers ------------------------------------------------------- */

enum handler_result web_authorize(struct conn *c);	/* GET; POST: API */
enum handler_result web_consent(struct conn *c);
enum handler_result web_signin(struct conn *c);
enum handler_result web_logout(struct conn *c);
enum handler_result web_device(struct conn *c);

#endif /* WEB_TEMPLATES_ONLY */
#endif /* TOKEND_WEB_H */
