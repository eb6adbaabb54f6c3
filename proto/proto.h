/*
 * proto: the wire formats tokend reads and writes.
 *
 *   http.c    strict HTTP/1.1 request parser (request line, headers,
 *             Content-Length framing) and the status table.
 *   token.c   token generation and format check (SPEC section 3),
 *             SHA-256 hashing, display prefixes.
 *   form.c    application/x-www-form-urlencoded and query decoding.
 *   text.c    UTF-8 validity; copies that refuse instead of truncating;
 *             ISO 8601 times.
 *   jsonw.c   flat JSON objects written in place; the string escaper.
 *   scope.c   RFC 6749 scope lists.
 *   grant.c   OAuth grant type names and a client's allowed set.
 *   addr.c    listen addresses, client addresses and CIDRs.
 *   html.c    the HTML escaper and the pages' template renderer.
 *   cookie.c  the Cookie request header.
 *
 * Contract: every function here is pure computation over caller-owned
 * memory.  No function allocates, logs, or touches a file descriptor, so
 * any process may call any of them, before or after fork.  Everything that
 * parses bytes from the network is fuzzed (tests/fuzz/).
 */
#ifndef TOKEND_PROTO_H
#define TOKEND_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- Limits ------------------------------------------------------------ */

/*
 * What tokenctl, the worker and the configuration all accept, defined once
 * here so that an operator's command and the HTTP API cannot drift apart.
 */
#define LIM_TEN_YEARS		315360000	/* seconds: longest lifetime */
#define LIM_USER_NAME_MAX	128	/* bytes of a user name */
#define LIM_PAT_NAME_MAX	128	/* bytes of a PAT's name */
#define LIM_CLIENT_ID_MAX	127	/* fits tok_info's ti_client */
#define LIM_URI_MAX		2048	/* a redirect URI */
#define LIM_EXPIRES_MIN		60	/* a PAT's expires_in, seconds */
#define LIM_EXPIRES_MAX		LIM_TEN_YEARS
#define LIM_OVERLAP_DEFAULT	86400	/* a PAT rotation's overlap: a day */
#define LIM_OVERLAP_MAX		604800	/* and at most a week (SPEC 12) */
#define LIM_RATE_MAX		1000000	/* a PAT's rate: uses per window */
#define LIM_RATE_WINDOW_MAX	86400	/* ... and its window, seconds */
/* A PAT's rate limit "N/SECONDS" (tokenctl --rate, POST /pats "rate"),
 * within the limits above: 0, or -1 (token.c). */
int	token_rate_parse(const char *s, uint32_t *n, uint32_t *secs);

/* ---- HTTP request parsing (http.c) ------------------------------------ */

#define HTTP_MAX_HEADER_BYTES 8192	/* request line + headers + CRLFCRLF */
#define HTTP_MAX_HEADERS      64

enum http_method {
	HTTP_OTHER = 0,		/* a syntactically valid method we do not serve */
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_OPTIONS,
	HTTP_PATCH,
};

/* "GET", "POST", ...; "-" for HTTP_OTHER. */
const char *http_method_name(enum http_method m);

/* A slice of the caller's input buffer; never NUL-terminated. */
struct http_str {
	const char	*s_ptr;
	size_t		 s_len;
};

struct http_header {
	struct http_str	 h_name;
	struct http_str	 h_value;	/* leading/trailing OWS removed */
};

struct http_req {
	enum http_method rq_method;
	struct http_str	 rq_method_str;
	struct http_str	 rq_target;	/* as sent: path plus ?query, or a URI */
	struct http_str	 rq_path;	/* target up to '?' */
	struct http_str	 rq_query;	/* after '?', empty if none */
	int		 rq_minor;	/* HTTP/1.rq_minor: 0 or 1 */
	int		 rq_keepalive;	/* after Connection and version rules */
	int		 rq_has_body;	/* Content-Length was present */
	size_t		 rq_content_length;
	size_t		 rq_header_bytes; /* bytes up to and including CRLFCRLF */
	size_t		 rq_nheaders;
	struct http_header rq_headers[HTTP_MAX_HEADERS];
	/* Shortcuts into rq_headers, s_ptr NULL when absent. */
	struct http_str	 rq_host;
	struct http_str	 rq_authorization;
	struct http_str	 rq_content_type;
};

