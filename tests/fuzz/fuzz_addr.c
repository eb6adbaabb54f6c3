/*
 * libFuzzer target for what a trusted proxy's headers reach: the
 * X-Forwarded-For walk (ip_forwarded) and the CIDR parser the allowlists
 * and trusted_proxies use.  The input is split at the first NUL into a
 * header value and a CIDR text.  Properties: no overread (ASan), an
 * address found is a parse of some entry of the header, and a CIDR that
 * parses formats back to text that parses to the same CIDR and matches
 * its own address.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_cidr(const char *s)
{
	struct cidr	 cr, back;
	const char	*why;
	char		 buf[IP_STR_LEN + 8];

	if (cidr_parse(s, &cr, &why) == -1)
		return;
	cidr_format(&cr, buf, sizeof(buf));
	if (cidr_parse(buf, &back, &why) == -1 ||
	    memcmp(&cr, &back, sizeof(cr)) != 0)
		abort();
	if (!cidr_match(&cr, cr.cr_addr))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cidr trusted[1] = { {
	    { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0 },
	    96 + 8 } };
	struct http_str	 h;
	uint8_t		 ip[IP_LEN];
	char		*copy, *nul;

	if ((copy = malloc(size + 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	nul = memchr(copy, '\0', size);
	h.s_ptr = copy;
	h.s_len = nul != NULL ? (size_t)(nul - copy) : size;
	(void)ip_forwarded(&h, 1, trusted, 1, ip);
	if (nul != NULL)
		fuzz_cidr(nul + 1);
	free(copy);
	return 0;
}
