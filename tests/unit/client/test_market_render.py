"""`oee markets` and `oee market PAIR`: the API's market JSON as people read it."""

from __future__ import annotations

from typing import Any

from services.client.render import market_view, markets_table, sparkline
from tests.unit.client.test_client_render import text


def side(price: str, impact: str) -> dict[str, Any]:
    return {"price": price, "display": {"price": f"{price} USDC/SOL", "priceImpact": impact}}


MARKET: dict[str, Any] = {
    "pair": "SOL-USDC",
    "base": "SOL",
    "quote": "USDC",
    "reference": "150.0512345",
    "venues": [{"venue": "RAYDIUM", "mid": "150.012345678"}, {"venue": "METEORA", "mid": "150.1"}],
    "bestVenue": {"buy": "RAYDIUM", "sell": "METEORA"},
    "change24h": "0.0123456",
    "volume24h": {"base": "7", "quote": "1059.123456"},
    "ladder": [
        {
            "size": "1000",
            "sell": {
                "routed": side("149.5", "31.2 bps"),
                "venues": {"RAYDIUM": side("149.2", "52 bps"), "METEORA": {"error": "dry"}},
            },
            "buy": {"routed": side("150.7", "1.05 %"), "venues": {}},
        }
    ],
}


def test_sparkline_scales_between_lowest_and_highest() -> None:
    assert sparkline(["1", "2", "3", "4", "5", "6", "7", "8"]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5]) == "▄▄"
    assert sparkline([]) == ""


def test_markets_table_shows_mids_best_venue_change_and_volume() -> None:
    shown = text(markets_table({"markets": [MARKET]}))
    row = next(line for line in shown.splitlines() if "SOL-USDC" in line)
    assert "150.012" in row  # six significant digits
    assert "150.1" in row
    assert "buy Raydium · sell Meteora" in row
    assert "+1.23 %" in row
    assert "1,059.12 USDC" in row


def test_market_view_has_the_ladder_and_a_sparkline() -> None:
    candles = {"candles": [{"close": "150"}, {"close": "151"}, {"close": "149"}]}
    shown = text(market_view(MARKET, candles))
    assert "SOL-USDC  150.051 USDC/SOL  +1.23 % 24 h" in shown
    assert "1 m closes (3): ▅█▁" in shown
    sell = next(line for line in shown.splitlines() if "sell" in line and "1,000" in line)
    assert "149.2 · 52 bps" in sell
    assert "149.5 · 31.2 bps" in sell
    assert "—" in sell  # the venue that could not fill
    assert "150.7 · 1.05 %" in shown
