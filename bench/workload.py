"""What the load generator sends: the open-loop schedule and a seeded mix of orders."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

# (tokenIn, tokenOut, dollar price of one tokenIn): direct pools and two-hop pairs. JUP, RAY and
# BONK are bought as often as sold: sold only, their DLMM pairs were walked past their seeded
# bins within a run (DLMM 6036, INSUFFICIENT_LIQUIDITY) and the bench measured an empty pool.
PAIRS = (
    ("SOL", "USDC", 150.0),
    ("USDC", "SOL", 1.0),
    ("SOL", "USDT", 150.0),
    ("USDT", "USDC", 1.0),
    ("JUP", "USDC", 0.9),
    ("USDC", "JUP", 1.0),
    ("RAY", "USDC", 2.5),
    ("USDC", "RAY", 1.0),
    ("BONK", "USDC", 0.00002),
    ("USDC", "BONK", 1.0),
    ("JUP", "SOL", 0.9),  # two hops through USDC
    ("BONK", "SOL", 0.00002),
)
PAIR_WEIGHTS = (30, 10, 10, 10, 5, 5, 5, 5, 5, 5, 5, 5)
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