/*
 * Parse one request head from buf[0..len).  Returns:
 *   > 0  the head is complete: the number of bytes it took (rq_header_bytes);
 *        the body, rq_content_length bytes, follows it in the buffer.
 *   0    incomplete: read more and call again with the same start.
 *   < 0  the request is bad: the negated HTTP status to answer before
 *        closing (-400 malformed, -431 head over HTTP_MAX_HEADER_BYTES or
 *        too many headers, -411 a body without Content-Length,
 *        -501 Transfer-Encoding (chunked bodies are refused), -505 a
 *        version other than HTTP/1.0 or HTTP/1.1, -413 Content-Length over
 *        max_body).  A second Host, Content-Length, Authorization or
 *        Content-Type is -400, as is a missing Host in HTTP/1.1 and a
 *        Host value that is not uri-host [":" port] (RFC 9112 3.2).
 * The target is origin-form or absolute-form (an http or https URI, RFC
 * 9112 3.2.2): rq_path and rq_query are then those of the URI ("/" for an
 * empty path, a static string) and rq_host is its authority, whatever the
 * Host header said.
 * The parser is stateless: calling it again on a longer prefix of the same
 * bytes gives the same answer as a single call on the whole.  req's slices
 * point into buf and live as long as buf does.
 */
int	http_parse_request(const char *buf, size_t len, size_t max_body,
	    struct http_req *req);

/* Case-insensitive header lookup; NULL when absent. */
const struct http_str *http_header_get(const struct http_req *req,
	    const char *name);

/*
 * Every status tokend sends, with its reason phrase: the one list behind
 * http_reason and the status labels of tokend_requests_total (shm.h), so a
 * status that can be sent has its own label.
 */
#define HTTP_STATUSES \
	X(100, "Continue") X(200, "OK") X(201, "Created") \
	X(202, "Accepted") \
	X(204, "No Content") X(301, "Moved Permanently") X(302, "Found") \
	X(304, "Not Modified") X(400, "Bad Request") \
	X(401, "Unauthorized") X(403, "Forbidden") X(404, "Not Found") \
	X(405, "Method Not Allowed") X(408, "Request Timeout") \
	X(411, "Length Required") X(413, "Content Too Large") \
	X(414, "URI Too Long") X(415, "Unsupported Media Type") \
	X(429, "Too Many Requests") \
	X(431, "Request Header Fields Too Large") \
	X(500, "Internal Server Error") X(501, "Not Implemented") \
	X(502, "Bad Gateway") X(503, "Service Unavailable") \
	X(505, "HTTP Version Not Supported")

/* "Not Found" for 404, ...; "Unknown" for codes we never send. */
const char *http_reason(int status);

/*
 * For the response writer: may s[0..n) be sent as a header field name (a
 * token, RFC 9110 5.6.2) or value (no CR, LF or NUL, which would split the
 * header or the response)?  1 or 0.
 */
int	http_field_name_ok(const char *s, size_t n);
int	http_field_value_ok(const char *s, size_t n);

/*
 * RFC 6750 2.1: "Bearer" (any case), one or more spaces, the token68, and
 * nothing after it but spaces.  Returns 1 with tok set, 0 when the value is
 * absent, another scheme, or malformed (no token, a second word).
 */
int	http_bearer(struct http_str auth, struct http_str *tok);

/*
 * Case-insensitive comparison of a slice with a C string.  An absent slice
 * (s_ptr NULL) equals nothing, not even "".
 */
int	http_str_eq_ci(struct http_str a, const char *b);
int	http_str_eq(struct http_str a, const char *b);

