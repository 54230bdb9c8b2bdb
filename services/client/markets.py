"""`oee markets` (every pair in a table) and `show_market` (one pair: its depth ladder and a
sparkline of recent 1 m closes), as clients of the public API; `--json` prints its JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.client.cli import ApiKey, ApiUrl, Json, _console, _print_json, api_errors
from services.client.http import DEFAULT_API_URL, ApiClient
from services.client.render import market_view, markets_table

SPARK_MINUTES = 60


@api_errors
def markets(
    api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None, as_json: Json = False
) -> None:
    """Every pair the engine trades: mid per venue, best venue, 24 h change and volume."""
    with ApiClient(api_url, api_key) as client:
        body = client.markets()
    if as_json:
        _print_json(body)
    else:
        _console().print(markets_table(body))


@api_errors
def show_market(
    pair: str,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """One pair ("SOL-USDC"): its summary, depth ladder and a sparkline of the last hour's
    1 m closes. What `oee market PAIR` runs."""
    since = datetime.now(UTC) - timedelta(minutes=SPARK_MINUTES)
    with ApiClient(api_url, api_key) as client:
        market = client.market(pair.upper())
        candles = client.candles(pair.upper(), interval="1m", **{"from": since.isoformat()})
    if as_json:
        _print_json({"market": market, "candles": candles})
    else:
        _console().print(market_view(market, candles))
