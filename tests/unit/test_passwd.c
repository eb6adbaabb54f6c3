/* Password hashing (store/passwd.c): argon2id, OWASP parameters. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "store/store.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define PARAMS "$argon2id$v=19$m=" STR(PASSWD_M_COST) ",t=" \
	STR(PASSWD_T_COST) ",p=" STR(PASSWD_PARALLELISM) "$"

Test(passwd, hash_then_verify)
{
	char	 h1[PASSWD_ENCODED_MAX], h2[PASSWD_ENCODED_MAX];

	cr_assert_eq(passwd_hash("correct horse", 13, h1, sizeof(h1)), 0);
	cr_assert_eq(strncmp(h1, PARAMS, strlen(PARAMS)), 0, "%s", h1);
	cr_assert_leq(strlen(h1), PASSWD_ENCODED_MAX - 1);
	cr_assert_eq(passwd_verify(h1, "correct horse", 13), 0);
	cr_assert_eq(passwd_verify(h1, "correct horsf", 13), -1);
	cr_assert_eq(passwd_verify(h1, "correct hors", 12), -1);
	cr_assert_eq(passwd_verify(h1, "", 0), -1);
	/* A fresh salt each time: the same password hashes differently. */
	cr_assert_eq(passwd_hash("correct horse", 13, h2, sizeof(h2)), 0);
	cr_assert_str_neq(h1, h2);
	cr_assert_eq(passwd_verify(h2, "correct horse", 13), 0);
}

Test(passwd, refuses_bad_input)
{
	char	 h[PASSWD_ENCODED_MAX], big[PASSWD_MAX_LEN + 1];

	memset(big, 'x', sizeof(big));
	cr_assert_eq(passwd_hash("", 0, h, sizeof(h)), -1);
	cr_assert_eq(passwd_hash(big, sizeof(big), h, sizeof(h)), -1);
	cr_assert_eq(passwd_hash(big, PASSWD_MAX_LEN, h, sizeof(h)), 0);
	cr_assert_eq(passwd_verify(h, big, PASSWD_MAX_LEN), 0);
	cr_assert_eq(passwd_hash("pw", 2, h, 20), -1, "buffer too small");
	cr_assert_eq(passwd_verify("not a hash", "pw", 2), -1);
	cr_assert_eq(passwd_verify("$argon2i$v=19$m=19456,t=2,p=1$"
	    "dG9rZW5kLWR1bW15c2FsdA$"
	    "Nv5AUm/JAs282llDE8mFMMLv/mAbciVk1QOijm+tH4A", "pw", 2), -1);
}

Test(passwd, unknown_user_costs_a_full_verification)
{
	char	 prefix[64];

	/* Same parameters as real hashes, so the same time per attempt. */
	snprintf(prefix, sizeof(prefix), "$argon2id$v=19$m=%d,t=%d,p=%d$",
	    PASSWD_M_COST, PASSWD_T_COST, PASSWD_PARALLELISM);
	cr_assert_eq(strncmp(passwd_dummy_hash(), prefix, strlen(prefix)), 0,
	    "%s", passwd_dummy_hash());
	cr_assert_eq(passwd_verify(NULL, "tokend-dummy-password-never-matches",
	    35), -1, "no real hash must never verify");
	cr_assert_eq(passwd_verify(NULL, "anything", 8), -1);
}
