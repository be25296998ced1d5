-- POST /api/v1/auth/login with the bench account's credentials (set by bench/run.py).
local email = os.getenv("BENCH_EMAIL")
local password = os.getenv("BENCH_PASSWORD")
if email == nil or password == nil then
  error("BENCH_EMAIL and BENCH_PASSWORD must be set")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"%s","password":"%s"}', email, password)
