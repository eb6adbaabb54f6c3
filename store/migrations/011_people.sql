-- 011: the tables behind sign-in for people (SPEC 11): browser sessions,
-- remembered consent, device authorizations, and each client's allowed
-- grant types.  The functions that use them come in the next migrations.

-- A browser sign-in session.  The cookie holds a tks_ token; only its
-- SHA-256 is stored, and prefix (8 characters) is what logs show.
-- auth_time is when the password was last checked (prompt=login renews it).
CREATE TABLE web_sessions (
	id		bigserial PRIMARY KEY,
	hash		bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
	prefix		text NOT NULL,
	user_id		bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at	timestamptz NOT NULL DEFAULT now(),
	auth_time	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	last_seen_at	timestamptz
);

CREATE INDEX web_sessions_user_idx ON web_sessions (user_id);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- Consent a person gave a client: scope is everything consented so far, so
-- a request within it asks nothing.  Ending the session (SPEC 12) that was
-- issued under it deletes the row.
CREATE TABLE consents (
	user_id		bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	client_id	bigint NOT NULL REFERENCES clients (id)
			ON DELETE CASCADE,
	scope		text NOT NULL DEFAULT '',
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, client_id)
);

-- The browser session a code (and the family it starts) was issued under.
ALTER TABLE tokens ADD COLUMN web_session bigint
	REFERENCES web_sessions (id) ON DELETE SET NULL;
CREATE INDEX tokens_web_session_idx ON tokens (web_session)
	WHERE web_session IS NOT NULL;

-- RFC 8628 device authorizations.  hash is the SHA-256 of the tkd_
-- device_code; user_code is stored without its dash, in the unambiguous
-- alphabet of RFC 8628 6.1.  status moves pending -> approved | denied,
-- and approved -> used when the token pair is issued (once).
CREATE TABLE device_codes (
	id		bigserial PRIMARY KEY,
	hash		bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
	prefix		text NOT NULL,
	user_code	text NOT NULL UNIQUE
			CHECK (user_code ~ '^[BCDFGHJKLMNPQRSTVWXZ]{8}$'),
	client_id	bigint NOT NULL REFERENCES clients (id)
			ON DELETE CASCADE,
	scope		text NOT NULL DEFAULT '',
	status		text NOT NULL DEFAULT 'pending'
			CHECK (status IN ('pending', 'approved', 'denied',
			    'used')),
	user_id		bigint REFERENCES users (id) ON DELETE CASCADE,
	web_session	bigint REFERENCES web_sessions (id)
			ON DELETE SET NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	poll_interval	integer NOT NULL DEFAULT 5,
	last_poll_at	timestamptz
);

CREATE INDEX device_codes_expires_idx ON device_codes (expires_at);

-- Allowed grant types.  Existing clients keep exactly what they could do.
-- The default is today's behaviour until the grant checks land (013 sets
-- the default SPEC 11 gives new clients).
ALTER TABLE clients ADD COLUMN grant_types text[];
UPDATE clients SET grant_types = CASE WHEN public
	THEN '{authorization_code,refresh_token,password}'::text[]
	ELSE '{authorization_code,refresh_token,password,client_credentials}'
	END;
ALTER TABLE clients
	ALTER COLUMN grant_types SET DEFAULT
	    '{authorization_code,refresh_token,password,client_credentials}',
	ALTER COLUMN grant_types SET NOT NULL,
	ADD CONSTRAINT clients_grant_types_known CHECK (grant_types <@
	    '{authorization_code,refresh_token,password,client_credentials,urn:ietf:params:oauth:grant-type:device_code}'::text[]);
