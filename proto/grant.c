/*
 * OAuth grant types (RFC 6749 4, RFC 8628 3.4): the names /token takes,
 * the metadata lists and clients.grant_types holds, so the worker, the
 * metadata and tokenctl spell them from one table.
 */
#include <string.h>

#include "proto/proto.h"

static const char *const grant_names[GRANT_NTYPES] = {
	"authorization_code",
	"refresh_token",
	"password",
	"client_credentials",
	GRANT_DEVICE_URN,
};

const char *
grant_name(int i)
{
	if (i < 0 || i >= GRANT_NTYPES)
		return NULL;
	return grant_names[i];
}

unsigned
grant_bit(const char *name)
{
	int	 i;

	for (i = 0; i < GRANT_NTYPES; i++)
		if (strcmp(name, grant_names[i]) == 0)
			return 1u << i;
	return 0;
}

unsigned
grant_set(const char *words)
{
	unsigned	 set = 0;
	int		 i;

	for (i = 0; i < GRANT_NTYPES; i++)
		if (scope_has(words, grant_names[i], strlen(grant_names[i])))
			set |= 1u << i;
	return set;
}
