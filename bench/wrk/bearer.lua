-- GET with "Authorization: Bearer $BENCH_TOKEN" (set by bench/run.py).
local token = os.getenv("BENCH_TOKEN")
if token == nil or token == "" then
  error("BENCH_TOKEN is not set")
end
wrk.headers["Authorization"] = "Bearer " .. token
