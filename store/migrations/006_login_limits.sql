-- 006: failed logins counted in PostgreSQL, and identities that fit.
--
-- The login limit (login_max_failures in login_window seconds per
-- username) was counted in each box's shared memory, so two tokend boxes
-- on one database allowed twice the attempts.  Now every password login
-- is one call of tokend_login_attempt, which counts the attempt in
-- login_failures before the password is checked (so guesses sent in
-- parallel are all counted) and returns the user's row; a success clears
-- the count (tokend_login_ok), as does `tokenctl user unlock`.  Unknown
-- names are counted like known ones: the answer must not tell them apart.

CREATE TABLE login_failures (
	name		text PRIMARY KEY,
	window_start	timestamptz NOT NULL,	-- first failure of the window
	failures	integer NOT NULL
);

CREATE INDEX login_failures_window_idx ON login_failures (window_start);

-- One attempt of p_name.  o_wait > 0: refused, the window ends in o_wait
-- seconds (the attempt is not counted, and no user row is returned);
-- else counted, and the user's row (o_id NULL when there is none).  The
-- count stops at p_max + 1, so a refused attempt never extends anything.
-- Old windows are deleted here, a bounded batch per call, so the table
-- holds about the names tried within the last window.
CREATE FUNCTION tokend_login_attempt(p_name text, p_max integer,
    p_window integer, OUT o_wait integer, OUT o_id bigint, OUT o_hash text,
    OUT o_disabled boolean)
LANGUAGE plpgsql AS $$
DECLARE
	w	interval := make_interval(secs => p_window);
	v_start	timestamptz;
	v_n	integer;
BEGIN
	DELETE FROM login_failures WHERE name IN (
	    SELECT name FROM login_failures WHERE window_start <= now() - w
	    ORDER BY window_start LIMIT 100 FOR UPDATE SKIP LOCKED);
	INSERT INTO login_failures AS f (name, window_start, failures)
	    VALUES (p_name, now(), 1)
	    ON CONFLICT (name) DO UPDATE SET
		window_start = CASE WHEN f.window_start <= now() - w
		    THEN now() ELSE f.window_start END,
		failures = CASE WHEN f.window_start <= now() - w
		    THEN 1 ELSE least(f.failures + 1, p_max + 1) END
	    RETURNING window_start, failures INTO v_start, v_n;
	o_wait := 0;
	IF v_n > p_max THEN
		o_wait := greatest(1, ceil(extract(epoch FROM
		    v_start + w - now())))::integer;
		RETURN;
	END IF;
	SELECT id, password_hash, disabled INTO o_id, o_hash, o_disabled
	    FROM users WHERE name = p_name;
END;
$$;

-- p_name logged in: its failures are forgotten.
CREATE FUNCTION tokend_login_ok(p_name text) RETURNS void
LANGUAGE sql AS $$
	DELETE FROM login_failures WHERE name = p_name;
$$;

-- Emptying users (a fresh start, or a test) forgets every count with them:
-- a new user must not inherit the failures of an old one of that name.
CREATE FUNCTION tokend_users_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	TRUNCATE login_failures;
	RETURN NULL;
END;
$$;

CREATE TRIGGER users_truncate_failures AFTER TRUNCATE ON users
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_users_truncated();

-- tok_info holds a user name or client id in 128 bytes with the NUL, and
-- an identity is never truncated to fit (two names sharing 127 bytes would
-- become one X-Auth-User): the schema refuses longer ones.  NOT VALID: a
-- row from before stays (tokend refuses its logins and tokens rather than
-- cut its name), every new or changed row is checked.
ALTER TABLE users ADD CONSTRAINT users_name_length
	CHECK (octet_length(name) BETWEEN 1 AND 127) NOT VALID;
ALTER TABLE clients ADD CONSTRAINT clients_client_id_length
	CHECK (octet_length(client_id) BETWEEN 1 AND 127) NOT VALID;