/* ---- Tokens (token.c) ------------------------------------------------- */

#define TOKEN_PREFIX_LEN   4	/* "tka_" */
#define TOKEN_ENTROPY_LEN  43
#define TOKEN_CRC_LEN      6
#define TOKEN_LEN          53	/* 4 + 43 + 6 */
#define TOKEN_DISPLAY_LEN  8	/* what logs and listings show */
#define TOKEN_HASH_LEN     32	/* SHA-256 */

enum token_kind {
	TOKEN_INVALID = 0,
	TOKEN_ACCESS,		/* tka_ */
	TOKEN_REFRESH,		/* tkr_ */
	TOKEN_PAT,		/* tkp_ */
	TOKEN_CODE,		/* tkc_ */
	TOKEN_DEVICE,		/* tkd_: RFC 8628 device_code */
	TOKEN_SESSION,		/* tks_: browser sign-in session cookie */
};

/*
 * Make a new token of the given kind into out (TOKEN_LEN characters and a
 * NUL).  Entropy from RAND_bytes.  Returns 0, or -1 when RAND_bytes fails.
 */
int	token_generate(enum token_kind kind, char out[TOKEN_LEN + 1]);

/*
 * The deterministic half of token_generate: format the given 32 bytes of
 * entropy as a token of that kind.  Returns 0, or -1 for TOKEN_INVALID.
 * Exposed for the known-answer tests; callers that want a token use
 * token_generate.
 */
int	token_format(enum token_kind kind, const uint8_t entropy[32],
	    char out[TOKEN_LEN + 1]);

/*
 * Check prefix, length, alphabet and CRC-32 checksum.  Returns the kind, or
 * TOKEN_INVALID.  Touches nothing but s.
 */
enum token_kind token_check(const char *s, size_t len);

/* SHA-256 of the whole 53-character token. */
void	token_hash(const char *tok, size_t len, uint8_t out[TOKEN_HASH_LEN]);

/* The SQL 'kind' name: "access", "refresh", "pat", "code"; NULL for
 * TOKEN_INVALID.  token_kind_from_name gives TOKEN_INVALID for any other
 * name (and for NULL). */
const char *token_kind_name(enum token_kind kind);
enum token_kind token_kind_from_name(const char *name);

/* Lower-case hex of n bytes into out (2n+1 bytes with the NUL). */
void	hex_encode(const uint8_t *in, size_t n, char *out);
/*
 * v in decimal, without printf (formatting numbers with snprintf was a
 * tenth of a cache hit's instructions): the digits end at buf + I64_DIGITS,
 * the return value points at the first, *len is their count.
 */
#define I64_DIGITS	24
char	*i64_digits(int64_t v, char buf[I64_DIGITS], size_t *len);
/* The value of one hex digit (either case), or -1. */
int	hex_value(int c);

/* Returns 0, or -1 when in is not 2n hex digits (either case). */
int	hex_decode(const char *in, size_t inlen, uint8_t *out, size_t n);

/* ---- Forms and queries (form.c) --------------------------------------- */

#define FORM_MAX_FIELDS 32

struct form_field {
	char	*f_name;	/* decoded, NUL-terminated, inside the arena */
	char	*f_value;
};

struct form {
	size_t		  fm_n;
	struct form_field fm_fields[FORM_MAX_FIELDS];
};

/*
 * Decode application/x-www-form-urlencoded in[0..len) ('+' is a space,
 * %XX escapes) into fm, writing the decoded strings into arena[0..arenalen).
 * An arena of len + FORM_MAX_FIELDS * 2 bytes always suffices.  Returns 0,
 * or -1 for a bad escape, a NUL byte, too many fields, or a field name given
 * twice (RFC 6749 3.2: parameters must not be repeated).
 */
int	form_parse(const char *in, size_t len, struct form *fm, char *arena,
	    size_t arenalen);

