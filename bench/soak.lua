-- bench/soak.lua - wrk's side of the soak (bench/soak.py): GETs over the hot set /hot/0..N-1
-- and checks every body it receives against the origin's generator. A body is its first line
-- "corral-soak <target> <version> <length>\n" repeated and cut to <length> bytes, so a body
-- cut short, mixed with another object's or corrupted in any byte is caught here without a
-- table of checksums. done() prints one JSON line: requests, latency percentiles (us) and
-- the per-kind counts of the threads.
local hot = tonumber(os.getenv("SOAK_HOT") or "200")
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
   ok, bad_body, non200 = 0, 0, 0
end

function request()
   return wrk.format("GET", "/hot/" .. math.random(0, hot - 1))
end

local function body_ok(body)
   local first = body:match("^corral%-soak /hot/%d+ %d+ %d+\n")
   if not first then return false end
   local len = tonumber(first:match(" (%d+)\n$"))
   if #body ~= len then return false end
   local reps = math.floor(len / #first) + 1
   return string.rep(first, reps):sub(1, len) == body
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
   elseif body_ok(body) then
      ok = ok + 1
   else
      bad_body = bad_body + 1
   end
end

function done(summary, latency, requests)
   local t = { ok = 0, bad_body = 0, non200 = 0 }
   for _, th in ipairs(threads) do
      for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "ok": %d, "bad_body": %d, "non200": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, t.ok, t.bad_body, t.non200, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
