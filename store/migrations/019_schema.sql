-- 019: every tokend object lives in the schema tokend, so tokend can share
-- a database with an application (whose own users or tokens tables no
-- longer clash).  A database created since the schema existed already has
-- everything there (the migrations run with search_path "tokend, public");
-- one migrated before has its tables and functions in public, and they move
-- here: migrate.c runs this file first of all for such a database (before
-- any migration it lacks, so that none makes a second copy of a function),
-- and again in its turn, when it finds nothing left to move.  Moving keeps
-- every row, index, sequence, trigger and constraint.  migrate.c pins each
-- function's search_path after every migration.

DO $$
DECLARE
	t text;
	f record;
BEGIN
	FOREACH t IN ARRAY ARRAY['users', 'clients', 'tokens', 'usage_batches',
	    'login_failures', 'web_sessions', 'consents', 'device_codes',
	    'web_tickets', 'audit', 'token_networks']
	LOOP
		IF to_regclass('public.' || t) IS NOT NULL AND
		    to_regclass('tokend.' || t) IS NULL THEN
			EXECUTE format('ALTER TABLE public.%I SET SCHEMA tokend',
			    t);
		END IF;
	END LOOP;
	FOR f IN SELECT p.proname,
	    pg_get_function_identity_arguments(p.oid) AS args
	    FROM pg_proc p
	    WHERE p.pronamespace = 'public'::regnamespace
	    AND p.proname LIKE 'tokend\_%'
	LOOP
		EXECUTE format('ALTER FUNCTION public.%I(%s) SET SCHEMA tokend',
		    f.proname, f.args);
	END LOOP;
END;
$$;
