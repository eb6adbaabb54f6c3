-- 021: usage accounting that costs PostgreSQL less per distinct token.
--
-- Until now every flush rewrote the row in tokens of every token used in
-- the interval: about 5 µs of PostgreSQL per distinct token at best (a
-- HOT update, its WAL, the index lookup), three times that on a loaded
-- machine (BENCHMARKS.md, scenarios 2 and 8).  A box serving 100,000
-- distinct tokens a second would spend a CPU on it.
--
-- A token the writer wrote into tokens less than usage_fold_interval ago
-- (a "hot" token), in a flush that carries more than 1,000 tokens, now
-- goes into this table instead: one row per flush, holding the hot
-- tokens' ids, use counts, newest uses and addresses as arrays (out of
-- line, uncompressed), an array element each rather than a row update.
-- Every usage_fold_interval, and at once when the load falls back to
-- 1,000 tokens a flush or fewer, when tokend stops and when a writer
-- starts, the writer folds every row of this table into tokens and
-- deletes it, in the same statement as its flush (SPEC 6: one statement a
-- flush): one row update per token per fold, however many flushes it was
-- used in.  The first use of a token after a quiet period
-- (usage_fold_interval without a use written) always goes to tokens at
-- once, so that signal is never late.
--
-- So tokens.use_count and tokens.last_used_at may lag by at most
-- usage_fold_interval + usage_flush_interval, and token_usage (below) never
-- does: tokenctl, GET /pats and GET /sessions read it.  A deleted token's
-- elements are dropped by the next fold.

CREATE TABLE usage_deltas (
	id		bigserial PRIMARY KEY,
	at		timestamptz NOT NULL DEFAULT now(),
	token_ids	bigint[] NOT NULL,
	uses		bigint[] NOT NULL,
	last_ms		bigint[] NOT NULL,	-- newest use, ms since 1970
	last_ips	inet[] NOT NULL,	-- its address, or NULL
	CHECK (cardinality(token_ids) = cardinality(uses) AND
	    cardinality(token_ids) = cardinality(last_ms) AND
	    cardinality(token_ids) = cardinality(last_ips))
);
ALTER TABLE usage_deltas ALTER token_ids SET STORAGE EXTERNAL,
	ALTER uses SET STORAGE EXTERNAL, ALTER last_ms SET STORAGE EXTERNAL,
	ALTER last_ips SET STORAGE EXTERNAL;

-- A token's usage as users see it: what tokens holds plus what waits in
-- usage_deltas (nothing, unless a box is busy).
CREATE VIEW token_usage AS
SELECT t.id AS token_id,
    t.use_count + coalesce(d.uses, 0) AS use_count,
    CASE WHEN d.at IS NULL THEN t.last_used_at
        ELSE greatest(t.last_used_at, d.at) END AS last_used_at,
    CASE WHEN d.ip IS NOT NULL AND (t.last_used_at IS NULL OR
        d.at >= t.last_used_at) THEN d.ip
        ELSE t.last_used_ip END AS last_used_ip
FROM tokens t
LEFT JOIN (
	SELECT x.id, sum(x.n)::bigint AS uses,
	    to_timestamp(max(x.ms)::float8 / 1000) AS at,
	    (array_agg(x.ip ORDER BY x.ms DESC)
	        FILTER (WHERE x.ip IS NOT NULL))[1] AS ip
	FROM usage_deltas u, unnest(u.token_ids, u.uses, u.last_ms,
	    u.last_ips) AS x(id, n, ms, ip)
	GROUP BY x.id) d ON d.id = t.id;

-- 014's, with the latest use of any of the family's tokens read through
-- token_usage.
CREATE OR REPLACE FUNCTION tokend_sessions(p_user bigint, OUT o_id bigint,
    OUT o_client text, OUT o_created timestamptz,
    OUT o_last_used timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE AS $$
	SELECT t.family, c.client_id,
	    min(coalesce(t.auth_time, t.created_at)) FILTER (WHERE
	        t.kind = 'refresh'),
	    max(greatest(u.last_used_at, t.created_at))
	FROM tokens t JOIN clients c ON c.id = t.client_id
	JOIN token_usage u ON u.token_id = t.id
	WHERE t.user_id = p_user AND t.family IS NOT NULL
	GROUP BY t.family, c.client_id
	HAVING bool_or(t.kind = 'refresh' AND t.revoked_at IS NULL AND
	    t.rotated_at IS NULL AND t.expires_at > now())
	ORDER BY t.family;
$$;
