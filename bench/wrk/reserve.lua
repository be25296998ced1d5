-- POST a one-unit reservation (set up by bench/run.py).
--
-- BENCH_IDS_FILE: stock item ids, one a line; each request picks one at random
--   (one line = one hot item).
-- BENCH_PATH_TEMPLATE: the path with %s for the item id, e.g.
--   /api/v1/inventory/%s/reserve (the app) or /reserve/%s (the ceiling).
-- BENCH_KEY_PREFIX: makes the keys unique per run; each request adds thread and counter.
-- BENCH_TOKEN (optional): sent as "Authorization: Bearer".
-- BENCH_TTL (optional, default 86400): ttl_seconds, long so nothing expires mid-run.
local file = os.getenv("BENCH_IDS_FILE")
local template = os.getenv("BENCH_PATH_TEMPLATE")
local prefix = os.getenv("BENCH_KEY_PREFIX") or "bench"
local token = os.getenv("BENCH_TOKEN")
local ttl = tonumber(os.getenv("BENCH_TTL") or "86400")
if file == nil or template == nil then
  error("BENCH_IDS_FILE and BENCH_PATH_TEMPLATE must be set")
end
local ids = {}
for line in io.lines(file) do
  if line ~= "" then ids[#ids + 1] = line end
end
if #ids == 0 then error("no ids in " .. file) end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local thread_no = 0
math.randomseed(os.time())  -- the main state: seeds differ between wrk runs
function setup(thread)
  thread_no = thread_no + 1
  -- unique per wrk run (the warm-up and the recorded run are separate runs)
  thread:set("tid", string.format("%d-%d-%d", os.time(), math.random(1, 999999), thread_no))
  thread:set("seed", math.random(1, 2147483647))
end

local counter = 0
function init(args)
  math.randomseed(tonumber(seed) or os.time())
end

function request()
  counter = counter + 1
  local id = ids[math.random(#ids)]
  local body = string.format('{"quantity":1,"key":"%s-%s-%d","ttl_seconds":%d}',
    prefix, tid, counter, ttl)
  return wrk.format(nil, string.format(template, id), nil, body)
end
