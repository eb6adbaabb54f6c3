/*
 * proto/html.c and proto/cookie.c: the one HTML escaper, the template
 * renderer, and the Cookie header.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/proto.h"

static char out[1024];

static const char *
esc(const char *s, size_t len)
{
	long	 n = html_escape(out, sizeof(out) - 1, s, len);

	cr_assert_geq(n, 0);
	out[n] = '\0';
	return out;
}

Test(html, escapes_the_five)
{
	cr_assert_str_eq(esc("a<b>&\"c'", 8), "a&lt;b&gt;&amp;&quot;c&#39;");
	cr_assert_str_eq(esc("<script>alert(1)</script>", 25),
	    "&lt;script&gt;alert(1)&lt;/script&gt;");
	cr_assert_str_eq(esc("\" onfocus=\"x", 12),
	    "&quot; onfocus=&quot;x");
	cr_assert_str_eq(esc("plain text", 10), "plain text");
}

Test(html, utf8_kept_invalid_replaced)
{
	cr_assert_str_eq(esc("caf\xc3\xa9 \xe2\x82\xac", 9),
	    "caf\xc3\xa9 \xe2\x82\xac");
	/* A lone continuation byte, an overlong '<', a truncated sequence
	 * and a NUL all become U+FFFD: never a '<' in disguise. */
	cr_assert_str_eq(esc("\x80", 1), "\xef\xbf\xbd");
	cr_assert_str_eq(esc("\xc0\xbc", 2), "\xef\xbf\xbd\xef\xbf\xbd");
	cr_assert_str_eq(esc("a\xe2\x82", 3), "a\xef\xbf\xbd\xef\xbf\xbd");
	cr_assert_str_eq(esc("a\0b", 3), "a\xef\xbf\xbd" "b");
}

Test(html, escape_refuses_short_buffer)
{
	char	 small[8];

	cr_assert_eq(html_escape(small, sizeof(small), "<<", 2), 8);
	cr_assert_eq(html_escape(small, sizeof(small), "<<<", 3), -1);
	cr_assert_eq(html_escape(small, 0, "", 0), 0);
}

Test(html, render_escapes_every_value)
{
	static const char t[] = "<p title=\"{{a}}\">{{a}} {{b}}</p>{{x}}";
	struct html_var v[] = {
		{ "a", "<i>\"hi\"</i>", HV_TEXT },
		{ "b", "&amp;", HV_TEXT },
	};

	cr_assert_gt(html_render(out, sizeof(out), t, strlen(t), v, 2), 0);
	cr_assert_str_eq(out, "<p title=\"&lt;i&gt;&quot;hi&quot;&lt;/i&gt;\">"
	    "&lt;i&gt;&quot;hi&quot;&lt;/i&gt; &amp;amp;</p>");
}

Test(html, render_list_and_markup)
{
	static const char t[] = "<ul>{{s}}</ul>{{body}}{{none}}";
	struct html_var v[] = {
		{ "s", " read  <w> ", HV_LIST },
		{ "body", "<main>ok</main>", HV_HTML },
		{ "none", NULL, HV_TEXT },
	};

	cr_assert_gt(html_render(out, sizeof(out), t, strlen(t), v, 3), 0);
	cr_assert_str_eq(out, "<ul><li>read</li><li>&lt;w&gt;</li></ul>"
	    "<main>ok</main>");
}

Test(html, render_unclosed_and_short)
{
	static const char t[] = "a {{b";
	char	 small[5];
	struct html_var v[] = { { "b", "x", HV_TEXT } };

	cr_assert_eq(html_render(out, sizeof(out), t, strlen(t), v, 1), 5);
	cr_assert_str_eq(out, "a {{b");
	cr_assert_eq(html_render(small, sizeof(small), t, strlen(t), v, 1),
	    -1);
	/* A value does not re-enter the template: no {{ expansion twice. */
	v[0].hv_value = "{{b}}";
	cr_assert_gt(html_render(out, sizeof(out), "{{b}}", 5, v, 1), 0);
	cr_assert_str_eq(out, "{{b}}");
}

static int
cget(const char *hdr, const char *name, char *val)
{
	struct http_str h = { hdr, hdr ? strlen(hdr) : 0 }, v;
	int	 r = cookie_get(h, name, &v);

	if (r == 1) {
		memcpy(val, v.s_ptr, v.s_len);
		val[v.s_len] = '\0';
	}
	return r;
}

Test(cookie, pairs)
{
	char	 v[64];

	cr_assert_eq(cget("a=1; tokend_session=tks_x; b=2", "tokend_session",
	    v), 1);
	cr_assert_str_eq(v, "tks_x");
	cr_assert_eq(cget("a=1;b=2", "b", v), 1);
	cr_assert_str_eq(v, "2");
	cr_assert_eq(cget(" a = \"q\" ", "a", v), 1);
	cr_assert_str_eq(v, "q");
	cr_assert_eq(cget("a=", "a", v), 1);
	cr_assert_str_eq(v, "");
	/* The first of two wins; a pair without '=' is skipped. */
	cr_assert_eq(cget("junk; a=x=y; a=z", "a", v), 1);
	cr_assert_str_eq(v, "x=y");
}

Test(cookie, absent)
{
	char	 v[64];

	cr_assert_eq(cget(NULL, "a", v), 0);
	cr_assert_eq(cget("", "a", v), 0);
	cr_assert_eq(cget("ab=1; xa=2", "a", v), 0);
	cr_assert_eq(cget("A=1", "a", v), 0);
	cr_assert_eq(cget("a", "a", v), 0);
	cr_assert_eq(cget(";;;", "a", v), 0);
}
