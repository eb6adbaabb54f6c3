-- 012: sign-in for people (SPEC 11): the browser pages' database work.
-- Each page's step is one function call, so it is one round trip and one
-- transaction.  Secrets never arrive here: the worker passes SHA-256
-- hashes of the session cookie, of the consent form's ticket and of the
-- code it mints.

-- Every token of a family carries the browser session its code was issued
-- under: a token inserted with a parent and no web_session takes the
-- parent's, so ending the session (SPEC 12) finds the whole family.
CREATE FUNCTION tokend_tokens_web_session() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.web_session IS NULL AND NEW.parent IS NOT NULL THEN
		SELECT web_session INTO NEW.web_session FROM tokens
		    WHERE id = NEW.parent;
	END IF;
	RETURN NEW;
END;
$$;

CREATE TRIGGER tokens_web_session BEFORE INSERT ON tokens
	FOR EACH ROW EXECUTE FUNCTION tokend_tokens_web_session();

-- A consent page shown and not yet answered: the authorization request
-- (or device authorization) it stands for, kept here rather than in the
-- page, so the form carries only the ticket.  Answering deletes the row:
-- a form posted twice finds nothing the second time.
CREATE TABLE web_tickets (
	hash		bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
	web_session	bigint NOT NULL REFERENCES web_sessions (id)
			ON DELETE CASCADE,
	client_id	bigint NOT NULL REFERENCES clients (id)
			ON DELETE CASCADE,
	device_code	bigint REFERENCES device_codes (id) ON DELETE CASCADE,
	scope		text NOT NULL DEFAULT '',
	redirect_uri	text,
	state		text,
	code_challenge	text,
	expires_at	timestamptz NOT NULL
);

CREATE INDEX web_tickets_expires_idx ON web_tickets (expires_at);
CREATE INDEX web_tickets_session_idx ON web_tickets (web_session);

