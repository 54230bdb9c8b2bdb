"""Every setting of every process, in one typed place.

Each has a default that works on a laptop. `KAFKA_BOOTSTRAP_SERVERS` and
`DATABASE_URL` keep their conventional names (no prefix) and, when set, win
over the project's own launchers; everything else is `OEE_*`.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Configuration read from the environment (and an optional `.env`)."""

    model_config = SettingsConfigDict(env_prefix="OEE_", env_file=".env", extra="ignore")

    # Where the dependencies are. Unset means: start our own (see infra/).
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "OEE_KAFKA_BOOTSTRAP_SERVERS"),
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "OEE_DATABASE_URL")
    )
    data_dir: Path = PROJECT_ROOT / ".oee"
    kafka_port: int = 9092
    # KRaft nodes `oee up` starts (ports kafka_port, kafka_port+1, ...); 3 to survive a lost one.
    kafka_nodes: int = Field(default=1, ge=1)
    postgres_port: int = 54320

    # The log.
    orders_topic: str = "orders.events"
    orders_topic_partitions: int = 12
    dead_letter_topic: str = "orders.deadletter"
    # Consumer groups are "<prefix>-router" and "<prefix>-projector"; tests use their own.
    consumer_group_prefix: str = "oee"

    # The API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # API worker processes sharing the port (SO_REUSEPORT, the kernel spreads connections);
    # each is a whole API (its own producer, live feed, read pool and per-key limits).
    api_workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = 16 * 1024
    default_slippage: Decimal = Decimal("0.01")
    max_order_amount: Decimal = Decimal("1000000000")
    ws_queue_size: int = 1000
    # Connections of the API's read pool (GETs, key lookups, sockets' history).
    read_pool_size: int = Field(default=10, ge=1)
    produce_timeout_seconds: float = 5.0

    # The router.
    router_max_in_flight: int = 1000
    retry_delays_seconds: tuple[float, ...] = (2.0, 4.0, 8.0)
    quote_ttl_seconds: float = 2.0
    split_threshold_bps: Decimal = Decimal("1")
    # Seeds the router's injected quote latencies and faults (services/chain/faults.py).
    market_seed: int = 42
    # "realistic": a seeded 50-200 ms quote latency per venue (confirmation takes real slots).
    venue_latency: Literal["realistic", "zero"] = "realistic"
    # Share of attempts given an injected fault: a send refused before it reaches the chain,
    # or a confirmation lost after landing (services/chain/faults.py).
    venue_failure_rate: Decimal = Decimal("0.02")

    # Conditional orders (issue 17) and their trigger engine (`oee triggers`).
    default_order_expiry_seconds: int = Field(default=7 * 86400, gt=0)  # 7 days
    max_order_expiry_seconds: int = Field(default=90 * 86400, gt=0)  # 90 days
    triggers_metrics_port: int = 9103

    # The chain node (`oee chain`): a Solana VM speaking JSON-RPC (services/chain/node.py).
    slot_ms: int = Field(default=400, gt=0)  # OEE_SLOT_MS: one block per slot
    chain_host: str = "127.0.0.1"
    chain_port: int = 8899  # a Solana validator's RPC port
    chain_seed: int = 42  # genesis: the seeded market's CPMM pools and funded wallets
    chain_wallets: int = 8

    # The Solana JSON-RPC the router executes on and the API quotes from: `oee chain` locally
    # (the default), or devnet/mainnet, signing with the wallet.
    solana_rpc_url: str = "http://127.0.0.1:8899"
    # A keypair file as `solana-keygen` writes it; unset: genesis wallet 0 of OEE_CHAIN_SEED
    # (funded on the local chain only).
    wallet_keypair: Path | None = None
    # Simulate each transaction instead of sending it; the order fails with DRY_RUN.
    chain_dry_run: bool = False

    # The market process (`oee market`, services/market/): moves the chain's pools every slot and
    # publishes ticks and trades. OEE_MARKET_SEED seeds its walk; volatility is annualised
    # (1.0 = 100 % a year, ~1.1 bps a 400 ms slot); 0 freezes prices.
    market_volatility: float = Field(default=1.0, ge=0)
    market_ticks_topic: str = "market.ticks"
    market_trades_topic: str = "market.trades"
    market_commands_topic: str = "market.commands"
    market_topic_partitions: int = Field(default=6, gt=0)
    market_maker_wallet: int = Field(default=1, ge=0)  # genesis wallet the background signs with
    # The engine's wallet, whose swaps are trades with source "engine": a public key; unset, the
    # key of OEE_WALLET_KEYPAIR, else genesis wallet 0 of OEE_CHAIN_SEED.
    market_engine_pubkey: str | None = None
    market_max_move_bps: Decimal = Field(default=Decimal(25), gt=0)  # per slot and pool

    # Token launches (`oee market launch`, POST /api/markets/launches): the chain's own events
    # (PoolCreated, PoolOpened, TokenAuthorities) and the genesis wallet that launches.
    chain_events_topic: str = "chain.events"
    launcher_wallet: int = Field(default=2, ge=0)

    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    # Prometheus /metrics of the processes without an HTTP server; 0 picks a free port.
    metrics_host: str = "127.0.0.1"
    router_metrics_port: int = 9101
    projector_metrics_port: int = 9102

    # Authentication and limits of the API (services/api/auth/). "disabled" is for local
    # experiments only: the API then warns at start and listens on loopback alone.
    auth: Literal["enabled", "disabled"] = "enabled"
    # How long a looked-up API key is trusted before PostgreSQL is asked again (so a
    # revocation takes effect within this time); a known key is still honoured while
    # PostgreSQL is down.
    auth_cache_seconds: float = 5.0
    # Signed JWTs are accepted only when a key is configured; issuer and audience are required.
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_key: SecretStr | None = None  # the HS256 secret, or the RS256 public key in PEM
    jwt_key_file: Path | None = None  # or read it from this file
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Per key and per API process (limits are in memory, not shared between processes).
    rate_limit_orders_per_second: float = 20.0
    rate_limit_burst: int = 40
    ws_max_connections_per_key: int = 20
    # Browser origins allowed to call the API (JSON list); none by default.
    cors_origins: tuple[str, ...] = ()

    @property
    def router_group(self) -> str:
        return f"{self.consumer_group_prefix}-router"

    @property
    def projector_group(self) -> str:
        return f"{self.consumer_group_prefix}-projector"

    @property
    def market_projector_group(self) -> str:
        return f"{self.consumer_group_prefix}-market-projector"

    @property
    def kafka_servers(self) -> str:
        """KAFKA_BOOTSTRAP_SERVERS, or the broker `oee up` starts on OEE_KAFKA_PORT."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def postgres_url(self) -> str:
        """DATABASE_URL, or the server `oee up` starts on OEE_POSTGRES_PORT."""
        return self.database_url or f"postgresql://postgres@127.0.0.1:{self.postgres_port}/postgres"

    def with_local_servers(self) -> Settings:
        """Name both dependencies: the configured ones, else the ports `oee up` uses, so a
        single process started in a second terminal just works."""
        return self.model_copy(
            update={
                "kafka_bootstrap_servers": self.kafka_servers,
                "database_url": self.postgres_url,
            }
        )

    @property
    def local_chain(self) -> bool:
        """Whether the RPC URL names the node `oee chain` runs here (else a cluster, not ours)."""
        local = (
            f"http://{self.chain_host}:{self.chain_port}",
            f"http://localhost:{self.chain_port}",
        )
        return self.solana_rpc_url.rstrip("/") in local

    @property
    def kafka_data_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def kafka_cluster_data_dir(self) -> Path:
        """A cluster's nodes keep their own dirs: never mixed with the single node's data."""
        return self.data_dir / f"kafka-{self.kafka_nodes}-nodes"

    @property
    def postgres_data_dir(self) -> Path:
        return self.data_dir / "postgres"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per process."""
    return Settings()
