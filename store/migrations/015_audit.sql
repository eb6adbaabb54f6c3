-- 015: the audit trail (issue 13, SPEC 12).  One row per token issue,
-- refresh rotation, refresh reuse, code replay, revocation, sign-in
-- failure, lockout, user change and client change, written in the
-- transaction of the change it records: by row triggers on tokens, users,
-- clients and login_failures, so that a plain SQL change is recorded too,
-- or by the SQL function that makes the change.
--
-- Who acted (audit.by) is tokend_audit_by(): the transaction's tokend.by
-- setting when a function set it (set_config('tokend.by', 'leak_report',
-- true)), else the session's application_name: 'tokend ...' is api,
-- 'tokenctl' is tokenctl, anything else sql.  Why a family was revoked
-- travels the same way in tokend.reason ('reuse', 'code_replay'), set by
-- tokend_refresh and tokend_code_exchange around their revocation.
--
-- Never a secret or a hash in a row: a token appears as its id and its
-- 8-character display prefix.  The writer's usage updates (last_used_at,
-- use_count, and whatever else its batched UPDATE writes) fire no trigger:
-- the WHEN clause of tokens_audit_update lists the columns that count, as
-- tokens_notify_update (001) does.  A session with session_replication_role
-- = replica (pg_restore --disable-triggers, logical replication's apply)
-- writes no rows: what it replays was recorded where it happened.
--
-- Rows are kept for `retention`, as expired and revoked tokens are:
-- tokend_cleanup deletes older ones.

CREATE TABLE audit (
	id		bigserial PRIMARY KEY,
	at		timestamptz NOT NULL DEFAULT now(),
	event		text NOT NULL,
	by		text NOT NULL
			CHECK (by IN ('api', 'tokenctl', 'sql', 'leak_report')),
	-- No foreign keys: rows outlive the users, clients and tokens they
	-- name, so the names are kept as they were.
	user_id		bigint,
	user_name	text,
	client_id	text,		-- clients.client_id
	token_id	bigint,
	token_prefix	text,
	family		bigint,		-- the token's refresh family
	detail		jsonb NOT NULL DEFAULT '{}',
	-- The transaction that wrote the row: the rows of one change share it.
	xact		bigint NOT NULL DEFAULT txid_current()
);

CREATE INDEX audit_at_idx ON audit (at);
CREATE INDEX audit_user_id_idx ON audit (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX audit_user_name_idx ON audit (user_name)
	WHERE user_name IS NOT NULL;
-- Where tokend_audit_revoked finds the row of its transaction that a
-- family's next revoked token joins.
CREATE INDEX audit_revocation_idx ON audit (xact, family)
	WHERE event IN ('token_revoked', 'token_deleted', 'refresh_reuse',
	    'code_replay');

ALTER TABLE login_failures ADD COLUMN locked_at timestamptz;

-- Who is acting in this transaction: see the top of this file.  A
-- tokend.by that is not one of the four values is ignored (the CHECK
-- would otherwise fail the change being recorded).
CREATE FUNCTION tokend_audit_by() RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT CASE
	    WHEN current_setting('tokend.by', true) IN ('api', 'tokenctl',
		'sql', 'leak_report')
		THEN current_setting('tokend.by', true)
	    WHEN current_setting('application_name') LIKE 'tokend%' THEN 'api'
	    WHEN current_setting('application_name') = 'tokenctl'
		THEN 'tokenctl'
	    ELSE 'sql' END
$$;

-- The users and clients deleted by this transaction, by id: a JSON object
-- in the transaction-local setting p_key ('tokend.gone_users',
-- 'tokend.gone_clients').  Their tokens are deleted after them (ON DELETE
-- CASCADE), and the rows that record it name them from here.
CREATE FUNCTION tokend_audit_gone(p_key text, p_id bigint, p_name text)
RETURNS void
LANGUAGE sql AS $$
	SELECT set_config(p_key, (coalesce(nullif(current_setting(p_key, true),
	    ''), '{}')::jsonb || jsonb_build_object(p_id::text, p_name))::text,
	    true);
$$;

CREATE FUNCTION tokend_audit_gone_name(p_key text, p_id bigint)
RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT nullif(current_setting(p_key, true), '')::jsonb ->> p_id::text;
$$;

-- One row.  p_user_name NULL: the name of user p_user as it is now, or
-- as it was when this transaction deleted it.  PL/pgSQL, not SQL, here and
-- below: a session plans its statements once, not at every call (a token
-- issue's row cost ten times more as SQL functions).
CREATE FUNCTION tokend_audit_add(p_event text, p_user bigint,
    p_user_name text, p_client text, p_token bigint, p_prefix text,
    p_family bigint, p_detail jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF p_user_name IS NULL AND p_user IS NOT NULL THEN
		p_user_name := coalesce((SELECT name FROM users
		    WHERE id = p_user),
		    tokend_audit_gone_name('tokend.gone_users', p_user));
	END IF;
	INSERT INTO audit (event, by, user_id, user_name, client_id,
	    token_id, token_prefix, family, detail)
	VALUES (p_event, tokend_audit_by(), p_user, p_user_name, p_client,
	    p_token, p_prefix, p_family, coalesce(p_detail, '{}'));
END;
$$;

-- A time as tokend shows times (proto/text.c iso8601_format).
CREATE FUNCTION tokend_audit_time(p_at timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
$$;

-- One row about token t, naming its user and client.
CREATE FUNCTION tokend_audit_token(p_event text, t tokens, p_detail jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	client	text;
BEGIN
	IF t.client_id IS NOT NULL THEN
		client := coalesce((SELECT client_id FROM clients
		    WHERE id = t.client_id),
		    tokend_audit_gone_name('tokend.gone_clients', t.client_id));
	END IF;
	PERFORM tokend_audit_add(p_event, t.user_id, NULL, client, t.id,
	    t.prefix, t.family, p_detail);
END;
$$;

-- Token t was revoked (or deleted while live).  What an operator reads is
-- one row per token, except that the tokens of one refresh family ended
-- by one transaction (POST /revoke of a refresh token, a reuse, user
-- disable) share one row: its token becomes the family's root (the
-- family id, which GET /sessions calls the session id), and detail.tokens
-- counts them.  A lone token's row names the token and its kind.
CREATE FUNCTION tokend_audit_revoked(p_event text, t tokens) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	x	bigint := txid_current();
BEGIN
	IF t.family IS NOT NULL THEN
		UPDATE audit SET token_id = t.family,
		    token_prefix = CASE WHEN t.id = t.family THEN t.prefix
			ELSE coalesce((SELECT prefix FROM tokens
			WHERE id = t.family), CASE WHEN token_id = t.family
			THEN token_prefix END) END,
		    detail = jsonb_build_object('tokens',
			(detail->>'tokens')::integer + 1)
		    WHERE xact = x AND family = t.family AND event = p_event
		    AND event IN ('token_revoked', 'token_deleted',
			'refresh_reuse', 'code_replay');
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;
	PERFORM tokend_audit_token(p_event, t,
	    jsonb_build_object('kind', t.kind, 'tokens', 1));
END;
$$;

-- tokens: issue (INSERT), revocation, un-revocation, refresh rotation,
-- and any change to what the token grants (UPDATE), deletion of a live
-- token (DELETE; retention's deletions of expired and revoked rows are
-- not events).
CREATE FUNCTION tokend_audit_tokens() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	d	jsonb := '{}';
BEGIN
	IF TG_OP = 'INSERT' THEN
		PERFORM tokend_audit_token('token_issued', NEW,
		    jsonb_strip_nulls(jsonb_build_object('kind', NEW.kind,
		    'scope', NEW.scope, 'name', NEW.name, 'parent', NEW.parent,
		    'expires_at', tokend_audit_time(NEW.expires_at))));
		RETURN NULL;
	ELSIF TG_OP = 'DELETE' THEN
		PERFORM tokend_audit_revoked('token_deleted', OLD);
		RETURN NULL;
	END IF;
	IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
		PERFORM tokend_audit_revoked(CASE current_setting(
		    'tokend.reason', true) WHEN 'reuse' THEN 'refresh_reuse'
		    WHEN 'code_replay' THEN 'code_replay'
		    ELSE 'token_revoked' END, NEW);
	ELSIF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NULL THEN
		PERFORM tokend_audit_token('token_unrevoked', NEW,
		    jsonb_build_object('kind', NEW.kind));
	END IF;
	IF OLD.rotated_at IS NULL AND NEW.rotated_at IS NOT NULL THEN
		PERFORM tokend_audit_token('token_rotated', NEW,
		    jsonb_build_object('kind', NEW.kind));
	END IF;
	IF OLD.expires_at IS DISTINCT FROM NEW.expires_at THEN
		d := d || jsonb_build_object('expires_at',
		    tokend_audit_time(NEW.expires_at));
	END IF;
	IF OLD.scope IS DISTINCT FROM NEW.scope THEN
		d := d || jsonb_build_object('scope', NEW.scope);
	END IF;
	IF OLD.user_id IS DISTINCT FROM NEW.user_id THEN
		d := d || jsonb_build_object('from_user_id', OLD.user_id);
	END IF;
	IF OLD.client_id IS DISTINCT FROM NEW.client_id THEN
		d := d || jsonb_build_object('from_client', (SELECT client_id
		    FROM clients WHERE id = OLD.client_id));
	END IF;
	IF OLD.kind IS DISTINCT FROM NEW.kind THEN
		d := d || jsonb_build_object('kind', NEW.kind);
	END IF;
	IF OLD.hash IS DISTINCT FROM NEW.hash THEN
		d := d || jsonb_build_object('hash', 'replaced');
	END IF;
	IF d <> '{}' THEN
		PERFORM tokend_audit_token('token_changed', NEW, d);
	END IF;
	RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_audit_insert AFTER INSERT ON tokens
	FOR EACH ROW EXECUTE FUNCTION tokend_audit_tokens();

-- Like tokens_notify_update's, this WHEN clause keeps the writer's usage
-- updates, its successor box wipes and its expiry-warning claims from
-- calling the function at all: only the columns listed count.
CREATE TRIGGER tokens_audit_update AFTER UPDATE ON tokens
	FOR EACH ROW
	WHEN ((OLD.revoked_at IS NULL) <> (NEW.revoked_at IS NULL)
	    OR (OLD.rotated_at IS NULL AND NEW.rotated_at IS NOT NULL)
	    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
	    OR OLD.scope IS DISTINCT FROM NEW.scope
	    OR OLD.user_id IS DISTINCT FROM NEW.user_id
	    OR OLD.client_id IS DISTINCT FROM NEW.client_id
	    OR OLD.kind IS DISTINCT FROM NEW.kind
	    OR OLD.hash IS DISTINCT FROM NEW.hash)
	EXECUTE FUNCTION tokend_audit_tokens();

-- Deleting a live token ends it as a revocation does (user delete, client
-- remove, plain SQL).  Retention deletes only expired or revoked rows.
CREATE TRIGGER tokens_audit_delete AFTER DELETE ON tokens
	FOR EACH ROW
	WHEN (OLD.revoked_at IS NULL AND
	    (OLD.expires_at IS NULL OR OLD.expires_at > now()))
	EXECUTE FUNCTION tokend_audit_tokens();

-- users: add, disable, enable, password change (set or removed), rename,
-- delete.  Never the password hash: only whether there is one.  Delete is
-- a BEFORE trigger, so that its row comes before those of the tokens that
-- go with the user.
CREATE FUNCTION tokend_audit_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		PERFORM tokend_audit_add('user_added', NEW.id, NEW.name, NULL,
		    NULL, NULL, NULL, jsonb_build_object('password',
		    NEW.password_hash IS NOT NULL, 'disabled', NEW.disabled));
		RETURN NULL;
	ELSIF TG_OP = 'DELETE' THEN
		PERFORM tokend_audit_add('user_deleted', OLD.id, OLD.name, NULL,
		    NULL, NULL, NULL, NULL);
		PERFORM tokend_audit_gone('tokend.gone_users', OLD.id,
		    OLD.name);
		RETURN OLD;
	END IF;
	IF NEW.disabled AND NOT OLD.disabled THEN
		PERFORM tokend_audit_add('user_disabled', NEW.id, NEW.name,
		    NULL, NULL, NULL, NULL, NULL);
	ELSIF OLD.disabled AND NOT NEW.disabled THEN
		PERFORM tokend_audit_add('user_enabled', NEW.id, NEW.name,
		    NULL, NULL, NULL, NULL, NULL);
	END IF;
	IF OLD.password_hash IS DISTINCT FROM NEW.password_hash THEN
		PERFORM tokend_audit_add('user_password_changed', NEW.id,
		    NEW.name, NULL, NULL, NULL, NULL, jsonb_build_object(
		    'password', NEW.password_hash IS NOT NULL));
	END IF;
	IF OLD.name IS DISTINCT FROM NEW.name THEN
		PERFORM tokend_audit_add('user_renamed', NEW.id, NEW.name,
		    NULL, NULL, NULL, NULL, jsonb_build_object('from',
		    OLD.name));
	END IF;
	RETURN NULL;
END;
$$;

CREATE TRIGGER users_audit AFTER INSERT ON users
	FOR EACH ROW EXECUTE FUNCTION tokend_audit_users();
CREATE TRIGGER users_audit_delete BEFORE DELETE ON users
	FOR EACH ROW EXECUTE FUNCTION tokend_audit_users();
CREATE TRIGGER users_audit_update AFTER UPDATE ON users
	FOR EACH ROW
	WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled
	    OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
	    OR OLD.name IS DISTINCT FROM NEW.name)
	EXECUTE FUNCTION tokend_audit_users();

-- What a client may do, as detail shows it: never its secret hash.
CREATE FUNCTION tokend_audit_client_rights(c clients) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('public', c.public, 'first_party',
	    c.first_party, 'introspect', c.introspect, 'scope', c.scope,
	    'redirect_uris', to_jsonb(c.redirect_uris), 'grant_types',
	    to_jsonb(c.grant_types));
$$;

-- clients: add, remove, secret rotation (set or removed), and a change
-- of what it may do (detail: the fields that changed, as they are now)
-- or of its client_id.  Remove is a BEFORE trigger, as for users.
CREATE FUNCTION tokend_audit_clients() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	d	jsonb := '{}';
	o	jsonb;
	k	text;
BEGIN
	IF TG_OP = 'INSERT' THEN
		PERFORM tokend_audit_add('client_added', NULL, NULL,
		    NEW.client_id, NULL, NULL, NULL,
		    tokend_audit_client_rights(NEW) || jsonb_build_object(
		    'secret', NEW.secret_hash IS NOT NULL));
		RETURN NULL;
	ELSIF TG_OP = 'DELETE' THEN
		PERFORM tokend_audit_add('client_removed', NULL, NULL,
		    OLD.client_id, NULL, NULL, NULL, NULL);
		PERFORM tokend_audit_gone('tokend.gone_clients', OLD.id,
		    OLD.client_id);
		RETURN OLD;
	END IF;
	IF OLD.secret_hash IS DISTINCT FROM NEW.secret_hash THEN
		PERFORM tokend_audit_add('client_secret_rotated', NULL, NULL,
		    NEW.client_id, NULL, NULL, NULL, jsonb_build_object(
		    'secret', NEW.secret_hash IS NOT NULL));
	END IF;
	o := tokend_audit_client_rights(OLD);
	FOR k IN SELECT jsonb_object_keys(o) LOOP
		IF o->k IS DISTINCT FROM tokend_audit_client_rights(NEW)->k THEN
			d := d || jsonb_build_object(k,
			    tokend_audit_client_rights(NEW)->k);
		END IF;
	END LOOP;
	IF OLD.client_id IS DISTINCT FROM NEW.client_id THEN
		d := d || jsonb_build_object('from', OLD.client_id);
	END IF;
	IF d <> '{}' THEN
		PERFORM tokend_audit_add('client_changed', NULL, NULL,
		    NEW.client_id, NULL, NULL, NULL, d);
	END IF;
	RETURN NULL;
END;
$$;

CREATE TRIGGER clients_audit AFTER INSERT OR UPDATE ON clients
	FOR EACH ROW EXECUTE FUNCTION tokend_audit_clients();
CREATE TRIGGER clients_audit_delete BEFORE DELETE ON clients
	FOR EACH ROW EXECUTE FUNCTION tokend_audit_clients();

-- Emptying tokens, users or clients is one row: the table.
CREATE FUNCTION tokend_audit_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM tokend_audit_add('table_truncated', NULL, NULL, NULL, NULL,
	    NULL, NULL, jsonb_build_object('table', TG_TABLE_NAME));
	RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_audit_truncate AFTER TRUNCATE ON tokens
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_audit_truncate();
CREATE TRIGGER users_audit_truncate AFTER TRUNCATE ON users
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_audit_truncate();
CREATE TRIGGER clients_audit_truncate AFTER TRUNCATE ON clients
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_audit_truncate();

-- login_failures: a name's failures forgotten by tokenctl user unlock or
-- by SQL is the user's unlock.  tokend's own deletions (a sign-in that
-- succeeds clears its count, tokend_login_attempt drops ended windows) are
-- not events: the WHEN clause skips them.
CREATE FUNCTION tokend_audit_unlock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM tokend_audit_add('user_unlocked', (SELECT id FROM users
	    WHERE name = OLD.name), OLD.name, NULL, NULL, NULL, NULL,
	    jsonb_build_object('failures', OLD.failures));
	RETURN NULL;
END;
$$;

CREATE TRIGGER login_failures_audit AFTER DELETE ON login_failures
	FOR EACH ROW WHEN (tokend_audit_by() <> 'api')
	EXECUTE FUNCTION tokend_audit_unlock();

-- A sign-in that failed (a wrong password, an unknown or disabled user, a
-- malformed name: p_name NULL).  tokend_login_attempt counted the attempt
-- before the password was checked, which is why the row is not written
-- there: the worker calls this once it knows.  p_peer is the client's
-- address.
CREATE FUNCTION tokend_login_failed(p_name text, p_client text,
    p_peer text, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM tokend_audit_add('login_failed', (SELECT id FROM users
	    WHERE name = p_name), p_name, p_client, NULL, NULL, NULL,
	    jsonb_strip_nulls(jsonb_build_object('reason', p_reason, 'peer',
	    p_peer)));
END;
$$;

-- tokend_login_attempt refused p_name: its failures reached the limit.
-- One row per lockout: login_failures.locked_at marks the window as
-- recorded, so the refusals that follow in that window write nothing.
CREATE FUNCTION tokend_login_locked(p_name text, p_client text,
    p_peer text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	n	integer;
BEGIN
	UPDATE login_failures SET locked_at = now() WHERE name = p_name AND
	    (locked_at IS NULL OR locked_at < window_start)
	    RETURNING failures INTO n;
	IF FOUND THEN
		PERFORM tokend_audit_add('login_locked', (SELECT id FROM users
		    WHERE name = p_name), p_name, p_client, NULL, NULL, NULL,
		    jsonb_strip_nulls(jsonb_build_object('failures', n - 1,
		    'peer', p_peer)));
	END IF;
END;
$$;

-- Retention: as in 010, and the audit rows older than p_retention too.
CREATE OR REPLACE FUNCTION tokend_cleanup(p_retention integer,
    OUT o_tokens bigint, OUT o_batches bigint)
LANGUAGE plpgsql AS $$
DECLARE
	cut timestamptz := now() - make_interval(secs => p_retention);
BEGIN
	DELETE FROM tokens WHERE expires_at < cut OR revoked_at < cut;
	GET DIAGNOSTICS o_tokens = ROW_COUNT;
	DELETE FROM usage_batches WHERE at < cut;
	GET DIAGNOSTICS o_batches = ROW_COUNT;
	DELETE FROM audit WHERE at < cut;
END;
$$;

-- The refresh_token grant: as in 005, and a reuse's revocation of the
-- family runs under tokend.reason = 'reuse', so that its audit row says so.
CREATE OR REPLACE FUNCTION tokend_refresh(p_old bytea, p_client bigint,
    p_scope text, p_grace integer, p_box bytea,
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
		PERFORM set_config('tokend.reason', 'reuse', true);
		SELECT f.o_n, f.o_hashes INTO o_n, o_hashes
		    FROM tokend_revoke_family(fam) f;
		PERFORM set_config('tokend.reason', '', true);
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


-- The authorization_code grant: as in 002, and a replay's revocations run
-- under tokend.reason = 'code_replay', so that their audit rows say so.
CREATE OR REPLACE FUNCTION tokend_code_exchange(p_code bytea,
    p_client bigint, p_redirect text, p_challenge text,
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
		PERFORM set_config('tokend.reason', 'code_replay', true);
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
		PERFORM set_config('tokend.reason', '', true);
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