/*
 * Decode one form-urlencoded string ('+' is a space, %XX escapes) from
 * in[0..n) into out, NUL-terminated, cap bytes at most with the NUL.
 * Returns the decoded length, or -1 for a bad escape, a NUL, or no room.
 */
long	form_unescape(const char *in, size_t n, char *out, size_t cap);

/* The field's value, or NULL when absent. */
const char *form_get(const struct form *fm, const char *name);

/* ---- Scope lists (scope.c) --------------------------------------------- */

#define SCOPE_MAX	1000	/* characters of a stored scope list */
#define SCOPE_BAD_CHAR	(-1)
#define SCOPE_TOO_LONG	(-2)

/* Is the word w[0..n) one of the space-separated words of list? */
int	scope_has(const char *list, const char *w, size_t n);
/* Is every word of want in have?  An empty want is a subset of anything. */
int	scope_subset(const char *want, const char *have);
/*
 * The canonical form of in: single spaces, duplicates dropped, at most
 * SCOPE_MAX characters.  Returns 0, SCOPE_BAD_CHAR (not an RFC 6749
 * scope-token) or SCOPE_TOO_LONG.
 */
int	scope_normalize(const char *in, char *out, size_t outlen);

/* ---- Grant types (grant.c) -------------------------------------------- */

/* The grant types a client may use (clients.grant_types, SPEC 11). */
#define GRANT_CODE		(1u << 0)	/* authorization_code */
#define GRANT_REFRESH		(1u << 1)	/* refresh_token */
#define GRANT_PASSWORD		(1u << 2)	/* password */
#define GRANT_CLIENT_CREDENTIALS (1u << 3)	/* client_credentials */
#define GRANT_DEVICE		(1u << 4)	/* RFC 8628, GRANT_DEVICE_URN */
#define GRANT_NTYPES		5
#define GRANT_DEVICE_URN	"urn:ietf:params:oauth:grant-type:device_code"
#define GRANT_DEVICE_SHORT	"device_code"	/* tokenctl --grant */

/* The grant_type name of bit i (0 .. GRANT_NTYPES - 1), as /token takes it. */
const char *grant_name(int i);
/* The bit of a grant_type name; 0 when unknown. */
unsigned grant_bit(const char *name);
/* The bits of the space-separated names in words; unknown ones count
 * nothing. */
unsigned grant_set(const char *words);

/* ---- Text (text.c) ---------------------------------------------------- */

/*
 * The length of the UTF-8 sequence at s[0..n) (1 for ASCII), or 0 when it
 * is not valid RFC 3629 UTF-8: no overlongs, no surrogates, nothing past
 * U+10FFFF, no truncated sequence.
 */
size_t	utf8_seq_len(const unsigned char *s, size_t n);
/*
 * Is s[0..n) valid UTF-8 without NUL?  What every text value must be
 * before it is sent to PostgreSQL: a UTF-8 database refuses anything else
 * with an error, which must not be the client's to cause.
 */
int	utf8_valid(const char *s, size_t n);
/* The same for a C string; NULL (an absent value) is valid. */
int	utf8_valid_str(const char *s);
/*
 * Copy src into dst[0..cap) whole, or return -1 and copy nothing: an
 * identity (user, client, scope) is never cut short to fit.
 */
int	text_copy(char *dst, size_t cap, const char *src);
/*
 * Is every byte of s[0..n) an ASCII letter or digit, or one of extra?  The
 * alphabets of user names and PKCE verifiers.
 */
int	text_word_ok(const char *s, size_t n, const char *extra);
/*
 * secs since the epoch as UTC ISO 8601 (RFC 3339), the one format of every
 * time tokend shows: "2026-11-24T10:00:00Z", or with ms >= 0
 * "2026-11-24T10:00:00.123Z".  Returns 0, or -1 when secs is out of range.
 */
#define ISO8601_LEN	32
int	iso8601_format(int64_t secs, int ms, char out[ISO8601_LEN]);

/* ---- JSON objects written in place (jsonw.c) --------------------------- */

