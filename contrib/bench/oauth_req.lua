-- wrk script for the OAuth benchmarks (oauth_bench.py): one fixed request,
-- repeated.  The request is built once per thread, so /auth and
-- /introspect runs pay the same client-side cost.
--
-- Environment (set by the driver):
--   BENCH_METHOD  GET (default) or POST
--   BENCH_PATH    request path (default /auth)
--   BENCH_AUTHZ   the whole Authorization header value ("Bearer tka_...",
--                 "Basic ...")
--   BENCH_BODY    form body for POST (application/x-www-form-urlencoded)
--   BENCH_PACE_MS when set, each connection waits this many milliseconds
--                 between an answer and its next request (an offered load
--                 below saturation: connections / (pace + latency) req/s)
--
-- done() prints one JSON line, prefixed "BENCH_JSON ", for the driver.

local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/auth"
local authz = os.getenv("BENCH_AUTHZ")
local body = os.getenv("BENCH_BODY")
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "")
local req

if pace then
	function delay()
		return pace
	end
end

function init(args)
	local h = {}
	if authz and authz ~= "" then h["Authorization"] = authz end
	if method == "POST" then
		h["Content-Type"] = "application/x-www-form-urlencoded"
	end
	req = wrk.format(method, path, h, method == "POST" and body or nil)
end

function request()
	return req
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
	    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
	    '"err_connect":%d,"err_read":%d,"err_write":%d,' ..
	    '"err_status":%d,"err_timeout":%d,' ..
	    '"lat_mean_us":%.1f,"lat_max_us":%d,' ..
	    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
	    summary.requests, summary.duration, summary.bytes,
	    e.connect, e.read, e.write, e.status, e.timeout,
	    latency.mean, latency.max,
	    latency:percentile(50), latency:percentile(90),
	    latency:percentile(99), latency:percentile(99.9)))
end
