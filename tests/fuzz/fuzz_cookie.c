/*
 * libFuzzer target for what the sign-in pages parse and write: the Cookie
 * header (cookie_get), their form bodies and queries (form_parse, as
 * POST /signin, /consent, /device and GET /authorize read them), and the
 * escaper those values then pass through (html_escape, html_render).
 *
 * Checks: a cookie value lies inside the header, holds no ';' and is
 * trimmed (but for spaces inside quotes); a rendered value never puts
 * '<', '>', '"' or '\'' on the page; the escaped form is within its
 * documented bound and valid UTF-8.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static void
check_cookie(const char *in, size_t len, const char *name)
{
	struct http_str	 h = { in, len }, v;

	if (cookie_get(h, name, &v) != 1)
		return;
	if (v.s_ptr < in || v.s_ptr + v.s_len > in + len ||
	    memchr(v.s_ptr, ';', v.s_len) != NULL)
		abort();
	/* Trimmed, unless the spaces were inside quotes. */
	if (v.s_len > 0 && v.s_ptr[-1] != '"' && (v.s_ptr[0] == ' ' ||
	    v.s_ptr[v.s_len - 1] == ' '))
		abort();
}

static void
check_escape(const char *s, size_t len)
{
	static char	 out[6 * 4096 + 1];
	long		 n;

	if (len > 4096)
		len = 4096;
	if ((n = html_escape(out, sizeof(out), s, len)) < 0 ||
	    (size_t)n > 6 * len)
		abort();
	if (memchr(out, '<', (size_t)n) || memchr(out, '>', (size_t)n) ||
	    memchr(out, '"', (size_t)n) || memchr(out, '\'', (size_t)n) ||
	    !utf8_valid(out, (size_t)n))
		abort();
}

/* Each field of a form, rendered into an attribute and a list: the only
 * quotes and angle brackets on the page are the template's own. */
static void
check_render(const struct form *fm)
{
	static const char tmpl[] = "<i v=\"{{v}}\">{{v}}</i><ul>{{l}}</ul>";
	static char	 out[16 * 8192];
	struct html_var	 v[2];
	size_t		 i, k, lt;
	long		 n;

	for (i = 0; i < fm->fm_n; i++) {
		v[0] = (struct html_var){ "v", fm->fm_fields[i].f_value,
		    HV_TEXT };
		v[1] = (struct html_var){ "l", fm->fm_fields[i].f_value,
		    HV_LIST };
		n = html_render(out, sizeof(out), tmpl, sizeof(tmpl) - 1, v, 2);
		if (n < 0)
			continue;
		for (k = 0, lt = 0; k < (size_t)n; k++)
			lt += out[k] == '<';
		/* <i>, </i>, <ul>, </ul>, and <li></li> per word. */
		if (lt < 4 || (lt - 4) % 2 != 0 || memchr(out, '"',
		    (size_t)n) == NULL)
			abort();
	}
}

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct form	 fm;
	const char	*in = (const char *)data;
	char		*arena;
	size_t		 alen = size + 2 * FORM_MAX_FIELDS + 1;

	check_cookie(in, size, "tokend_session");
	check_cookie(in, size, "tokend_csrf");
	check_escape(in, size);
	if (size > 8192 || (arena = malloc(alen)) == NULL)
		return 0;
	if (form_parse(in, size, &fm, arena, alen) == 0)
		check_render(&fm);
	free(arena);
	return 0;
}
