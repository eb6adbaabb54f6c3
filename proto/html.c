/*
 * HTML output: the one escaper and the page templates' renderer.
 *
 * Every string a page shows passes through html_escape, in text and in
 * double- or single-quoted attribute values alike: the five characters
 * that can end a text node or an attribute (& < > " ') become entities,
 * and a byte that is not valid UTF-8 becomes U+FFFD, so no input can open
 * a tag, close an attribute or smuggle a malformed sequence that a browser
 * would read differently.  Templates are plain HTML with {{name}}
 * placeholders; html_render escapes every value unless the caller marks it
 * HV_HTML (markup html_render itself produced, such as a page's body put
 * into the layout).
 */
#include <string.h>

#include "proto/proto.h"

static const char html_fffd[] = "\xef\xbf\xbd";

/* The entity of c, or NULL when c goes out as it is. */
static const char *
html_entity(unsigned char c)
{
	switch (c) {
	case '&':
		return "&amp;";
	case '<':
		return "&lt;";
	case '>':
		return "&gt;";
	case '"':
		return "&quot;";
	case '\'':
		return "&#39;";
	default:
		return NULL;
	}
}

static int
html_put(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
	if (len > cap - *n)
		return -1;
	memcpy(out + *n, s, len);
	*n += len;
	return 0;
}

long
html_escape(char *out, size_t cap, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	const char	*ent;
	size_t		 i = 0, n = 0, k;

	while (i < len) {
		if ((ent = html_entity(u[i])) != NULL) {
			if (html_put(out, cap, &n, ent, strlen(ent)) == -1)
				return -1;
			i++;
			continue;
		}
		k = u[i] == '\0' ? 0 : utf8_seq_len(u + i, len - i);
		if (k == 0) {
			if (html_put(out, cap, &n, html_fffd, 3) == -1)
				return -1;
			i++;
			continue;
		}
		if (html_put(out, cap, &n, s + i, k) == -1)
			return -1;
		i += k;
	}
	return (long)n;
}

/* Append v as the template asks: escaped, a list, or trusted markup. */
static int
html_value(char *out, size_t cap, size_t *n, const struct html_var *v)
{
	const char	*w = v->hv_value, *e;
	long		 r;

	if (v->hv_kind == HV_HTML)
		return html_put(out, cap, n, w, strlen(w));
	if (v->hv_kind == HV_TEXT) {
		if ((r = html_escape(out + *n, cap - *n, w, strlen(w))) < 0)
			return -1;
		*n += (size_t)r;
		return 0;
	}
	/* HV_LIST: each space-separated word as a list item. */
	for (; *w != '\0'; w = e) {
		while (*w == ' ')
			w++;
		if (*w == '\0')
			break;
		for (e = w; *e != '\0' && *e != ' '; e++)
			;
		if (html_put(out, cap, n, "<li>", 4) == -1 ||
		    (r = html_escape(out + *n, cap - *n, w,
		    (size_t)(e - w))) < 0)
			return -1;
		*n += (size_t)r;
		if (html_put(out, cap, n, "</li>", 5) == -1)
			return -1;
	}
	return 0;
}

static const struct html_var *
html_find(const struct html_var *vars, size_t nvars, const char *name,
    size_t len)
{
	size_t	 i;

	for (i = 0; i < nvars; i++)
		if (strlen(vars[i].hv_name) == len &&
		    memcmp(vars[i].hv_name, name, len) == 0)
			return &vars[i];
	return NULL;
}

long
html_render(char *out, size_t cap, const char *tmpl, size_t tlen,
    const struct html_var *vars, size_t nvars)
{
	const struct html_var *v;
	const char	*p = tmpl, *end = tmpl + tlen, *open, *close;
	size_t		 n = 0;

	while (p < end) {
		open = memmem(p, (size_t)(end - p), "{{", 2);
		close = open ? memmem(open + 2, (size_t)(end - open - 2),
		    "}}", 2) : NULL;
		if (close == NULL) {
			if (html_put(out, cap, &n, p, (size_t)(end - p)) == -1)
				return -1;
			break;
		}
		if (html_put(out, cap, &n, p, (size_t)(open - p)) == -1)
			return -1;
		v = html_find(vars, nvars, open + 2, (size_t)(close - open - 2));
		if (v != NULL && v->hv_value != NULL &&
		    html_value(out, cap, &n, v) == -1)
			return -1;
		p = close + 2;
	}
	if (n >= cap)
		return -1;
	out[n] = '\0';
	return (long)n;
}
