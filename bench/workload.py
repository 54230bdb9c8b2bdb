"""What the load generator sends: the open-loop schedule and a seeded mix of orders."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

# Dollar prices of the seeded tokens, to size orders in dollars.
PRICES = {"SOL": 150.0, "USDC": 1.0, "USDT": 1.0, "JUP": 0.9, "RAY": 2.5, "BONK": 0.00002}
# (token, token, weight): each pair is traded both ways at the same weight and the same dollar
# sizes, so no pool is drained over a run. One-sided (SOL sold twice as often as bought), the
# bench's DLMM pairs were walked past their seeded bins within 30 s at 300 orders/s (6036,
# INSUFFICIENT_LIQUIDITY) and `--find-max` measured the pools running dry, not the engine:
# no market process runs in this bench to bring prices back. JUP/SOL and BONK/SOL take two hops.
TRADED = (
    ("SOL", "USDC", 20),
    ("SOL", "USDT", 8),
    ("USDT", "USDC", 8),
    ("JUP", "USDC", 5),
    ("RAY", "USDC", 5),
    ("BONK", "USDC", 5),
    ("JUP", "SOL", 3),
    ("BONK", "SOL", 3),
)
# (tokenIn, tokenOut, dollar price of one tokenIn), and how often each is drawn.
PAIRS = tuple(
    (token_in, token_out, PRICES[token_in])
    for a, b, _ in TRADED
    for token_in, token_out in ((a, b), (b, a))
)
PAIR_WEIGHTS = tuple(weight for _, _, weight in TRADED for _ in range(2))
DECIMALS = {"SOL": 9, "USDC": 6, "USDT": 6, "JUP": 6, "RAY": 6, "BONK": 5}


@dataclass(frozen=True)
class LoadConfig:
    """One open-loop run: the schedule and what the clients do."""

    rate: float
    duration: float
    ramp: float = 0.0
    ws_share: float = 0.1
    min_usd: float = 10.0
    max_usd: float = 10_000.0
    slippage: str = "0.05"
    seed: int = 7
    connections: int = 200
    http_timeout: float = 10.0
    drain_timeout: float = 60.0
    max_in_flight: int = 20_000
    position_interval: float = 0.025

    @property
    def total(self) -> int:
        return round(self.rate * self.ramp / 2) + round(self.rate * self.duration)


def schedule(config: LoadConfig) -> list[float]:
    """Due times (seconds from the start) of every order: a linear ramp to `rate`, then flat."""
    times: list[float] = []
    in_ramp = round(config.rate * config.ramp / 2)
    for k in range(in_ramp):  # N(t) = rate t^2 / (2 ramp)  =>  t = sqrt(2 ramp k / rate)
        times.append(math.sqrt(2 * config.ramp * k / config.rate))
    flat = round(config.rate * config.duration)
    times.extend(config.ramp + k / config.rate for k in range(flat))
    return times


def order_payloads(config: LoadConfig) -> Iterator[tuple[bytes, str]]:
    """A seeded mix of pairs and log-uniform dollar sizes, as request bodies (and the pair)."""
    rng = random.Random(f"{config.seed}:orders")
    while True:
        token_in, token_out, price = rng.choices(PAIRS, weights=PAIR_WEIGHTS)[0]
        usd = math.exp(rng.uniform(math.log(config.min_usd), math.log(config.max_usd)))
        places = min(DECIMALS[token_in], 6)
        amount = f"{usd / price:.{places}f}"
        body = {
            "tokenIn": token_in,
            "tokenOut": token_out,
            "amount": amount,
            "slippage": config.slippage,
        }
        yield orjson.dumps(body), f"{token_in}/{token_out}"
