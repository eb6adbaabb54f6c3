/* proto/grant.c: grant type names and a client's allowed set. */
#include <criterion/criterion.h>

#include "proto/proto.h"

Test(grant, names_and_bits_agree)
{
	int	 i;

	for (i = 0; i < GRANT_NTYPES; i++)
		cr_expect_eq(grant_bit(grant_name(i)), 1u << i, "%s",
		    grant_name(i));
	cr_expect_null(grant_name(-1));
	cr_expect_null(grant_name(GRANT_NTYPES));
	cr_expect_eq(grant_bit("password"), GRANT_PASSWORD);
	cr_expect_eq(grant_bit(GRANT_DEVICE_URN), GRANT_DEVICE);
}

Test(grant, unknown_names_are_nothing)
{
	cr_expect_eq(grant_bit(""), 0);
	cr_expect_eq(grant_bit("implicit"), 0);
	cr_expect_eq(grant_bit(GRANT_DEVICE_SHORT), 0);	/* tokenctl's alias */
	cr_expect_eq(grant_bit("Password"), 0);
	cr_expect_eq(grant_bit("password "), 0);
}

Test(grant, sets_from_words)
{
	cr_expect_eq(grant_set(""), 0);
	cr_expect_eq(grant_set("password"), GRANT_PASSWORD);
	cr_expect_eq(grant_set("authorization_code refresh_token "
	    GRANT_DEVICE_URN), GRANT_CODE | GRANT_REFRESH | GRANT_DEVICE);
	cr_expect_eq(grant_set("implicit client_credentials passwordx"),
	    GRANT_CLIENT_CREDENTIALS);
	cr_expect_eq(grant_set("device_code"), 0);
}
