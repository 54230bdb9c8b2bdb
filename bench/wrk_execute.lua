-- wrk script for bench/accept.py: POST a SOL -> USDC market order with an API key.
-- The key comes from the environment (OEE_BENCH_KEY), set by bench/accept.py.
wrk.method = "POST"
wrk.path = "/api/orders/execute"
wrk.body = '{"tokenIn":"SOL","tokenOut":"USDC","amount":"0.1","slippage":"0.05"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("OEE_BENCH_KEY")

function done(summary, latency, requests)
  io.write(string.format("p50_ms %.2f\np90_ms %.2f\np99_ms %.2f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000))
end
