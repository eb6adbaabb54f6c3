-- 004: wipe successor boxes in the writer's sweep, not in every rotation.
--
-- 002 had every tokend_refresh call tokend_wipe_boxes first.  Its UPDATE
-- had no ORDER BY or LIMIT, so the planner often chose to scan the whole
-- tokens table, and each rotation's cost grew with the table and its dead
-- rows: measured with pg_stat_statements, the wipe was 735 us of a 943 us
-- rotation on a fresh table and 3.4 of 3.6 ms a minute of rotations later
-- (contrib/bench/oauth_bench.py, BENCHMARKS.md).  The grace itself never
-- depended on the wipe: a replay is honoured only while
-- rotated_at > now() - grace, so a box left past its grace is never
-- returned, only kept.  Now the writer sweeps once a second, and the sweep
-- walks tokens_box_idx in rotated_at order, a bounded batch at a time.

-- Wipe at most 10,000 of the successor boxes whose grace is over, oldest
-- first; returns how many.  SKIP LOCKED: a box being read by a concurrent
-- replay is left for the next call.
CREATE OR REPLACE FUNCTION tokend_wipe_boxes(p_grace integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	UPDATE tokens SET successor_box = NULL WHERE id IN (
	    SELECT id FROM tokens WHERE successor_box IS NOT NULL
	    AND rotated_at <= now() - make_interval(secs => p_grace)
	    ORDER BY rotated_at LIMIT 10000
	    FOR UPDATE SKIP LOCKED);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;

-- tokend_refresh as in 002, less its first statement (the wipe).
CREATE OR REPLACE FUNCTION tokend_refresh(p_old bytea, p_client bigint, p_scope text,
    p_grace integer, p_box bytea,
    p_access bytea, p_access_prefix text, p_access_ttl integer,
    p_refresh bytea, p_refresh_prefix text, p_refresh_ttl integer,
    OUT o_status text, OUT o_user bigint, OUT o_username text,
    OUT o_scope text, OUT o_box bytea, OUT o_access_id bigint,
    OUT o_refresh_id bigint, OUT o_iat bigint, OUT o_access_exp bigint,
    OUT o_family bigint, OUT o_family_size integer, OUT o_n integer,
    OUT o_hashes text)
LANGUAGE plpgsql AS $$
DECLARE
	fam bigint;
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
	    t.revoked_at, t.rotated_at, t.successor_box, u.name,
	    coalesce(u.disabled, false) AS disabled
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
	IF p_scope IS NOT NULL THEN
		IF NOT tokend_scope_subset(p_scope, r.scope) THEN
			o_status := 'invalid_scope';
			RETURN;
		END IF;
		o_scope := p_scope;
	END IF;
	IF NOT tokend_user_active(r.user_id) THEN
		RETURN;
	END IF;
	UPDATE tokens SET rotated_at = now(),
	    successor_box = CASE WHEN p_grace > 0 THEN p_box END
	    WHERE id = r.id;
	SELECT * INTO m FROM tokend_mint(r.user_id, p_client, o_scope, r.id,
	    fam, p_access, p_access_prefix, p_access_ttl, p_refresh,
	    p_refresh_prefix, p_refresh_ttl);
	o_access_id := m.o_access_id;
	o_refresh_id := m.o_refresh_id;
	o_iat := floor(extract(epoch FROM now()))::bigint;
	o_access_exp := floor(extract(epoch FROM now() +
	    make_interval(secs => p_access_ttl)))::bigint;
	o_status := 'rotated';
END;
$$;
