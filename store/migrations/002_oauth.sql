-- 002: OAuth 2.0 grants.  Every grant's database work is one call to one of
-- the functions below, so it is one round trip and one transaction: the
-- claim of a refresh token or code, the insert of its successors and any
-- revocation commit together or not at all.
--
-- Token strings never reach PostgreSQL: the worker mints them, and passes
-- their SHA-256 (bytea) and 8-character display prefix.  A rotated refresh
-- token keeps its successor pair only as successor_box, AES-256-GCM under a
-- key derived from the old refresh token itself (which the database does not
-- have), and only for refresh_grace seconds.
--
-- Families: the first refresh token of a grant is the family's root, and
-- every token of the grant (access and refresh, before and after rotation)
-- has family = the root's id; parent is the token or code it came from.
-- Everything that revokes or rotates inside a family first takes the
-- transaction-scoped advisory lock on the family id, so a revocation can
-- never miss a successor that a concurrent rotation is inserting.

ALTER TABLE tokens
	ADD COLUMN rotated_at timestamptz,	-- refresh: when it was used
	ADD COLUMN successor_box bytea,		-- refresh: nonce, ciphertext, tag
	ADD COLUMN redirect_uri text,		-- code: the exact redirect URI
	ADD COLUMN code_challenge text,		-- code: PKCE S256 challenge
	ADD COLUMN used_at timestamptz;		-- code: when it was exchanged

CREATE INDEX tokens_parent_idx ON tokens (parent) WHERE parent IS NOT NULL;
CREATE INDEX tokens_box_idx ON tokens (rotated_at)
	WHERE successor_box IS NOT NULL;
CREATE INDEX tokens_user_kind_idx ON tokens (user_id, kind);

