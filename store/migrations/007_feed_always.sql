-- 007: every path that changes a token, user or client reaches the cache.
--
-- The row triggers of 001 miss two paths.  TRUNCATE fires no row trigger,
-- so a statement-level AFTER TRUNCATE trigger on each table sends '*',
-- which makes every tokend clear its whole cache (and forget the clients
-- its workers remember).  A session with session_replication_role =
-- replica (logical replication's apply worker, pg_restore
-- --disable-triggers, some migration tools) skips every ENABLE'd trigger;
-- ENABLE ALWAYS makes these fire in that role too.
--
-- What this cannot cover, and README "What happens when things break"
-- says so: ALTER TABLE ... DISABLE TRIGGER, dropping the triggers, or
-- writing the files under PostgreSQL's feet.  Those are the database
-- administrator's to make, and bounded staleness does not cover them.

CREATE FUNCTION tokend_truncate_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('tokend_revoke', '*' || TG_TABLE_NAME);
	RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_notify_truncate AFTER TRUNCATE ON tokens
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_truncate_notify();
CREATE TRIGGER users_notify_truncate AFTER TRUNCATE ON users
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_truncate_notify();
CREATE TRIGGER clients_notify_truncate AFTER TRUNCATE ON clients
	FOR EACH STATEMENT EXECUTE FUNCTION tokend_truncate_notify();

ALTER TABLE tokens ENABLE ALWAYS TRIGGER tokens_notify_update;
ALTER TABLE tokens ENABLE ALWAYS TRIGGER tokens_notify_delete;
ALTER TABLE tokens ENABLE ALWAYS TRIGGER tokens_notify_truncate;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_notify_update;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_notify_delete;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_notify_truncate;
ALTER TABLE clients ENABLE ALWAYS TRIGGER clients_notify;
ALTER TABLE clients ENABLE ALWAYS TRIGGER clients_notify_truncate;
