"""Known label values start at zero, so a fresh process's /metrics has no empty family."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from schemas.events import FailureCode
from services.common.metrics import STAGES, exposition


def test_every_labelled_family_has_samples_before_any_event() -> None:
    text, _ = exposition()
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    for name in (
        "oee_orders_finished",
        "oee_stage_latency_seconds",
        "oee_venue_quotes",
        "oee_venue_wins",
        "oee_retries",
        "oee_websocket_clients",
    ):
        assert families[name].samples, f"{name} has no series"
    retries = {s.labels["code"] for s in families["oee_retries"].samples}
    assert retries >= {code.value for code in FailureCode}
    stages = {s.labels["stage"] for s in families["oee_stage_latency_seconds"].samples}
    assert stages == set(STAGES)
    venues = {
        (s.labels["venue"], s.labels["outcome"]) for s in families["oee_venue_quotes"].samples
    }
    assert venues >= {("RAYDIUM", "ok"), ("METEORA", "error")}
