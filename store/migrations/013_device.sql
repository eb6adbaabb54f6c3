-- 013: the RFC 8628 device grant and each client's allowed grant types
-- (SPEC 11).
--
-- New clients get what SPEC 11 gives them: the code flow, refresh and the
-- device grant; the password grant only when asked for (RFC 9700 2.4).
-- tokenctl always names a client's grant types (it adds
-- client_credentials for a confidential one), so this default is what a
-- row inserted by hand gets.  Existing clients keep what 011 gave them.
ALTER TABLE clients ALTER COLUMN grant_types SET DEFAULT
	'{authorization_code,refresh_token,urn:ietf:params:oauth:grant-type:device_code}';

-- POST /device_authorization: a new pending code.  Rows a day past their
-- expiry go first (polling them says invalid_grant, no longer
-- expired_token), which keeps the table as small as the issuance rate;
-- the same user code of an expired row is freed with them.  o_status
-- 'taken' when the user code is a live one's (a collision among 20^8
-- codes): the caller answers 503 and the device asks again.
CREATE FUNCTION tokend_device_start(p_hash bytea, p_prefix text,
    p_user_code text, p_client bigint, p_scope text, p_ttl integer,
    p_interval integer, OUT o_status text)
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM device_codes WHERE expires_at < now() - interval '1 day'
	    OR (user_code = p_user_code AND expires_at <= now());
	INSERT INTO device_codes (hash, prefix, user_code, client_id, scope,
	    expires_at, poll_interval)
	VALUES (p_hash, p_prefix, p_user_code, p_client, p_scope,
	    now() + make_interval(secs => p_ttl), p_interval)
	ON CONFLICT DO NOTHING;
	o_status := CASE WHEN FOUND THEN 'ok' ELSE 'taken' END;
END;
$$;

-- One poll of /token with a device_code, in one transaction: the row is
-- locked, so two polls of an approved code cannot both get tokens.
-- o_status:
--   'pending'    not approved or denied yet (authorization_pending);
--   'slow_down'  polled sooner than poll_interval after the last poll:
--                the interval grows by 5 seconds (RFC 8628 3.5), and
--                o_interval is the new one;
--   'denied'     the person said no, or the user is disabled since;
--   'expired'    past expires_at, whatever else it was;
--   'ok'         approved: the pair is inserted (web_session from the
--                row, a new family) and the row is 'used';
--   'invalid'    unknown, another client's, or used already.
-- Every poll of a live pending code records last_poll_at.
CREATE FUNCTION tokend_device_poll(p_hash bytea, p_client bigint,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    OUT o_status text, OUT o_user bigint, OUT o_username text,
    OUT o_scope text, OUT o_access_id bigint, OUT o_refresh_id bigint,
    OUT o_iat bigint, OUT o_interval integer)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	m record;
BEGIN
	o_status := 'invalid';
	SELECT d.id, d.client_id, d.scope, d.status, d.user_id,
	    d.web_session, d.expires_at, d.poll_interval, d.last_poll_at
	    INTO r FROM device_codes d WHERE d.hash = p_hash FOR UPDATE;
	IF NOT FOUND OR r.client_id <> p_client OR r.status = 'used' THEN
		RETURN;
	END IF;
	o_interval := r.poll_interval;
	IF r.expires_at <= now() THEN
		o_status := 'expired';
	ELSIF r.status = 'denied' THEN
		o_status := 'denied';
	ELSIF r.status = 'pending' THEN
		o_status := 'pending';
		IF r.last_poll_at IS NOT NULL AND now() < r.last_poll_at +
		    make_interval(secs => r.poll_interval) THEN
			o_status := 'slow_down';
			o_interval := r.poll_interval + 5;
		END IF;
		UPDATE device_codes SET last_poll_at = now(),
		    poll_interval = o_interval WHERE id = r.id;
	ELSIF r.user_id IS NULL OR NOT tokend_user_active(r.user_id) THEN
		o_status := 'denied';
	ELSE
		UPDATE device_codes SET status = 'used', last_poll_at = now()
		    WHERE id = r.id;
		SELECT * INTO m FROM tokend_mint(r.user_id, p_client, r.scope,
		    NULL, NULL, p_access, p_access_prefix, p_access_ttl,
		    p_refresh, p_refresh_prefix, p_refresh_ttl);
		IF r.web_session IS NOT NULL THEN
			UPDATE tokens SET web_session = r.web_session
			    WHERE id IN (m.o_access_id, m.o_refresh_id);
		END IF;
		SELECT name INTO o_username FROM users WHERE id = r.user_id;
		o_user := r.user_id;
		o_scope := r.scope;
		o_access_id := m.o_access_id;
		o_refresh_id := m.o_refresh_id;
		o_iat := floor(extract(epoch FROM now()))::bigint;
		o_status := 'ok';
	END IF;
END;
$$;
