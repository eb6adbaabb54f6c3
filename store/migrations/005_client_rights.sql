-- 005: what a client's tokens may do, and an end to every PAT and refresh
-- family (issue 9, SPEC sections 4 and 12).
--
-- clients.first_party: only access tokens issued to such a client may call
-- POST /authorize and the PAT API.  Before this, any user's access token
-- of any client could mint codes for another client and PATs that never
-- expire.  clients.introspect: only such a (confidential) client may call
-- /introspect.  Both default to false, for the clients that exist too: an
-- upgrade closes the holes first, and the operator opens them again for
-- the clients that need them (README, "Clients").
--
-- tokens.auth_time: on a refresh token, when its family's sign-in was
-- (NULL on a family's first refresh token: its own created_at).  It is
-- copied at each rotation, so the family's end does not depend on its
-- first token, which cleanup deletes long before the family ends.
--
-- The functions that take new parameters are dropped and made again: a
-- CREATE OR REPLACE with another argument list would add an overload, and
-- an old call would still find the old body.

ALTER TABLE clients
	ADD COLUMN first_party boolean NOT NULL DEFAULT false,
	ADD COLUMN introspect boolean NOT NULL DEFAULT false;

ALTER TABLE tokens ADD COLUMN auth_time timestamptz;

-- The words of a that are also words of b, in a's order.
CREATE FUNCTION tokend_scope_intersect(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(string_agg(w, ' ' ORDER BY n), '')
	FROM unnest(string_to_array(a, ' ')) WITH ORDINALITY AS s(w, n)
	WHERE w <> '' AND w = ANY (string_to_array(b, ' '))
$$;

-- The bearer token of a first-party API call (POST /authorize, the PAT
-- API), read again in the transaction that acts for it.  The worker found
-- it in its cache, which does not hold the client's first_party flag: the
-- flag is read here, as it is now, so making a client first-party (or no
-- longer) counts at once.  o_status: 'ok'; 'invalid' (unknown, not an
-- access token, revoked, expired, or not p_user's); 'not_first_party'.
CREATE FUNCTION tokend_bearer(p_token bigint, p_user bigint,
    OUT o_status text, OUT o_scope text, OUT o_created timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	r record;
BEGIN
	o_status := 'invalid';
	SELECT t.kind, t.user_id, t.scope, t.created_at, t.expires_at,
	    t.revoked_at, coalesce(c.first_party, false) AS first_party
	    INTO r FROM tokens t LEFT JOIN clients c ON c.id = t.client_id
	    WHERE t.id = p_token;
	IF NOT FOUND OR r.kind <> 'access' OR
	    r.user_id IS DISTINCT FROM p_user OR r.revoked_at IS NOT NULL OR
	    r.expires_at <= now() THEN
		RETURN;
	END IF;
	IF NOT r.first_party THEN
		o_status := 'not_first_party';
		RETURN;
	END IF;
	o_scope := r.scope;
	o_created := r.created_at;
	o_status := 'ok';
END;
$$;

-- POST /authorize: as in 002, and first the bearer token (p_bearer, its
-- tokens.id): a first-party client's, and the code's scope within its
-- scope as well as the client's.  Without p_scope the code gets exactly
-- the intersection of the two.  o_status: 'ok', 'invalid',
-- 'not_first_party', 'unknown_client', 'bad_redirect_uri',
-- 'pkce_required', 'invalid_scope', 'invalid_user'.
DROP FUNCTION tokend_authorize(text, text, text, bigint, bytea, text, text,
    integer);
CREATE FUNCTION tokend_authorize(p_client text, p_redirect text,
    p_scope text, p_user bigint, p_code bytea, p_code_prefix text,
    p_challenge text, p_code_ttl integer, p_bearer bigint,
    OUT o_status text, OUT o_scope text, OUT o_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
	b record;
	c record;
BEGIN
	SELECT * INTO b FROM tokend_bearer(p_bearer, p_user);
	IF b.o_status <> 'ok' THEN
		o_status := b.o_status;
		RETURN;
	END IF;
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
	o_scope := coalesce(p_scope, tokend_scope_intersect(b.o_scope,
	    c.scope));
	IF NOT tokend_scope_subset(o_scope, c.scope) OR
	    NOT tokend_scope_subset(o_scope, b.o_scope) THEN
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

-- POST /pats: as in 002, and first the bearer token (p_bearer): a
-- first-party client's, issued less than p_reauth seconds ago, holding
-- p_scope; and the lifetime within p_max_lifetime (0: no limit; NULL
-- p_expires_in is never).  o_status: 'ok', 'invalid', 'not_first_party',
-- 'reauthentication_required', 'invalid_scope', 'invalid_lifetime',
-- 'invalid_user'.
DROP FUNCTION tokend_pat_create(bigint, text, text, integer, bytea, text);
CREATE FUNCTION tokend_pat_create(p_user bigint, p_name text, p_scope text,
    p_expires_in integer, p_hash bytea, p_prefix text, p_bearer bigint,
    p_reauth integer, p_max_lifetime integer,
    OUT o_status text, OUT o_id bigint, OUT o_created text,
    OUT o_expires text)
LANGUAGE plpgsql AS $$
DECLARE
	b record;
	r record;
BEGIN
	SELECT * INTO b FROM tokend_bearer(p_bearer, p_user);
	IF b.o_status <> 'ok' THEN
		o_status := b.o_status;
	ELSIF b.o_created <= now() - make_interval(secs => p_reauth) THEN
		o_status := 'reauthentication_required';
	ELSIF NOT tokend_scope_subset(p_scope, b.o_scope) THEN
		o_status := 'invalid_scope';
	ELSIF p_max_lifetime > 0 AND (p_expires_in IS NULL OR
	    p_expires_in > p_max_lifetime) THEN
		o_status := 'invalid_lifetime';
	ELSIF NOT tokend_user_active(p_user) THEN
		o_status := 'invalid_user';
	END IF;
	IF o_status IS NOT NULL THEN
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

-- The refresh_token grant: as in 004, with three changes.
--   - The family's scope is the refresh token's, less what the client may
--     no longer ask for (the clients row as it is now).  The new refresh
--     token keeps it; a narrower p_scope narrows the new access token only
--     (RFC 6749 6), and must lie within the refresh token's scope.
--   - A family ends p_family_max_age seconds after its sign-in: the new
--     refresh token expires then at the latest, and past it the refresh
--     is 'invalid' and the family left alone, as for an expired token.
--   - The new refresh token is inserted here (tokend_mint gives access and
--     refresh tokens one scope); tokend_mint inserts the access token.
DROP FUNCTION tokend_refresh(bytea, bigint, text, integer, bytea, bytea,
    text, integer, bytea, text, integer);
CREATE FUNCTION tokend_refresh(p_old bytea, p_client bigint, p_scope text,
    p_grace integer, p_box bytea,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    p_family_max_age integer,
    OUT o_status text, OUT o_user bigint, OUT o_username text,
    OUT o_scope text, OUT o_box bytea, OUT o_access_id bigint,
    OUT o_refresh_id bigint, OUT o_iat bigint, OUT o_access_exp bigint,
    OUT o_family bigint, OUT o_family_size integer, OUT o_n integer,
    OUT o_hashes text)
LANGUAGE plpgsql AS $$
DECLARE
	fam bigint;
	fam_scope text;
	fam_start timestamptz;
	r record;
	m record;
BEGIN
	o_status := 'invalid';
	SELECT coalesce(family, id) INTO fam FROM tokens
	    WHERE hash = p_old AND kind = 'refresh';
	IF NOT FOUND THEN
		RETURN;
	END IF;
	PERFORM pg_advisory_xact_lock(fam);
	o_family := fam;
	SELECT t.id, t.user_id, t.client_id, t.scope, t.expires_at,
	    t.revoked_at, t.rotated_at, t.successor_box, t.created_at,
	    t.auth_time, u.name, coalesce(u.disabled, false) AS disabled
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
	fam_start := coalesce(r.auth_time,
	    (SELECT created_at FROM tokens WHERE id = fam), r.created_at);
	IF fam_start <= now() - make_interval(secs => p_family_max_age) THEN
		RETURN;
	END IF;
	SELECT tokend_scope_intersect(r.scope, c.scope) INTO fam_scope
	    FROM clients c WHERE c.id = p_client;
	o_scope := coalesce(fam_scope, '');
	IF p_scope IS NOT NULL THEN
		IF NOT tokend_scope_subset(p_scope, r.scope) THEN
			o_status := 'invalid_scope';
			RETURN;
		END IF;
		o_scope := tokend_scope_intersect(p_scope, o_scope);
	END IF;
	IF NOT tokend_user_active(r.user_id) THEN
		RETURN;
	END IF;
	UPDATE tokens SET rotated_at = now(),
	    successor_box = CASE WHEN p_grace > 0 THEN p_box END
	    WHERE id = r.id;
	INSERT INTO tokens (kind, hash, prefix, user_id, client_id, scope,
	    family, parent, auth_time, expires_at)
	VALUES ('refresh', p_refresh, p_refresh_prefix, r.user_id, p_client,
	    coalesce(fam_scope, ''), fam, r.id, fam_start,
	    least(now() + make_interval(secs => p_refresh_ttl),
	    fam_start + make_interval(secs => p_family_max_age)))
	RETURNING id INTO o_refresh_id;
	SELECT * INTO m FROM tokend_mint(r.user_id, p_client, o_scope, r.id,
	    fam, p_access, p_access_prefix, p_access_ttl, NULL, NULL, NULL);
	o_access_id := m.o_access_id;
	o_iat := floor(extract(epoch FROM now()))::bigint;
	o_access_exp := floor(extract(epoch FROM now() +
	    make_interval(secs => p_access_ttl)))::bigint;
	o_status := 'rotated';
END;
$$;
