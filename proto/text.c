/*
 * Text checks shared by every layer (proto.h): UTF-8 validity, and copies
 * that refuse rather than truncate.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proto/proto.h"

size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char	 lo = 0x80, hi = 0xbf;
	size_t		 len, i;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (s[0] == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		if (s[0] == 0xf0)
			lo = 0x90;	/* overlong */
		else if (s[0] == 0xf4)
			hi = 0x8f;	/* past U+10FFFF */
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

int
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t		 u;

	while (n > 0) {
		if (*s == '\0' || (u = utf8_seq_len(s, n)) == 0)
			return 0;
		s += u;
		n -= u;
	}
	return 1;
}

int
utf8_valid_str(const char *s)
{
	return s == NULL || utf8_valid(s, strlen(s));
}

int
text_copy(char *dst, size_t cap, const char *src)
{
	size_t	 n = strlen(src);

	if (cap == 0 || n >= cap)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

int
text_word_ok(const char *s, size_t n, const char *extra)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && (s[i] == '\0' ||
		    strchr(extra, s[i]) == NULL))
			return 0;
	return 1;
}

int
iso8601_format(int64_t secs, int ms, char out[ISO8601_LEN])
{
	time_t		 t = (time_t)secs;
	struct tm	 tm;
	int		 n;

	if ((int64_t)t != secs || gmtime_r(&t, &tm) == NULL)
		return -1;
	n = snprintf(out, ISO8601_LEN, "%04d-%02d-%02dT%02d:%02d:%02d",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	if (ms >= 0)
		snprintf(out + n, ISO8601_LEN - (size_t)n, ".%03dZ", ms % 1000);
	else
		snprintf(out + n, ISO8601_LEN - (size_t)n, "Z");
	return 0;
}
