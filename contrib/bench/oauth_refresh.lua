-- wrk script for refresh-token rotation (oauth_bench.py).
--
-- Each refresh token works once, so requests cannot repeat.  The thread
-- keeps a pool of unused refresh tokens, seeded from BENCH_TOKENS (one per
-- line, issued by password grants: at least as many as connections).
-- request() takes one from the pool; response() parses the new
-- refresh_token out of the 200 body and puts it back.  wrk calls response()
-- for a connection before that connection's next request(), so with C
-- connections and C or more seed tokens the pool never runs dry while
-- every answer is a 200: C rotation chains, the way real clients rotate.
-- A replayed token (inside refresh_grace) would be answered from the
-- stored pair, not measured here: no token is ever sent twice.
--
-- Environment:
--   BENCH_TOKENS  file of refresh tokens (required)
--   BENCH_AUTHZ   "Basic ..." header of the confidential client
--   BENCH_THREADS wrk threads (each takes its own share of the file)
--
-- done() prints one JSON line, prefixed "BENCH_JSON ", with ok (200s
-- whose body had a new refresh token), bad (everything else) and dry
-- (requests sent with no token left: each one is a bad answer too).

local authz = os.getenv("BENCH_AUTHZ")
local pool, top = {}, 0
-- Globals, not locals: done() reads them from each thread with get().
ok, bad, dry = 0, 0, 0
local threads = {}

function setup(thread)
	thread:set("id", #threads)
	table.insert(threads, thread)
end

function init(args)
	local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
	local i = 0
	for line in io.lines(os.getenv("BENCH_TOKENS")) do
		if line ~= "" then
			if i % nthreads == (id or 0) then
				top = top + 1
				pool[top] = line
			end
			i = i + 1
		end
	end
end

function request()
	local t
	if top > 0 then
		t = pool[top]
		pool[top] = nil
		top = top - 1
	else
		dry = dry + 1
		t = "none"
	end
	return wrk.format("POST", "/token", {
	    ["Authorization"] = authz,
	    ["Content-Type"] = "application/x-www-form-urlencoded" },
	    "grant_type=refresh_token&refresh_token=" .. t)
end

function response(status, headers, body)
	local t
	if status == 200 then
		t = string.match(body, '"refresh_token"%s*:%s*"(tkr_[0-9A-Za-z]+)"')
	end
	if t then
		ok = ok + 1
		top = top + 1
		pool[top] = t
	else
		bad = bad + 1
	end
end

function done(summary, latency, requests)
	local tok, tbad, tdry = 0, 0, 0
	for _, th in ipairs(threads) do
		tok = tok + th:get("ok")
		tbad = tbad + th:get("bad")
		tdry = tdry + th:get("dry")
	end
	local e = summary.errors
	io.write(string.format(
	    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
	    '"ok":%d,"bad":%d,"dry":%d,' ..
	    '"err_connect":%d,"err_read":%d,"err_write":%d,' ..
	    '"err_status":%d,"err_timeout":%d,' ..
	    '"lat_mean_us":%.1f,"lat_max_us":%d,' ..
	    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
	    summary.requests, summary.duration, summary.bytes,
	    tok, tbad, tdry,
	    e.connect, e.read, e.write, e.status, e.timeout,
	    latency.mean, latency.max,
	    latency:percentile(50), latency:percentile(90),
	    latency:percentile(99), latency:percentile(99.9)))
end