-- Whether every space-separated word of want is a word of have.
CREATE FUNCTION tokend_scope_subset(want text, have text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(array_remove(string_to_array(want, ' '), '') <@
	    array_remove(string_to_array(have, ' '), ''), true)
$$;

-- Wipe the successor boxes whose grace is over.  SKIP LOCKED: a box being
-- read by a concurrent replay is left for the next call.
CREATE FUNCTION tokend_wipe_boxes(p_grace integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	UPDATE tokens SET successor_box = NULL WHERE id IN (
	    SELECT id FROM tokens WHERE successor_box IS NOT NULL
	    AND rotated_at <= now() - make_interval(secs => p_grace)
	    FOR UPDATE SKIP LOCKED);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

-- Revoke every token of a family; the caller holds the family's advisory
-- lock.  Returns how many were revoked now and their hashes (hex, comma
-- separated) for the caller to delete from the cache.
CREATE FUNCTION tokend_revoke_family(p_family bigint, OUT o_n integer,
    OUT o_hashes text)
LANGUAGE plpgsql AS $$
BEGIN
	UPDATE tokens SET successor_box = NULL
	    WHERE (family = p_family OR id = p_family)
	    AND successor_box IS NOT NULL;
	WITH r AS (UPDATE tokens SET revoked_at = now()
	    WHERE (family = p_family OR id = p_family) AND revoked_at IS NULL
	    RETURNING hash)
	SELECT count(*), coalesce(string_agg(encode(hash, 'hex'), ','), '')
	    INTO o_n, o_hashes FROM r;
END;
$$;

-- Lock the user's row against a concurrent "user disable" (whose token
-- revocation then sees what we insert) and say whether it may have tokens.
CREATE FUNCTION tokend_user_active(p_user bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF p_user IS NULL THEN
		RETURN true;
	END IF;
	PERFORM 1 FROM users WHERE id = p_user AND NOT disabled FOR SHARE;
	RETURN FOUND;
END;
$$;

-- Insert an access token and, when p_refresh is given, a refresh token.
-- p_family NULL starts a new family rooted at the refresh token.
CREATE FUNCTION tokend_mint(p_user bigint, p_client bigint, p_scope text,
    p_parent bigint, p_family bigint,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    OUT o_access_id bigint, OUT o_refresh_id bigint, OUT o_family bigint)
LANGUAGE plpgsql AS $$
BEGIN
	o_family := p_family;
	IF p_refresh IS NOT NULL THEN
		o_refresh_id := nextval('tokens_id_seq');
		o_family := coalesce(o_family, o_refresh_id);
		INSERT INTO tokens (id, kind, hash, prefix, user_id, client_id,
		    scope, family, parent, expires_at)
		VALUES (o_refresh_id, 'refresh', p_refresh, p_refresh_prefix,
		    p_user, p_client, p_scope, o_family, p_parent,
		    now() + make_interval(secs => p_refresh_ttl));
	END IF;
	INSERT INTO tokens (kind, hash, prefix, user_id, client_id, scope,
	    family, parent, expires_at)
	VALUES ('access', p_access, p_access_prefix, p_user, p_client, p_scope,
	    o_family, p_parent, now() + make_interval(secs => p_access_ttl))
	RETURNING id INTO o_access_id;
END;
$$;

-- Password and client_credentials grants.  o_status: 'ok', or
-- 'invalid_user' (the user was disabled since it was looked up).
CREATE FUNCTION tokend_issue(p_user bigint, p_client bigint, p_scope text,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    OUT o_status text, OUT o_access_id bigint, OUT o_refresh_id bigint,
    OUT o_iat bigint)
LANGUAGE plpgsql AS $$
DECLARE
	m record;
BEGIN
	IF NOT tokend_user_active(p_user) THEN
		o_status := 'invalid_user';
		RETURN;
	END IF;
	SELECT * INTO m FROM tokend_mint(p_user, p_client, p_scope, NULL,
	    NULL, p_access, p_access_prefix, p_access_ttl, p_refresh,
	    p_refresh_prefix, p_refresh_ttl);
	o_access_id := m.o_access_id;
	o_refresh_id := m.o_refresh_id;
	o_iat := floor(extract(epoch FROM now()))::bigint;
	o_status := 'ok';
END;
$$;

-- The refresh_token grant.  o_status:
--   'rotated'        the old token is consumed, the new pair inserted, and
--                    p_box (the new pair, encrypted) kept for the grace;
--   'replay'         presented again within p_grace seconds: o_box holds
--                    the successor pair the first rotation stored, and
--                    o_scope, o_access_exp describe its access token;
--   'reuse'          presented again later: the whole family is revoked
--                    (o_n tokens now, of o_family_size; o_hashes for the
--                    cache);
--   'invalid'        unknown, expired, revoked, another client's, or its
--                    user disabled; nothing changes;
--   'invalid_scope'  p_scope is not within the token's scope.
CREATE FUNCTION tokend_refresh(p_old bytea, p_client bigint, p_scope text,
    p_grace integer, p_box bytea,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    OUT o_status text, OUT o_user bigint, OUT o_username text,
    OUT o_scope text, OUT o_box bytea, OUT o_access_id bigint,
    OUT o_refresh_id bigint, OUT o_iat bigint, OUT o_access_exp bigint,
    OUT o_family bigint, OUT o_family_size integer, OUT o_n integer,
    OUT o_hashes text)
LANGUAGE plpgsql AS $$
DECLARE
	fam bigint;
	r record;
	m record;
BEGIN
	o_status := 'invalid';
	PERFORM tokend_wipe_boxes(p_grace);
	SELECT coalesce(family, id) INTO fam FROM tokens
	    WHERE hash = p_old AND kind = 'refresh';
	IF NOT FOUND THEN
		RETURN;
	END IF;
	PERFORM pg_advisory_xact_lock(fam);
	o_family := fam;
	SELECT t.id, t.user_id, t.client_id, t.scope, t.expires_at,
	    t.revoked_at, t.rotated_at, t.successor_box, u.name,
	    coalesce(u.disabled, false) AS disabled
	    INTO r FROM tokens t LEFT JOIN users u ON u.id = t.user_id
	    WHERE t.hash = p_old FOR UPDATE OF t;
	IF NOT FOUND OR r.client_id IS DISTINCT FROM p_client OR
	    r.revoked_at IS NOT NULL OR r.expires_at <= now() OR r.disabled
	    THEN
		RETURN;
	END IF;
	o_user := r.user_id;
	o_username := r.name;
	o_scope := r.scope;
	IF r.rotated_at IS NOT NULL THEN
		IF r.successor_box IS NOT NULL AND p_grace > 0 AND
		    r.rotated_at > now() - make_interval(secs => p_grace) THEN
			o_box := r.successor_box;
			SELECT scope, floor(extract(epoch FROM expires_at))
			    INTO o_scope, o_access_exp FROM tokens
			    WHERE parent = r.id AND kind = 'access'
			    ORDER BY id LIMIT 1;
			o_status := 'replay';
			RETURN;
		END IF;
		SELECT count(*) INTO o_family_size FROM tokens
		    WHERE family = fam OR id = fam;
		SELECT f.o_n, f.o_hashes INTO o_n, o_hashes
		    FROM tokend_revoke_family(fam) f;
		o_status := 'reuse';
		RETURN;
	END IF;
	IF p_scope IS NOT NULL THEN
		IF NOT tokend_scope_subset(p_scope, r.scope) THEN
			o_status := 'invalid_scope';
			RETURN;
		END IF;
		o_scope := p_scope;
	END IF;
	IF NOT tokend_user_active(r.user_id) THEN
		RETURN;
	END IF;
	UPDATE tokens SET rotated_at = now(),
	    successor_box = CASE WHEN p_grace > 0 THEN p_box END
	    WHERE id = r.id;
	SELECT * INTO m FROM tokend_mint(r.user_id, p_client, o_scope, r.id,
	    fam, p_access, p_access_prefix, p_access_ttl, p_refresh,
	    p_refresh_prefix, p_refresh_ttl);
	o_access_id := m.o_access_id;
	o_refresh_id := m.o_refresh_id;
	o_iat := floor(extract(epoch FROM now()))::bigint;
	o_access_exp := floor(extract(epoch FROM now() +
	    make_interval(secs => p_access_ttl)))::bigint;
	o_status := 'rotated';
END;
$$;

-- POST /authorize: check the client, redirect URI, PKCE and scope, and
-- store the code.  o_status: 'ok', 'unknown_client', 'bad_redirect_uri',
-- 'pkce_required', 'invalid_scope', 'invalid_user'.
CREATE FUNCTION tokend_authorize(p_client text, p_redirect text,
    p_scope text, p_user bigint, p_code bytea, p_code_prefix text,
    p_challenge text, p_code_ttl integer,
    OUT o_status text, OUT o_scope text, OUT o_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
	c record;
BEGIN
	SELECT id, public, redirect_uris, scope INTO c FROM clients
	    WHERE client_id = p_client;
	IF NOT FOUND THEN
		o_status := 'unknown_client';
		RETURN;
	END IF;
	IF NOT (p_redirect = ANY (c.redirect_uris)) THEN
		o_status := 'bad_redirect_uri';
		RETURN;
	END IF;
	IF c.public AND p_challenge IS NULL THEN
		o_status := 'pkce_required';
		RETURN;
	END IF;
	o_scope := coalesce(p_scope, c.scope);
	IF NOT tokend_scope_subset(o_scope, c.scope) THEN
		o_status := 'invalid_scope';
		RETURN;
	END IF;
	IF NOT tokend_user_active(p_user) THEN
		o_status := 'invalid_user';
		RETURN;
	END IF;
	INSERT INTO tokens (kind, hash, prefix, user_id, client_id, scope,
	    redirect_uri, code_challenge, expires_at)
	VALUES ('code', p_code, p_code_prefix, p_user, c.id, o_scope,
	    p_redirect, p_challenge, now() + make_interval(secs => p_code_ttl))
	RETURNING id INTO o_id;
	o_status := 'ok';
END;
$$;

-- The authorization_code grant.  p_challenge is the S256 of the presented
-- code_verifier (NULL when none was sent).  o_status:
--   'ok'       the code is used up and a new family issued from it;
--   'replay'   the code was already used: it and every token issued from
--              it are revoked (o_n, o_hashes);
--   'invalid'  unknown, expired, revoked, another client's, another
--              redirect URI, a PKCE mismatch, or its user disabled.
CREATE FUNCTION tokend_code_exchange(p_code bytea, p_client bigint,
    p_redirect text, p_challenge text,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    OUT o_status text, OUT o_user bigint, OUT o_username text,
    OUT o_scope text, OUT o_access_id bigint, OUT o_refresh_id bigint,
    OUT o_iat bigint, OUT o_n integer, OUT o_hashes text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	m record;
	fam bigint;
	n integer;
	h text;
BEGIN
	o_status := 'invalid';
	SELECT t.id, t.client_id, t.user_id, t.scope, t.redirect_uri,
	    t.code_challenge, t.expires_at, t.used_at, t.revoked_at, u.name
	    INTO r FROM tokens t JOIN users u ON u.id = t.user_id
	    WHERE t.hash = p_code AND t.kind = 'code' FOR UPDATE OF t;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF r.used_at IS NOT NULL THEN
		o_n := 0;
		o_hashes := '';
		FOR fam IN SELECT DISTINCT coalesce(family, id) FROM tokens
		    WHERE parent = r.id LOOP
			PERFORM pg_advisory_xact_lock(fam);
			SELECT f.o_n, f.o_hashes INTO n, h
			    FROM tokend_revoke_family(fam) f;
			o_n := o_n + n;
			IF h <> '' THEN
				o_hashes := o_hashes ||
				    CASE WHEN o_hashes <> '' THEN ',' ELSE '' END
				    || h;
			END IF;
		END LOOP;
		UPDATE tokens SET revoked_at = now()
		    WHERE id = r.id AND revoked_at IS NULL;
		o_status := 'replay';
		RETURN;
	END IF;
	IF r.revoked_at IS NOT NULL OR r.expires_at <= now() OR
	    r.client_id IS DISTINCT FROM p_client OR
	    r.redirect_uri IS DISTINCT FROM p_redirect OR
	    r.code_challenge IS DISTINCT FROM p_challenge OR
	    NOT tokend_user_active(r.user_id) THEN
		RETURN;
	END IF;
	UPDATE tokens SET used_at = now() WHERE id = r.id;
	SELECT * INTO m FROM tokend_mint(r.user_id, p_client, r.scope, r.id,
	    NULL, p_access, p_access_prefix, p_access_ttl, p_refresh,
	    p_refresh_prefix, p_refresh_ttl);
	o_user := r.user_id;
	o_username := r.name;
	o_scope := r.scope;
	o_access_id := m.o_access_id;
	o_refresh_id := m.o_refresh_id;
	o_iat := floor(extract(epoch FROM now()))::bigint;
	o_status := 'ok';
END;
$$;

-- POST /revoke (RFC 7009): a token of another client, or of none, is left
-- alone (the answer is 200 all the same).  A refresh token takes its family
-- with it.  Returns the hashes revoked now, for the cache.
CREATE FUNCTION tokend_revoke(p_hash bytea, p_client bigint,
    OUT o_kind text, OUT o_n integer, OUT o_hashes text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	o_n := 0;
	o_hashes := '';
	SELECT id, kind, coalesce(family, id) AS fam, client_id INTO r
	    FROM tokens WHERE hash = p_hash;
	IF NOT FOUND OR r.client_id IS DISTINCT FROM p_client THEN
		RETURN;
	END IF;
	o_kind := r.kind;
	IF r.kind = 'refresh' THEN
		PERFORM pg_advisory_xact_lock(r.fam);
		SELECT f.o_n, f.o_hashes INTO o_n, o_hashes
		    FROM tokend_revoke_family(r.fam) f;
		RETURN;
	END IF;
	WITH u AS (UPDATE tokens SET revoked_at = now()
	    WHERE id = r.id AND revoked_at IS NULL RETURNING hash)
	SELECT count(*), coalesce(string_agg(encode(hash, 'hex'), ','), '')
	    INTO o_n, o_hashes FROM u;
END;
$$;

-- POST /pats.  o_status 'ok' or 'invalid_user'.
CREATE FUNCTION tokend_pat_create(p_user bigint, p_name text, p_scope text,
    p_expires_in integer, p_hash bytea, p_prefix text,
    OUT o_status text, OUT o_id bigint, OUT o_created text,
    OUT o_expires text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	IF NOT tokend_user_active(p_user) THEN
		o_status := 'invalid_user';
		RETURN;
	END IF;
	INSERT INTO tokens (kind, hash, prefix, user_id, name, scope,
	    expires_at)
	VALUES ('pat', p_hash, p_prefix, p_user, p_name, p_scope,
	    now() + make_interval(secs => p_expires_in))
	RETURNING id, created_at, expires_at INTO r;
	o_id := r.id;
	o_created := to_char(r.created_at AT TIME ZONE 'UTC',
	    'YYYY-MM-DD"T"HH24:MI:SS"Z"');
	o_expires := to_char(r.expires_at AT TIME ZONE 'UTC',
	    'YYYY-MM-DD"T"HH24:MI:SS"Z"');
	o_status := 'ok';
END;
$$;
