-- Issue 14 (SPEC 13): client addresses, per-PAT allowlists, per-PAT rate
-- limits and canary PATs.
--
--   last_used_ip  the address of the newest use, written by the writer's
--                 batched usage statement (no statement of its own).
--   allowed_ips   a PAT answers only to clients inside one of these
--                 CIDRs (NULL: anywhere).  At most 16: the cache entry
--                 carries them and every hit scans them.
--   rate_limit, rate_window
--                 at most rate_limit uses per rate_window seconds, per
--                 tokend box (counted in its shared memory).
--   canary        a bait token: answered as unknown everywhere, every
--                 presentation logged (canary_token_used).
ALTER TABLE tokens
	ADD COLUMN last_used_ip inet,
	ADD COLUMN allowed_ips cidr[]
	    CHECK (cardinality(allowed_ips) BETWEEN 1 AND 16
	    AND array_position(allowed_ips, NULL) IS NULL),
	ADD COLUMN rate_limit integer
	    CHECK (rate_limit BETWEEN 1 AND 1000000),
	ADD COLUMN rate_window integer
	    CHECK (rate_window BETWEEN 1 AND 86400),
	ADD COLUMN canary boolean NOT NULL DEFAULT false,
	ADD CONSTRAINT tokens_rate_pair
	    CHECK ((rate_limit IS NULL) = (rate_window IS NULL));

-- The networks (/24 IPv4, /56 IPv6) each token was used from: the writer
-- inserts what its batch saw (ON CONFLICT DO NOTHING RETURNING), and a
-- row that comes back is a first use from that network, logged
-- token_new_network once whatever the number of boxes and restarts.
CREATE TABLE token_networks (
	token_id	bigint NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
	network		cidr NOT NULL,
	address		inet NOT NULL,
	first_seen	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (token_id, network)
);

-- The cache answers with the new columns too: a change must reach every
-- box's cache as a revocation does (the WHEN list of 001, extended).
DROP TRIGGER tokens_notify_update ON tokens;
CREATE TRIGGER tokens_notify_update AFTER UPDATE ON tokens
	FOR EACH ROW
	WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
	    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
	    OR OLD.scope IS DISTINCT FROM NEW.scope
	    OR OLD.user_id IS DISTINCT FROM NEW.user_id
	    OR OLD.client_id IS DISTINCT FROM NEW.client_id
	    OR OLD.kind IS DISTINCT FROM NEW.kind
	    OR OLD.hash IS DISTINCT FROM NEW.hash
	    OR OLD.allowed_ips IS DISTINCT FROM NEW.allowed_ips
	    OR OLD.rate_limit IS DISTINCT FROM NEW.rate_limit
	    OR OLD.rate_window IS DISTINCT FROM NEW.rate_window
	    OR OLD.canary IS DISTINCT FROM NEW.canary)
	EXECUTE FUNCTION tokend_tokens_notify();
ALTER TABLE tokens ENABLE ALWAYS TRIGGER tokens_notify_update;

-- A new PAT's limits, set in the transaction (or statement) that created
-- it: tokenctl pat create and POST /pats call it with tokend_pat_create's
-- o_id, NULL when that refused (nothing to do).  Returns o_id's status.
CREATE FUNCTION tokend_pat_limits(p_id bigint, p_allowed cidr[],
    p_rate integer, p_window integer, p_canary boolean)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF p_id IS NULL THEN
		RETURN false;
	END IF;
	IF p_allowed IS NOT NULL OR p_rate IS NOT NULL OR p_canary THEN
		UPDATE tokens SET allowed_ips = p_allowed,
		    rate_limit = p_rate, rate_window = p_window,
		    canary = coalesce(p_canary, false)
		WHERE id = p_id AND kind = 'pat';
	END IF;
	RETURN true;
END;
$$;
