/*
 * mint: tokens in bulk for the benchmarks.
 *
 *   mint -n N -k pat|access [-m valid|unknown|badsum] -o TOKENS
 *        [-c COPY -u USER_ID -l LABEL]
 *
 * Writes N tokens, one per line, to TOKENS.  With -c it also writes COPY
 * text-format rows for tokens(kind, hash, prefix, user_id, name), so that
 * `\copy tokens (kind, hash, prefix, user_id, name) FROM COPY` inserts them
 * in one statement: a million rows in seconds, where a million
 * `tokenctl pat create` would take hours.  The tokens are made by the
 * server's own token_format() and token_hash() (proto/token.c is linked
 * in), so they are exactly what tokend issues.
 *
 *   valid    well-formed; meant to be inserted (-c).
 *   unknown  well-formed, never inserted: tokend caches them as negative.
 *   badsum   one checksum character changed: refused before any lookup.
 *
 * This is a benchmark tool: the token file holds live secrets of a
 * throwaway database and lives in the benchmark's temporary directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/proto.h"

#define MINT_CHUNK 4096		/* tokens per RAND_bytes call */

struct mint {
	long		 mi_n;
	enum token_kind	 mi_kind;
	const char	*mi_mode;
	const char	*mi_tokens;
	const char	*mi_copy;
	const char	*mi_user;
	const char	*mi_label;
};

static void
usage(void)
{
	fprintf(stderr, "usage: mint -n N -k pat|access "
	    "[-m valid|unknown|badsum] -o TOKENS [-c COPY -u USER_ID "
	    "-l LABEL]\n");
	exit(2);
}

/* Change the last checksum character to another base62 digit. */
static void
mint_break_sum(char tok[TOKEN_LEN + 1])
{
	char	*c = &tok[TOKEN_LEN - 1];

	*c = (*c == '0') ? '1' : '0';
}

/* One COPY text row: kind, \\x + hex hash, display prefix, user, name. */
static int
mint_copy_row(FILE *f, const struct mint *mi, const char *tok)
{
	uint8_t	 hash[TOKEN_HASH_LEN];
	char	 hex[2 * TOKEN_HASH_LEN + 1];

	token_hash(tok, TOKEN_LEN, hash);
	hex_encode(hash, sizeof(hash), hex);
	return fprintf(f, "%s\t\\\\x%s\t%.8s\t%s\t%s\n",
	    token_kind_name(mi->mi_kind), hex, tok, mi->mi_user,
	    mi->mi_label) < 0 ? -1 : 0;
}

static int
mint_run(const struct mint *mi, FILE *tf, FILE *cf)
{
	static uint8_t	 ent[MINT_CHUNK][32];
	char		 tok[TOKEN_LEN + 1];
	long		 done = 0, i, n;

	while (done < mi->mi_n) {
		n = mi->mi_n - done < MINT_CHUNK ? mi->mi_n - done : MINT_CHUNK;
		if (RAND_bytes(&ent[0][0], (int)(n * 32)) != 1)
			return -1;
		for (i = 0; i < n; i++) {
			if (token_format(mi->mi_kind, ent[i], tok) == -1)
				return -1;
			if (strcmp(mi->mi_mode, "badsum") == 0)
				mint_break_sum(tok);
			if (fprintf(tf, "%s\n", tok) < 0)
				return -1;
			if (cf != NULL && mint_copy_row(cf, mi, tok) == -1)
				return -1;
		}
		done += n;
	}
	return 0;
}

static void
mint_args(int argc, char **argv, struct mint *mi)
{
	int	 ch;

	memset(mi, 0, sizeof(*mi));
	mi->mi_mode = "valid";
	mi->mi_label = "bench";
	while ((ch = getopt(argc, argv, "n:k:m:o:c:u:l:")) != -1) {
		switch (ch) {
		case 'n': mi->mi_n = strtol(optarg, NULL, 10); break;
		case 'k': mi->mi_kind = token_kind_from_name(optarg); break;
		case 'm': mi->mi_mode = optarg; break;
		case 'o': mi->mi_tokens = optarg; break;
		case 'c': mi->mi_copy = optarg; break;
		case 'u': mi->mi_user = optarg; break;
		case 'l': mi->mi_label = optarg; break;
		default: usage();
		}
	}
	if (mi->mi_n <= 0 || mi->mi_tokens == NULL ||
	    (mi->mi_kind != TOKEN_PAT && mi->mi_kind != TOKEN_ACCESS) ||
	    (strcmp(mi->mi_mode, "valid") != 0 &&
	    strcmp(mi->mi_mode, "unknown") != 0 &&
	    strcmp(mi->mi_mode, "badsum") != 0) ||
	    (mi->mi_copy != NULL && mi->mi_user == NULL))
		usage();
}

int
main(int argc, char **argv)
{
	struct mint	 mi;
	FILE		*tf = NULL, *cf = NULL;
	int		 rc = 1;

	mint_args(argc, argv, &mi);
	if ((tf = fopen(mi.mi_tokens, "w")) == NULL) {
		fprintf(stderr, "mint: %s: %s\n", mi.mi_tokens, strerror(errno));
		goto out;
	}
	if (mi.mi_copy != NULL && (cf = fopen(mi.mi_copy, "w")) == NULL) {
		fprintf(stderr, "mint: %s: %s\n", mi.mi_copy, strerror(errno));
		goto out;
	}
	if (mint_run(&mi, tf, cf) == -1) {
		fprintf(stderr, "mint: writing tokens failed\n");
		goto out;
	}
	rc = 0;
out:
	if (tf != NULL && fclose(tf) != 0)
		rc = 1;
	if (cf != NULL && fclose(cf) != 0)
		rc = 1;
	return rc;
}
