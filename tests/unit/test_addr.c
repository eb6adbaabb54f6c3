/*
 * proto/addr.c: client addresses, CIDRs (trusted_proxies, PAT allowlists)
 * and the X-Forwarded-For walk that picks the client behind a proxy.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/proto.h"

static void
ip(const char *s, uint8_t out[IP_LEN])
{
	cr_assert_eq(ip_parse(s, strlen(s), out), 0, "%s", s);
}

static struct cidr
cidr(const char *s)
{
	struct cidr	 cr;
	const char	*why;

	cr_assert_eq(cidr_parse(s, &cr, &why), 0, "%s", s);
	return cr;
}

Test(addr, none_is_only_all_zeros)
{
	uint8_t	 a[IP_LEN] = { 0 };

	cr_assert(ip_is_none(a));
	ip("::", a);
	cr_assert(ip_is_none(a), ":: is the same sixteen zeros");
	ip("0.0.0.0", a);
	cr_assert_not(ip_is_none(a), "IPv4 0.0.0.0 is ::ffff:0.0.0.0");
	ip("::1", a);
	cr_assert_not(ip_is_none(a));
}

Test(addr, ipv4_is_mapped_and_formats_back)
{
	uint8_t	 a[IP_LEN];
	char	 buf[IP_STR_LEN];

	ip("192.0.2.7", a);
	cr_assert_eq(a[10], 0xff);
	cr_assert_eq(a[15], 7);
	ip_format(a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "192.0.2.7");
	ip("2001:db8::1", a);
	ip_format(a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2001:db8::1");
}

Test(addr, garbage_is_not_an_address)
{
	uint8_t	 a[IP_LEN];

	cr_assert_eq(ip_parse("", 0, a), -1);
	cr_assert_eq(ip_parse("1.2.3", 5, a), -1);
	cr_assert_eq(ip_parse("1.2.3.4:80", 10, a), -1);
	cr_assert_eq(ip_parse("unknown", 7, a), -1);
	cr_assert_eq(ip_parse("1.2.3.4\n", 8, a), -1);
}

Test(addr, cidr_parse_checks_prefix_and_host_bits)
{
	struct cidr	 cr;
	const char	*why;
	char		 buf[IP_STR_LEN + 4];

	cr = cidr("10.0.0.0/8");
	cr_assert_eq(cr.cr_bits, 96 + 8);
	cidr_format(&cr, buf, sizeof(buf));
	cr_assert_str_eq(buf, "10.0.0.0/8");
	cr = cidr("2001:db8::/32");
	cidr_format(&cr, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2001:db8::/32");
	cr = cidr("192.0.2.1");
	cr_assert_eq(cr.cr_bits, 128);
	cr_assert_eq(cidr_parse("10.0.0.1/8", &cr, &why), -1);
	cr_assert_eq(cidr_parse("10.0.0.0/33", &cr, &why), -1);
	cr_assert_eq(cidr_parse("10.0.0.0/", &cr, &why), -1);
	cr_assert_eq(cidr_parse("10.0.0.0/-1", &cr, &why), -1);
	cr_assert_eq(cidr_parse("::/129", &cr, &why), -1);
	cr_assert_eq(cidr_parse("example.com/24", &cr, &why), -1);
	cr_assert_eq(cidr_parse("0.0.0.0/0", &cr, &why), 0);
}

Test(addr, cidr_match_respects_partial_bytes)
{
	struct cidr	 cr = cidr("192.0.2.128/25");
	uint8_t		 a[IP_LEN];

	ip("192.0.2.200", a);
	cr_assert(cidr_match(&cr, a));
	ip("192.0.2.127", a);
	cr_assert_not(cidr_match(&cr, a));
	ip("::ffff:192.0.2.200", a);
	cr_assert(cidr_match(&cr, a));
	cr = cidr("2001:db8::/32");
	ip("2001:db8:1::5", a);
	cr_assert(cidr_match(&cr, a));
	ip("2001:db9::5", a);
	cr_assert_not(cidr_match(&cr, a));
	/* An IPv4 CIDR never matches a native IPv6 address. */
	cr = cidr("0.0.0.0/0");
	cr_assert(cidr_match(&cr, a) == 0);
}

Test(addr, network_is_24_or_56)
{
	struct cidr	 net;
	uint8_t		 a[IP_LEN];
	char		 buf[IP_STR_LEN + 4];

	ip("198.51.100.77", a);
	ip_network(a, &net);
	cidr_format(&net, buf, sizeof(buf));
	cr_assert_str_eq(buf, "198.51.100.0/24");
	ip("2001:db8:aaaa:bbcc:1::1", a);
	ip_network(a, &net);
	cidr_format(&net, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2001:db8:aaaa:bb00::/56");
}

Test(addr, list_parse_counts_and_reports_the_bad_entry)
{
	struct cidr	 l[4];
	const char	*why;
	char		 bad[64];

	cr_assert_eq(cidr_list_parse("", l, 4, &why, bad, sizeof(bad)), 0);
	cr_assert_eq(cidr_list_parse(" 10.0.0.0/8, ::1 ,127.0.0.1", l, 4, &why,
	    bad, sizeof(bad)), 3);
	cr_assert_eq(cidr_list_parse("10.0.0.0/8 10.1.2.3/16", l, 4, &why,
	    bad, sizeof(bad)), -1);
	cr_assert_str_eq(bad, "10.1.2.3/16");
	cr_assert_eq(cidr_list_parse("1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4 5.5.5.5",
	    l, 4, &why, bad, sizeof(bad)), -1);
}

#define HS(lit)	((struct http_str){ lit, sizeof(lit) - 1 })

Test(addr, forwarded_takes_the_rightmost_untrusted)
{
	struct cidr	 tr[2] = { cidr("10.0.0.0/8"), cidr("127.0.0.1") };
	struct http_str	 h[2];
	uint8_t		 a[IP_LEN];
	char		 buf[IP_STR_LEN];

	h[0] = HS("203.0.113.9, 198.51.100.4, 10.1.1.1");
	cr_assert_eq(ip_forwarded(h, 1, tr, 2, a), 0);
	ip_format(a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "198.51.100.4");
	/* Two headers are one list, in order. */
	h[0] = HS("198.51.100.4");
	h[1] = HS("10.2.2.2 ,  10.1.1.1");
	cr_assert_eq(ip_forwarded(h, 2, tr, 2, a), 0);
	ip_format(a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "198.51.100.4");
	/* Every hop trusted: the leftmost. */
	h[0] = HS("10.9.9.9, 10.1.1.1");
	cr_assert_eq(ip_forwarded(h, 1, tr, 2, a), 0);
	ip_format(a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "10.9.9.9");
	/* Garbage stops the walk at the address to its right. */
	h[0] = HS("198.51.100.4, evil, 10.1.1.1");
	cr_assert_eq(ip_forwarded(h, 1, tr, 2, a), 0);
	ip_format(a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "10.1.1.1");
	h[0] = HS("nonsense");
	cr_assert_eq(ip_forwarded(h, 1, tr, 2, a), -1);
	h[0] = HS("");
	cr_assert_eq(ip_forwarded(h, 1, tr, 2, a), -1);
}
