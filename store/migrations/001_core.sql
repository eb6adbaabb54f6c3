-- 001: users, OAuth clients, tokens, the writer's watermark, and the
-- triggers that tell every tokend about revocations made by any path.
--
-- migrate.c runs each file inside its own transaction: no BEGIN/COMMIT here.

CREATE TABLE users (
	id		bigserial PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	-- argon2id encoded string; NULL means no password login.
	password_hash	text,
	disabled	boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
	id		bigserial PRIMARY KEY,
	client_id	text NOT NULL UNIQUE,
	-- argon2id encoded string; NULL for public clients.
	secret_hash	text,
	public		boolean NOT NULL,
	redirect_uris	text[] NOT NULL DEFAULT '{}',
	scope		text NOT NULL DEFAULT '',
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a token is stored; prefix is its first 8 characters,
-- the display form logs and listings show.
CREATE TABLE tokens (
	id		bigserial PRIMARY KEY,
	kind		text NOT NULL
			CHECK (kind IN ('access', 'refresh', 'pat', 'code')),
	hash		bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
	prefix		text NOT NULL,
	user_id		bigint REFERENCES users (id) ON DELETE CASCADE,
	client_id	bigint REFERENCES clients (id) ON DELETE CASCADE,
	name		text,
	scope		text NOT NULL DEFAULT '',
	family		bigint,
	parent		bigint,
	created_at	timestamptz NOT NULL DEFAULT now(),
	-- NULL: never expires.
	expires_at	timestamptz,
	last_used_at	timestamptz,
	use_count	bigint NOT NULL DEFAULT 0,
	revoked_at	timestamptz
);

CREATE INDEX tokens_user_id_idx ON tokens (user_id);
CREATE INDEX tokens_family_idx ON tokens (family) WHERE family IS NOT NULL;
CREATE INDEX tokens_expires_at_idx ON tokens (expires_at)
	WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_revoked_at_idx ON tokens (revoked_at)
	WHERE revoked_at IS NOT NULL;

-- The writer's exactly-once watermark: the last usage batch each tokend
-- instance committed, updated in the same transaction as the batch.
CREATE TABLE usage_batches (
	instance	text PRIMARY KEY,
	seq		bigint NOT NULL,
	rows		bigint NOT NULL DEFAULT 0,
	at		timestamptz NOT NULL DEFAULT now()
);

-- Revocation notices on channel tokend_revoke.  Payloads stay tiny (NOTIFY
-- payloads are queued per transaction): 't' + hex SHA-256 for one token,
-- 'u' + users.id for everything of a user, 'c' + clients.client_id for a
-- client.  The writers LISTEN and drop the matching cache entries.

CREATE FUNCTION tokend_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('tokend_revoke', 't' || encode(OLD.hash, 'hex'));
	IF TG_OP = 'UPDATE' AND NEW.hash <> OLD.hash THEN
		PERFORM pg_notify('tokend_revoke',
		    't' || encode(NEW.hash, 'hex'));
	END IF;
	RETURN NULL;
END;
$$;

-- The WHEN clause keeps the writer's usage updates (last_used_at,
-- use_count) from calling the function at all.  Any column the cache
-- answers with counts, and revoked_at in either direction.
CREATE TRIGGER tokens_notify_update AFTER UPDATE ON tokens
	FOR EACH ROW
	WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
	    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
	    OR OLD.scope IS DISTINCT FROM NEW.scope
	    OR OLD.user_id IS DISTINCT FROM NEW.user_id
	    OR OLD.client_id IS DISTINCT FROM NEW.client_id
	    OR OLD.kind IS DISTINCT FROM NEW.kind
	    OR OLD.hash IS DISTINCT FROM NEW.hash)
	EXECUTE FUNCTION tokend_tokens_notify();

CREATE TRIGGER tokens_notify_delete AFTER DELETE ON tokens
	FOR EACH ROW EXECUTE FUNCTION tokend_tokens_notify();

CREATE FUNCTION tokend_users_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('tokend_revoke', 'u' || OLD.id::text);
	RETURN NULL;
END;
$$;

CREATE TRIGGER users_notify_update AFTER UPDATE ON users
	FOR EACH ROW
	WHEN ((NEW.disabled AND NOT OLD.disabled)
	    OR OLD.name IS DISTINCT FROM NEW.name)
	EXECUTE FUNCTION tokend_users_notify();

CREATE TRIGGER users_notify_delete AFTER DELETE ON users
	FOR EACH ROW EXECUTE FUNCTION tokend_users_notify();

CREATE FUNCTION tokend_clients_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('tokend_revoke', 'c' || OLD.client_id);
	IF TG_OP = 'UPDATE' AND NEW.client_id <> OLD.client_id THEN
		PERFORM pg_notify('tokend_revoke', 'c' || NEW.client_id);
	END IF;
	RETURN NULL;
END;
$$;

CREATE TRIGGER clients_notify AFTER UPDATE OR DELETE ON clients
	FOR EACH ROW EXECUTE FUNCTION tokend_clients_notify();
