-- POST a checkout (set up by bench/run.py): the app's POST /api/v1/orders body, or the
-- same body to the ceiling's /checkout.
--
-- BENCH_IDS_FILE: variant ids, one a line; each request buys 1 unit each of 1 to
--   BENCH_MAX_LINES (default 3) distinct variants picked at random (one line = one hot
--   variant, every request buys it).
-- BENCH_TOKENS_FILE: customers' access tokens, one a line, sent in turn as
--   "Authorization: Bearer" (each thread starts at a random one).
local function read_lines(file)
  local out = {}
  for line in io.lines(file) do
    if line ~= "" then out[#out + 1] = line end
  end
  if #out == 0 then error("no lines in " .. file) end
  return out
end

local ids_file = os.getenv("BENCH_IDS_FILE")
local tokens_file = os.getenv("BENCH_TOKENS_FILE")
if ids_file == nil or tokens_file == nil then
  error("BENCH_IDS_FILE and BENCH_TOKENS_FILE must be set")
end
local ids = read_lines(ids_file)
local max_lines = math.min(tonumber(os.getenv("BENCH_MAX_LINES") or "3") or 3, #ids)
local headers = {}
for i, token in ipairs(read_lines(tokens_file)) do
  headers[i] = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
end

local prefix = '{"shipping_address":{"first_name":"Ada","last_name":"L","line1":"1 Main St",'
  .. '"city":"Austin","region":"TX","postal_code":"73301","country":"US"},"items":['
local suffix = '],"payment":{"method":"card","token":"tok_4242"}}'

wrk.method = "POST"

math.randomseed(os.time())  -- the main state: seeds differ between wrk runs
function setup(thread)
  thread:set("seed", math.random(1, 2147483647))
end

local counter = 0
function init(args)
  math.randomseed(tonumber(seed) or os.time())
  counter = math.random(#headers)
end

function request()
  counter = counter + 1
  local wanted = math.random(max_lines)
  local picked, items = {}, {}
  while #items < wanted do
    local id = ids[math.random(#ids)]
    if not picked[id] then
      picked[id] = true
      items[#items + 1] = string.format('{"variant_id":"%s","quantity":1}', id)
    end
  end
  local body = prefix .. table.concat(items, ",") .. suffix
  return wrk.format(nil, nil, headers[counter % #headers + 1], body)
end
