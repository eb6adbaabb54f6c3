/*
 * Passwords and client secrets: argon2id via libargon2, parameters in
 * store.h.  Only the encoded hash is ever stored; the caller wipes the
 * plaintext.
 */
#include <string.h>

#include <argon2.h>
#include <openssl/rand.h>

#include "store/store.h"

/*
 * An argon2id hash of a password nobody knows, made with the parameters
 * above; verified against when there is no real hash, so that an unknown
 * user costs the same as a wrong password.  Regenerate it if the
 * parameters change (tests/unit/test_passwd.c checks they match).
 */
static const char passwd_dummy[] =
    "$argon2id$v=19$m=19456,t=2,p=1$dG9rZW5kLWR1bW15c2FsdA$"
    "Nv5AUm/JAs282llDE8mFMMLv/mAbciVk1QOijm+tH4A";

int
passwd_hash(const char *pw, size_t len, char *out, size_t outlen)
{
	uint8_t	 salt[PASSWD_SALT_LEN];

	if (len == 0 || len > PASSWD_MAX_LEN)
		return -1;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -1;
	if (argon2id_hash_encoded(PASSWD_T_COST, PASSWD_M_COST,
	    PASSWD_PARALLELISM, pw, len, salt, sizeof(salt), PASSWD_HASH_LEN,
	    out, outlen) != ARGON2_OK)
		return -1;
	return 0;
}

/* Exposed so the unit test can check its parameters match. */
const char *
passwd_dummy_hash(void)
{
	return passwd_dummy;
}

int
passwd_verify(const char *encoded, const char *pw, size_t len)
{
	int	 known = encoded != NULL;

	if (len > PASSWD_MAX_LEN)
		return -1;
	if (!known)
		encoded = passwd_dummy;
	/* argon2id_verify compares in constant time. */
	if (argon2id_verify(encoded, pw, len) != ARGON2_OK)
		return -1;
	return known ? 0 : -1;
}
