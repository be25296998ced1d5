-- GET, each request a random line of $BENCH_PATHS_FILE (one path per line, set by
-- bench/run.py): e.g. product detail rotating over many slugs, so a cache in front
-- sees realistic misses instead of one hot key.
local file = os.getenv("BENCH_PATHS_FILE")
if file == nil or file == "" then
  error("BENCH_PATHS_FILE is not set")
end
local paths = {}
for line in io.lines(file) do
  if line ~= "" then paths[#paths + 1] = line end
end
if #paths == 0 then error("no paths in " .. file) end

math.randomseed(os.time())  -- the main state: seeds differ between wrk runs
function setup(thread)
  thread:set("seed", math.random(1, 2147483647))
end

function init(args)
  math.randomseed(tonumber(seed) or os.time())
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
