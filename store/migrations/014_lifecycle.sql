-- 014: the token lifecycle of SPEC 12: PAT rotation with an overlap,
-- expiry warnings claimed once across every tokend, and a user's sessions
-- (refresh families), listed and ended.  Each rule is one function that
-- the worker and tokenctl both call.

-- Which expiry warnings a PAT had: 0 none, 1 the 7-day one, 2 the 1-day
-- one (or none are due: a rotated-out PAT).  The writer of whichever
-- tokend gets there first claims a warning with one UPDATE; the row lock
-- makes every other writer's UPDATE see the claim and skip the row.
ALTER TABLE tokens ADD COLUMN expiry_warned smallint NOT NULL DEFAULT 0;
CREATE INDEX tokens_expiry_warn_idx ON tokens (expires_at)
	WHERE kind = 'pat' AND revoked_at IS NULL AND expiry_warned < 2;

-- A live family: a refresh token of it not revoked, not rotated, not
-- expired.  What GET /sessions lists is what DELETE /sessions/ID ends.
CREATE FUNCTION tokend_family_live(p_family bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
	SELECT EXISTS (SELECT 1 FROM tokens WHERE (family = p_family OR
	    id = p_family) AND kind = 'refresh' AND revoked_at IS NULL AND
	    rotated_at IS NULL AND expires_at > now());
$$;

-- POST /pats/ID/rotate and tokenctl pat rotate ID.  A new PAT with the old
-- one's name and scope, and its original lifetime (expires_at -
-- created_at; none for never) capped by p_max_lifetime (0: no cap); the
-- old one's expiry becomes at most now + p_overlap (rounded up to a whole
-- second).  The bearer rules are
-- POST /pats's (tokend_pat_create): a first-party access token of p_user,
-- issued less than p_reauth seconds ago, whose scope covers the PAT's.
-- p_bearer and p_user NULL is the operator's path.  o_status: 'ok',
-- 'not_found' (unknown, another user's, revoked or expired), and
-- tokend_pat_create's.  o_old_hash (hex) is for the caller's cache.
CREATE FUNCTION tokend_pat_rotate(p_user bigint, p_id bigint,
    p_overlap integer, p_hash bytea, p_prefix text, p_bearer bigint,
    p_reauth integer, p_max_lifetime integer,
    OUT o_status text, OUT o_id bigint, OUT o_name text, OUT o_scope text,
    OUT o_created timestamptz, OUT o_expires timestamptz,
    OUT o_old_hash text, OUT o_old_expires timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
	b record;
	old record;
	life interval;
BEGIN
	IF p_bearer IS NOT NULL THEN
		SELECT * INTO b FROM tokend_bearer(p_bearer, p_user);
		IF b.o_status <> 'ok' THEN
			o_status := b.o_status;
			RETURN;
		ELSIF b.o_created <= now() - make_interval(secs => p_reauth) THEN
			o_status := 'reauthentication_required';
			RETURN;
		END IF;
	END IF;
	SELECT * INTO old FROM tokens WHERE id = p_id AND kind = 'pat' AND
	    (p_user IS NULL OR user_id = p_user) AND revoked_at IS NULL AND
	    (expires_at IS NULL OR expires_at > now()) FOR UPDATE;
	IF NOT FOUND THEN
		o_status := 'not_found';
		RETURN;
	END IF;
	IF p_bearer IS NOT NULL THEN
		IF NOT tokend_scope_subset(old.scope, b.o_scope) THEN
			o_status := 'invalid_scope';
			RETURN;
		END IF;
	END IF;
	IF NOT tokend_user_active(old.user_id) THEN
		o_status := 'invalid_user';
		RETURN;
	END IF;
	life := old.expires_at - old.created_at;
	IF p_max_lifetime > 0 THEN
		life := least(coalesce(life, make_interval(secs =>
		    p_max_lifetime)), make_interval(secs => p_max_lifetime));
	END IF;
	-- tokend checks expiry in whole seconds: a whole second at or after
	-- now + p_overlap, so that the old one never ends early.
	UPDATE tokens SET expires_at = least(expires_at, CASE WHEN
	    p_overlap = 0 THEN now() ELSE date_trunc('second', now()) +
	    make_interval(secs => p_overlap + 1) END), expiry_warned = 2
	    WHERE id = old.id RETURNING expires_at INTO o_old_expires;
	INSERT INTO tokens (kind, hash, prefix, user_id, name, scope, parent,
	    expires_at)
	VALUES ('pat', p_hash, p_prefix, old.user_id, old.name, old.scope,
	    old.id, now() + life)
	RETURNING id, name, scope, created_at, expires_at
	    INTO o_id, o_name, o_scope, o_created, o_expires;
	o_old_hash := encode(old.hash, 'hex');
	o_status := 'ok';
END;
$$;

-- The writer's expiry warnings: claim, in one statement, every live PAT
-- that entered its 7-day (1) or 1-day (2) window since it was last
-- warned, and return them for the token_expiring log line.  A PAT found
-- already inside its last day gets only the 1-day warning.
CREATE FUNCTION tokend_pat_expiring(OUT o_id bigint, OUT o_prefix text,
    OUT o_user text, OUT o_name text, OUT o_expires timestamptz,
    OUT o_warned smallint)
RETURNS SETOF record
LANGUAGE sql AS $$
	WITH w AS (SELECT id, CASE WHEN expires_at <= now() + interval '1 day'
	    THEN 2 ELSE 1 END::smallint AS lvl FROM tokens
	    WHERE kind = 'pat' AND revoked_at IS NULL AND expiry_warned < 2
	    AND expires_at > now() AND expires_at <= now() + interval '7 days')
	UPDATE tokens t SET expiry_warned = w.lvl FROM w
	    WHERE t.id = w.id AND t.expiry_warned < w.lvl
	    AND t.revoked_at IS NULL
	RETURNING t.id, t.prefix, (SELECT name FROM users u
	    WHERE u.id = t.user_id), t.name, t.expires_at, t.expiry_warned;
$$;

-- GET /sessions and tokenctl user sessions: p_user's live refresh
-- families.  o_created is the family's sign-in (auth_time, kept on every
-- rotation, as the first refresh token may be gone), o_last_used its
-- latest use or issue of any of its tokens.
CREATE FUNCTION tokend_sessions(p_user bigint, OUT o_id bigint,
    OUT o_client text, OUT o_created timestamptz,
    OUT o_last_used timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE AS $$
	SELECT t.family, c.client_id,
	    min(coalesce(t.auth_time, t.created_at)) FILTER (WHERE
	        t.kind = 'refresh'),
	    max(greatest(t.last_used_at, t.created_at))
	FROM tokens t JOIN clients c ON c.id = t.client_id
	WHERE t.user_id = p_user AND t.family IS NOT NULL
	GROUP BY t.family, c.client_id
	HAVING bool_or(t.kind = 'refresh' AND t.revoked_at IS NULL AND
	    t.rotated_at IS NULL AND t.expires_at > now())
	ORDER BY t.family;
$$;

-- DELETE /sessions/ID and tokenctl session revoke ID (p_user and p_bearer
-- NULL): end the live family p_family (round 3's contract): revoke every
-- token of it, delete the browser sessions its tokens were issued under,
-- and the consent of its user to its client, so that signing in again
-- asks again.  p_bearer is checked as for the PAT API (tokend_bearer).
-- o_status: 'ok', 'not_found' (unknown, another user's, ended), or
-- tokend_bearer's; o_hashes (hex, comma separated) for the caller's cache;
-- o_user and o_client name what ended.
CREATE FUNCTION tokend_session_revoke(p_family bigint, p_user bigint,
    p_bearer bigint, OUT o_status text, OUT o_n integer, OUT o_hashes text,
    OUT o_user text, OUT o_client text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	IF p_bearer IS NOT NULL THEN
		SELECT b.o_status INTO o_status
		    FROM tokend_bearer(p_bearer, p_user) b;
		IF o_status <> 'ok' THEN
			RETURN;
		END IF;
	END IF;
	o_status := 'not_found';
	PERFORM pg_advisory_xact_lock(p_family);
	SELECT t.user_id, t.client_id, u.name, c.client_id AS cid INTO r
	    FROM tokens t JOIN users u ON u.id = t.user_id
	    JOIN clients c ON c.id = t.client_id
	    WHERE t.family = p_family AND t.kind = 'refresh' AND
	    (p_user IS NULL OR t.user_id = p_user) LIMIT 1;
	IF NOT FOUND OR NOT tokend_family_live(p_family) THEN
		RETURN;
	END IF;
	DELETE FROM web_sessions WHERE id IN (SELECT web_session FROM tokens
	    WHERE (family = p_family OR id = p_family) AND
	    web_session IS NOT NULL);
	DELETE FROM consents WHERE user_id = r.user_id AND
	    client_id = r.client_id;
	SELECT f.o_n, f.o_hashes INTO o_n, o_hashes
	    FROM tokend_revoke_family(p_family) f;
	o_user := r.name;
	o_client := r.cid;
	o_status := 'ok';
END;
$$;
