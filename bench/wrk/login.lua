-- POST /api/v1/auth/login (set up by bench/run.py).
--
-- With BENCH_LOGIN_USERS = N > 0 the requests rotate over N seeded customers
-- (customer000000@bench.example.com ..., all with BENCH_PASSWORD), as real logins do;
-- with 0 every request logs in BENCH_EMAIL (one hot account row: a lock-contention test).
local email = os.getenv("BENCH_EMAIL")
local password = os.getenv("BENCH_PASSWORD")
local users = tonumber(os.getenv("BENCH_LOGIN_USERS") or "0") or 0
if email == nil or password == nil then
  error("BENCH_EMAIL and BENCH_PASSWORD must be set")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local counter = 0

function setup(thread)
  thread:set("offset", math.random(0, 1000000))
end

function init(args)
  offset = tonumber(offset) or 0  -- a global, set per thread by setup()
end

function request()
  local who = email
  if users > 0 then
    counter = counter + 1
    who = string.format("customer%06d@bench.example.com", (offset + counter) % users)
  end
  return wrk.format(nil, nil, nil, string.format('{"email":"%s","password":"%s"}', who, password))
end