-- The words of a and b, each once.
CREATE FUNCTION tokend_scope_union(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(string_agg(w, ' ' ORDER BY w), '')
	FROM (SELECT DISTINCT w FROM unnest(string_to_array(a, ' ') ||
	    string_to_array(b, ' ')) AS s(w) WHERE w <> '') AS u
$$;

-- The live session of a cookie hash (NULL: none), its user active.
CREATE FUNCTION tokend_web_session(p_hash bytea, OUT o_session bigint,
    OUT o_user bigint, OUT o_username text)
LANGUAGE plpgsql AS $$
BEGIN
	IF p_hash IS NULL THEN
		RETURN;
	END IF;
	UPDATE web_sessions s SET last_seen_at = now()
	    FROM users u
	    WHERE s.hash = p_hash AND s.expires_at > now() AND u.id = s.user_id
	    RETURNING s.id, s.user_id, u.name
	    INTO o_session, o_user, o_username;
	IF o_user IS NOT NULL AND NOT tokend_user_active(o_user) THEN
		o_session := NULL;
		o_user := NULL;
		o_username := NULL;
	END IF;
END;
$$;

-- GET /authorize: the client, whether redirect_uri is one of its own, and
-- the session of the cookie with the consent its user gave this client.
-- o_status: 'ok', 'unknown_client', 'bad_redirect_uri'.
CREATE FUNCTION tokend_web_begin(p_client text, p_redirect text,
    p_session bytea, OUT o_status text, OUT o_client bigint,
    OUT o_public boolean, OUT o_first_party boolean, OUT o_code_ok boolean,
    OUT o_scope text, OUT o_session bigint, OUT o_user bigint,
    OUT o_username text, OUT o_consent text)
LANGUAGE plpgsql AS $$
DECLARE
	c record;
BEGIN
	SELECT id, public, first_party, redirect_uris, scope, grant_types
	    INTO c FROM clients WHERE client_id = p_client;
	IF NOT FOUND THEN
		o_status := 'unknown_client';
		RETURN;
	END IF;
	IF p_redirect IS NULL OR NOT (p_redirect = ANY (c.redirect_uris)) THEN
		o_status := 'bad_redirect_uri';
		RETURN;
	END IF;
	o_client := c.id;
	o_public := c.public;
	o_first_party := c.first_party;
	o_code_ok := 'authorization_code' = ANY (c.grant_types);
	o_scope := c.scope;
	SELECT * INTO o_session, o_user, o_username
	    FROM tokend_web_session(p_session);
	IF o_user IS NOT NULL THEN
		SELECT scope INTO o_consent FROM consents
		    WHERE user_id = o_user AND client_id = c.id;
	END IF;
	o_status := 'ok';
END;
$$;

-- A code for the session's user, recording the session on it.
CREATE FUNCTION tokend_web_code(p_client bigint, p_user bigint,
    p_session bigint, p_scope text, p_redirect text, p_challenge text,
    p_code bytea, p_code_prefix text, p_code_ttl integer,
    OUT o_id bigint)
LANGUAGE sql AS $$
	INSERT INTO tokens (kind, hash, prefix, user_id, client_id, scope,
	    redirect_uri, code_challenge, expires_at, web_session)
	VALUES ('code', p_code, p_code_prefix, p_user, p_client, p_scope,
	    p_redirect, p_challenge, now() + make_interval(secs => p_code_ttl),
	    p_session)
	RETURNING id
$$;

-- A consent page about to be shown: its ticket.  Expired tickets go at
-- the same time (a consent page is good for minutes, so they are few).
CREATE FUNCTION tokend_web_ticket(p_hash bytea, p_session bigint,
    p_client bigint, p_device bigint, p_scope text, p_redirect text,
    p_state text, p_challenge text, p_ttl integer) RETURNS void
LANGUAGE sql AS $$
	DELETE FROM web_tickets WHERE expires_at <= now();
	INSERT INTO web_tickets (hash, web_session, client_id, device_code,
	    scope, redirect_uri, state, code_challenge, expires_at)
	VALUES (p_hash, p_session, p_client, p_device, p_scope, p_redirect,
	    p_state, p_challenge, now() + make_interval(secs => p_ttl))
$$;

-- POST /consent: the ticket, taken once, for the session that was shown
-- it.  Allow remembers the consent, then issues the code (an authorization
-- request) or approves the device authorization (the contract of SPEC 11
-- with the device grant); deny refuses it.  o_status: 'allowed',
-- 'denied', 'gone' (no such ticket for this live session, expired, or the
-- device authorization is no longer pending).
CREATE FUNCTION tokend_web_decide(p_ticket bytea, p_session bytea,
    p_allow boolean, p_code bytea, p_code_prefix text, p_code_ttl integer,
    OUT o_status text, OUT o_device boolean, OUT o_redirect text,
    OUT o_state text, OUT o_client text, OUT o_user text, OUT o_scope text)
LANGUAGE plpgsql AS $$
DECLARE
	t record;
	s record;
	n integer;
BEGIN
	o_status := 'gone';
	SELECT * INTO s FROM tokend_web_session(p_session);
	IF s.o_session IS NULL THEN
		RETURN;
	END IF;
	DELETE FROM web_tickets WHERE hash = p_ticket
	    AND web_session = s.o_session RETURNING * INTO t;
	IF NOT FOUND OR t.expires_at <= now() THEN
		RETURN;
	END IF;
	SELECT client_id INTO o_client FROM clients WHERE id = t.client_id;
	o_user := s.o_username;
	o_scope := t.scope;
	o_device := t.device_code IS NOT NULL;
	o_redirect := t.redirect_uri;
	o_state := t.state;
	IF o_device THEN
		IF p_allow THEN
			UPDATE device_codes SET status = 'approved',
			    user_id = s.o_user, web_session = s.o_session
			    WHERE id = t.device_code AND status = 'pending'
			    AND expires_at > now();
		ELSE
			UPDATE device_codes SET status = 'denied'
			    WHERE id = t.device_code AND status = 'pending'
			    AND expires_at > now();
		END IF;
		GET DIAGNOSTICS n = ROW_COUNT;
		IF n = 0 THEN
			RETURN;
		END IF;
	END IF;
	IF NOT p_allow THEN
		o_status := 'denied';
		RETURN;
	END IF;
	INSERT INTO consents AS k (user_id, client_id, scope)
	    VALUES (s.o_user, t.client_id, t.scope)
	    ON CONFLICT (user_id, client_id) DO UPDATE
	    SET scope = tokend_scope_union(k.scope, EXCLUDED.scope),
	    updated_at = now();
	IF NOT o_device THEN
		PERFORM tokend_web_code(t.client_id, s.o_user, s.o_session,
		    t.scope, t.redirect_uri, t.code_challenge, p_code,
		    p_code_prefix, p_code_ttl);
	END IF;
	o_status := 'allowed';
END;
$$;

-- POST /device: the pending device authorization of a user code, and,
-- when the cookie's session is live, the consent page's ticket for it.
-- o_status: 'no_code', 'no_session', 'ok'.
CREATE FUNCTION tokend_web_device(p_user_code text, p_session bytea,
    p_ticket bytea, p_ttl integer, OUT o_status text, OUT o_client text,
    OUT o_scope text, OUT o_username text)
LANGUAGE plpgsql AS $$
DECLARE
	d record;
	s record;
BEGIN
	SELECT dc.id, dc.client_id, dc.scope, c.client_id AS name INTO d
	    FROM device_codes dc JOIN clients c ON c.id = dc.client_id
	    WHERE dc.user_code = p_user_code AND dc.status = 'pending'
	    AND dc.expires_at > now();
	IF NOT FOUND THEN
		o_status := 'no_code';
		RETURN;
	END IF;
	o_client := d.name;
	o_scope := d.scope;
	SELECT * INTO s FROM tokend_web_session(p_session);
	IF s.o_session IS NULL THEN
		o_status := 'no_session';
		RETURN;
	END IF;
	o_username := s.o_username;
	PERFORM tokend_web_ticket(p_ticket, s.o_session, d.client_id, d.id,
	    d.scope, NULL, NULL, NULL, p_ttl);
	o_status := 'ok';
END;
$$;

-- POST /signin after the password checked: a new session (the cookie's
-- old one, if any, ends: prompt=login replaces it).
CREATE FUNCTION tokend_web_signin(p_hash bytea, p_prefix text,
    p_user bigint, p_ttl integer, p_old bytea, OUT o_session bigint)
LANGUAGE sql AS $$
	DELETE FROM web_sessions WHERE hash = p_old;
	INSERT INTO web_sessions (hash, prefix, user_id, expires_at)
	VALUES (p_hash, p_prefix, p_user, now() + make_interval(secs => p_ttl))
	RETURNING id
$$;
