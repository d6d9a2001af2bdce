-- bench/fleet.lua - wrk over a fleet (bench/fleet.py): thread i sends to the i-th port of
-- FLEET_PORTS ("8001,8002,..."; wrk -t is a multiple of their number), so each server gets the
-- same share of the connections; the requests cycle over FLEET_PATHS paths, FLEET_PATH with
-- "%d" replaced by 0..FLEET_PATHS-1 (one path when FLEET_PATHS is unset); Host: fleet.
local ports = {}
for p in string.gmatch(os.getenv("FLEET_PORTS") or "", "%d+") do
   ports[#ports + 1] = p
end
local started = 0

function setup(thread)
   local port = ports[started % #ports + 1]
   started = started + 1
   thread.addr = wrk.lookup("127.0.0.1", port)[1]
end

local requests, next_one = {}, 0

function init(args)
   wrk.headers["Host"] = "fleet" -- as bench/fleet.py asks, whichever instance: one cache key
   local path = os.getenv("FLEET_PATH") or "/"
   local n = tonumber(os.getenv("FLEET_PATHS") or "1")
   for i = 0, n - 1 do
      requests[#requests + 1] = wrk.format("GET", string.format(path, i))
   end
end

function request()
   next_one = next_one % #requests + 1
   return requests[next_one]
end
