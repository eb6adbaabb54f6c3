-- 021: usage accounting that costs PostgreSQL less per distinct token.
--
-- Until now every flush rewrote the row in tokens of every token used in
-- the interval: with 17,000 distinct tokens a second that is 17,000 row
-- updates a second, about 14 µs of PostgreSQL each on an idle machine and
-- 37 µs on a loaded one (BENCHMARKS.md, scenario 2).
--
-- A token the writer wrote into tokens less than usage_fold_interval ago
-- (a "hot" token), in a flush that carries more than 1,000 tokens, now
-- gets a narrow row here instead: an insert, a third of the cost of the
-- update.  Every usage_fold_interval, and at once when the load falls
-- back under 1,000 tokens a flush or tokend stops, the writer folds every
-- row of this table into tokens and deletes it, in the same statement as
-- its flush (SPEC 6: one statement a flush).  The first use of a token
-- after a quiet period (usage_fold_interval without a use written) always
-- goes to tokens directly, so that signal is never late.
--
-- So tokens.use_count and tokens.last_used_at may lag by at most
-- usage_fold_interval + usage_flush_interval, and token_usage (below) never
-- does: tokenctl, GET /pats and GET /sessions read it.  No foreign key: a
-- deleted token's rows are dropped by the next fold.

CREATE TABLE usage_deltas (
	token_id	bigint NOT NULL,
	uses		bigint NOT NULL,
	last_used_at	timestamptz NOT NULL,
	last_used_ip	inet
);
CREATE INDEX usage_deltas_token_idx ON usage_deltas (token_id);

-- A token's usage as users see it: what tokens holds plus what waits here.
CREATE VIEW token_usage AS
SELECT t.id AS token_id,
    t.use_count + coalesce(d.uses, 0) AS use_count,
    CASE WHEN d.at IS NULL THEN t.last_used_at
        ELSE greatest(t.last_used_at, d.at) END AS last_used_at,
    CASE WHEN d.ip IS NOT NULL AND (t.last_used_at IS NULL OR
        d.at >= t.last_used_at) THEN d.ip
        ELSE t.last_used_ip END AS last_used_ip
FROM tokens t
LEFT JOIN LATERAL (
	SELECT sum(x.uses)::bigint AS uses, max(x.last_used_at) AS at,
	    (array_agg(x.last_used_ip ORDER BY x.last_used_at DESC)
	        FILTER (WHERE x.last_used_ip IS NOT NULL))[1] AS ip
	FROM usage_deltas x WHERE x.token_id = t.id) d ON true;

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