/*
 * A flat JSON object written straight into a caller's buffer, for the one
 * hot JSON answer (/introspect on a cache hit), where building a jansson
 * tree and dumping it cost more instructions than the rest of the request.
 * Strings are escaped as RFC 8259 requires; a byte that is not part of
 * valid UTF-8 is written as U+FFFD, so the output is always valid JSON.
 * A string of n bytes takes at most 6 * n bytes escaped.
 */
struct jsonw {
	char	*jw_buf;
	size_t	 jw_cap;
	size_t	 jw_len;
	int	 jw_fields;
	int	 jw_full;	/* something did not fit */
};

/*
 * The one string escaper, which log lines use too.  json_plain_run: how
 * many bytes at the start of s[0..n) go out as they are (printable ASCII
 * but " and \).  json_esc_char: the escape of the character at s (n > 0)
 * into out, its length in *outlen; returns the bytes of s it stands for.
 * Control characters and DEL are escaped, a byte that is not valid UTF-8
 * becomes \ufffd, so a value stays on one line and valid JSON.
 */
#define JSON_ESC_MAX	6
size_t	json_plain_run(const unsigned char *s, size_t n);
size_t	json_esc_char(const unsigned char *s, size_t n,
	    char out[JSON_ESC_MAX], size_t *outlen);

void	jw_begin(struct jsonw *jw, char *buf, size_t cap);
void	jw_str(struct jsonw *jw, const char *key, const char *val);
void	jw_int(struct jsonw *jw, const char *key, int64_t v);
/* v's decimal digits as a JSON string ("sub": "42"). */
void	jw_int_str(struct jsonw *jw, const char *key, int64_t v);
void	jw_bool(struct jsonw *jw, const char *key, int v);
/* Close the object: its length, or -1 when the buffer was too small. */
long	jw_end(struct jsonw *jw);

/* ---- Listen addresses (addr.c) ---------------------------------------- */

#include <sys/socket.h>

#define ADDR_LEN	256	/* the longest address, with its NUL */

/*
 * Parse a listen address: "host:port" (host an IPv4 literal, "localhost" or
 * "*"), "[ipv6]:port" or "unix:/abs/path".  "*" gives the IPv6 any address
 * (dual-stack; master/listen.c falls back to 0.0.0.0 where IPv6 is off).
 * Returns 0, or -1 with *why pointing to a static reason.  config.c uses it
 * to validate, so a loaded config's addresses always parse.
 */
int	addr_parse(const char *addr, struct sockaddr_storage *ss,
	    socklen_t *sslen, const char **why);

/* ---- HTML pages (html.c) ------------------------------------------------ */

/*
 * The one HTML escaper, for text and for quoted attribute values: & < > "
 * and ' become entities, a NUL or a byte that is not valid UTF-8 becomes
 * U+FFFD.  Writes s[0..len) escaped into out[0..cap) (no NUL); returns the
 * bytes written, or -1 when out is too small.  At most 6 * len bytes.
 */
long	html_escape(char *out, size_t cap, const char *s, size_t len);

enum html_kind {
	HV_TEXT = 0,	/* escaped */
	HV_LIST,	/* space-separated words, each an escaped <li> */
	HV_HTML,	/* markup html_render produced: copied as it is */
};

struct html_var {
	const char	*hv_name;
	const char	*hv_value;	/* NULL: renders as nothing */
	enum html_kind	 hv_kind;
};

/*
 * Render tmpl[0..tlen), replacing each {{name}} with the value of the
 * variable of that name (escaped unless HV_HTML); an unknown name renders
 * as nothing, so an operator's template written for another version still
 * renders.  Writes out NUL-terminated; returns the length, or -1 when out
 * is too small.
 */
long	html_render(char *out, size_t cap, const char *tmpl, size_t tlen,
	    const struct html_var *vars, size_t nvars);

/* ---- Cookies (cookie.c) ------------------------------------------------- */

