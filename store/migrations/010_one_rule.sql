-- 010: PAT creation and retention cleanup, each in one function that the
-- worker, the writer and tokenctl all call, so no copy of either rule can
-- drift from the other.

-- POST /pats: as in 005.  p_bearer NULL is the operator's path (tokenctl
-- pat create): no bearer token, so no first-party, re-authentication or
-- scope-subset check; p_max_lifetime 0 sets no lifetime limit.  The user
-- must still be active, and the INSERT is the one both paths make.  The
-- worker always passes its caller's bearer token id, never NULL.
-- o_created and o_expires are timestamps now, not text: tokend formats
-- every time it shows in one place (iso8601_format, proto/text.c).
DROP FUNCTION tokend_pat_create(bigint, text, text, integer, bytea, text,
    bigint, integer, integer);
CREATE FUNCTION tokend_pat_create(p_user bigint, p_name text,
    p_scope text, p_expires_in integer, p_hash bytea, p_prefix text,
    p_bearer bigint, p_reauth integer, p_max_lifetime integer,
    OUT o_status text, OUT o_id bigint, OUT o_created timestamptz,
    OUT o_expires timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
	b record;
BEGIN
	IF p_bearer IS NOT NULL THEN
		SELECT * INTO b FROM tokend_bearer(p_bearer, p_user);
		IF b.o_status <> 'ok' THEN
			o_status := b.o_status;
		ELSIF b.o_created <= now() - make_interval(secs => p_reauth) THEN
			o_status := 'reauthentication_required';
		ELSIF NOT tokend_scope_subset(p_scope, b.o_scope) THEN
			o_status := 'invalid_scope';
		END IF;
	END IF;
	IF o_status IS NULL AND p_max_lifetime > 0 AND
	    (p_expires_in IS NULL OR p_expires_in > p_max_lifetime) THEN
		o_status := 'invalid_lifetime';
	ELSIF o_status IS NULL AND NOT tokend_user_active(p_user) THEN
		o_status := 'invalid_user';
	END IF;
	IF o_status IS NOT NULL THEN
		RETURN;
	END IF;
	INSERT INTO tokens (kind, hash, prefix, user_id, name, scope,
	    expires_at)
	VALUES ('pat', p_hash, p_prefix, p_user, p_name, p_scope,
	    now() + make_interval(secs => p_expires_in))
	RETURNING id, created_at, expires_at INTO o_id, o_created, o_expires;
	o_status := 'ok';
END;
$$;

-- Retention: tokens expired or revoked more than p_retention seconds ago,
-- and the usage watermarks of instances silent that long, go.  The writer
-- runs it every few minutes, tokenctl cleanup on demand.  o_tokens and
-- o_batches count the rows deleted.
CREATE FUNCTION tokend_cleanup(p_retention integer,
    OUT o_tokens bigint, OUT o_batches bigint)
LANGUAGE plpgsql AS $$
DECLARE
	cut timestamptz := now() - make_interval(secs => p_retention);
BEGIN
	DELETE FROM tokens WHERE expires_at < cut OR revoked_at < cut;
	GET DIAGNOSTICS o_tokens = ROW_COUNT;
	DELETE FROM usage_batches WHERE at < cut;
	GET DIAGNOSTICS o_batches = ROW_COUNT;
END;
$$;
