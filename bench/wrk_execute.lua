-- wrk script: POST a SOL -> USDC market order, as the original system's clients send it
-- (amounts as JSON numbers, which both APIs accept). The key comes from the environment
-- (OEE_BENCH_KEY, set by bench/accept.py); without it no Authorization header is sent, so
-- the same script measures the original system (`wrk ... http://127.0.0.1:3000`).
wrk.method = "POST"
wrk.path = "/api/orders/execute"
wrk.body = '{"tokenIn":"SOL","tokenOut":"USDC","amount":0.1,"slippage":0.05}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("OEE_BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

function done(summary, latency, requests)
  io.write(string.format("p50_ms %.2f\np90_ms %.2f\np99_ms %.2f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000))
end