/*
 * The value of the first cookie named name in a Cookie header value (RFC
 * 6265 5.4; quotes around a value dropped).  Returns 1 with val pointing
 * into hdr, or 0 when hdr is absent or holds no such cookie.
 */
int	cookie_get(struct http_str hdr, const char *name, struct http_str *val);

/* ---- Client addresses and CIDRs (addr.c) ------------------------------ */

/*
 * A client address is 16 bytes: IPv6, or IPv4 as ::ffff:a.b.c.d, so that
 * one compare serves both.  A CIDR's cr_bits counts in that space (an
 * IPv4 /24 is 120).  IP_MAX_ALLOW bounds a PAT's allowlist: the cache
 * entry carries it, and every hit scans it.
 */
#define IP_LEN		16
#define IP_STR_LEN	46	/* INET6_ADDRSTRLEN */
#define IP_MAX_ALLOW	16
#define IP_MAX_PROXIES	64

struct cidr {
	uint8_t	 cr_addr[IP_LEN];
	uint8_t	 cr_bits;		/* 0..128 */
};

/* An IPv4 or IPv6 literal of len bytes (not NUL-terminated): 0, or -1. */
int	ip_parse(const char *s, size_t len, uint8_t ip[IP_LEN]);
/* 1 when ip is an IPv4 address (::ffff:a.b.c.d), else 0. */
int	ip_is_v4(const uint8_t ip[IP_LEN]);
/* 1 when ip is all zeros, the usage records' "no address known", else 0. */
int	ip_is_none(const uint8_t ip[IP_LEN]);
/* ip as text, IPv4 as a.b.c.d; buf holds IP_STR_LEN. */
void	ip_format(const uint8_t ip[IP_LEN], char *buf, size_t len);
/* The network a new-network alert groups ip in: /24 for IPv4, /56 for
 * IPv6, as a CIDR. */
void	ip_network(const uint8_t ip[IP_LEN], struct cidr *net);
/*
 * "a.b.c.d/n", "v6/n", or a bare address (a /32 or /128).  Host bits set
 * are refused, as PostgreSQL's cidr type does.  Returns 0, or -1 with *why
 * a static reason.
 */
int	cidr_parse(const char *s, struct cidr *cr, const char **why);
/* "a.b.c.d/n" or "v6/n"; buf holds IP_STR_LEN + 4. */
void	cidr_format(const struct cidr *cr, char *buf, size_t len);
/*
 * Append CIDR s, checked and in canonical form, to out, a list separated
 * by single spaces (outlen bytes with its NUL; "" to begin): what tokenctl
 * and POST /pats send as an allowlist.  0, or -1 with *why set.
 */
int	cidr_list_append(char *out, size_t outlen, const char *s,
	    const char **why);
/* 1 when ip is inside cr. */
int	cidr_match(const struct cidr *cr, const uint8_t ip[IP_LEN]);
/* 1 when ip is inside one of the n CIDRs of list. */
int	cidr_match_any(const struct cidr *list, size_t n,
	    const uint8_t ip[IP_LEN]);
/*
 * A list separated by spaces, commas or tabs (trusted_proxies, an
 * allowlist), at most max entries into out.  Returns the count, or -1 with
 * *why set (bad is the offending entry, cut to badlen).
 */
int	cidr_list_parse(const char *list, struct cidr *out, size_t max,
	    const char **why, char *bad, size_t badlen);
/*
 * The client address of a request from a trusted proxy: X-Forwarded-For
 * values (xff, n of them in header order) read from the right, the first
 * address not inside trusted; all trusted gives the leftmost; an entry
 * that does not parse stops the walk at the address to its right.
 * Returns 0 with ip set, or -1 when no address was usable.
 */
int	ip_forwarded(const struct http_str *xff, size_t n,
	    const struct cidr *trusted, size_t ntrusted, uint8_t ip[IP_LEN]);

#endif /* TOKEND_PROTO_H */
