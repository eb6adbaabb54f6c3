-- 020: what the features of this round owe each other.
--
-- A rotated PAT (tokend_pat_rotate, 014: a PAT inserted with a PAT as its
-- parent) keeps its predecessor's allowlist, rate limit and canary flag
-- (017): rotating a confined token must not free it, and rotating a canary
-- must not disarm it.
--
-- tokend_cleanup (015's) also sweeps the sign-in tables (011, 012): browser
-- sessions and consent tickets once expired, device authorizations once
-- expired longer ago than retention.

CREATE FUNCTION tokend_pat_inherit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	p record;
BEGIN
	SELECT allowed_ips, rate_limit, rate_window, canary INTO p
	    FROM tokens WHERE id = NEW.parent AND kind = 'pat';
	IF FOUND THEN
		NEW.allowed_ips := p.allowed_ips;
		NEW.rate_limit := p.rate_limit;
		NEW.rate_window := p.rate_window;
		NEW.canary := p.canary;
	END IF;
	RETURN NEW;
END;
$$;

CREATE TRIGGER tokens_pat_inherit BEFORE INSERT ON tokens
	FOR EACH ROW WHEN (NEW.kind = 'pat' AND NEW.parent IS NOT NULL)
	EXECUTE FUNCTION tokend_pat_inherit();

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
	DELETE FROM web_tickets WHERE expires_at < now();
	DELETE FROM web_sessions WHERE expires_at < now();
	DELETE FROM device_codes WHERE expires_at < cut;
END;
$$;
