-- 018: leaked-credential revocation (SPEC 13): POST /credentials/revoke,
-- for secret scanners, and tokenctl scan --revoke.
--
-- One call takes the SHA-256 of every well-formed credential reported, so
-- a report of made-up tokens costs the database the same lookup as one of
-- real tokens, and the answer, sent after it, says nothing either way.
-- What is found is revoked as its kind demands:
--   access, PAT        the token alone (as RFC 7009 revokes it);
--   refresh            its whole family (as a detected reuse does);
--   code               the code and every family issued from it (as a
--                      replay does);
--   tks_ session       the browser session row is deleted (the cookie no
--                      longer signs anyone in; tokens issued under it stay,
--                      as they would after a sign-out);
--   tkd_ device code   a pending or approved authorization is denied, so
--                      polling with it can never yield tokens.
-- Revocations reach every tokend through the notify triggers of 001.
-- p_by ('leak_report' from the API, 'tokenctl' from tokenctl scan) is who
-- acted, for the audit triggers (tokend.by, transaction-local).
--
-- o_found: reported credentials that exist (revoked now or before);
-- o_n: token rows revoked now (families included), sessions deleted and
-- device codes denied; o_hashes: the revoked token rows' hashes (hex,
-- comma-separated), for the caller to delete from its cache at once.

CREATE FUNCTION tokend_leak_revoke(p_hashes bytea[], p_by text,
    OUT o_found integer, OUT o_n integer, OUT o_hashes text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	fam bigint;
	n integer;
	h text;
	hs text[] := '{}';
BEGIN
	PERFORM set_config('tokend.by', p_by, true);
	o_found := 0;
	o_n := 0;
	-- Family locks in one order, so two reports cannot deadlock.
	FOR r IN SELECT id, kind, coalesce(family, id) AS f FROM tokens
	    WHERE hash = ANY (p_hashes) ORDER BY coalesce(family, id), id LOOP
		o_found := o_found + 1;
		IF r.kind = 'refresh' THEN
			PERFORM pg_advisory_xact_lock(r.f);
			SELECT x.o_n, x.o_hashes INTO n, h
			    FROM tokend_revoke_family(r.f) x;
			o_n := o_n + n;
			hs := hs || h;
			CONTINUE;
		END IF;
		IF r.kind = 'code' THEN
			FOR fam IN SELECT DISTINCT coalesce(family, id)
			    FROM tokens WHERE parent = r.id ORDER BY 1 LOOP
				PERFORM pg_advisory_xact_lock(fam);
				SELECT x.o_n, x.o_hashes INTO n, h
				    FROM tokend_revoke_family(fam) x;
				o_n := o_n + n;
				hs := hs || h;
			END LOOP;
		END IF;
		WITH u AS (UPDATE tokens SET revoked_at = now()
		    WHERE id = r.id AND revoked_at IS NULL RETURNING hash)
		SELECT count(*), string_agg(encode(hash, 'hex'), ',')
		    INTO n, h FROM u;
		o_n := o_n + n;
		hs := hs || h;
	END LOOP;
	DELETE FROM web_sessions WHERE hash = ANY (p_hashes);
	GET DIAGNOSTICS n = ROW_COUNT;
	o_found := o_found + n;
	o_n := o_n + n;
	SELECT count(*) INTO n FROM device_codes WHERE hash = ANY (p_hashes);
	o_found := o_found + n;
	UPDATE device_codes SET status = 'denied' WHERE hash = ANY (p_hashes)
	    AND status IN ('pending', 'approved');
	GET DIAGNOSTICS n = ROW_COUNT;
	o_n := o_n + n;
	o_hashes := array_to_string(array_remove(hs, ''), ',');
END;
$$;
