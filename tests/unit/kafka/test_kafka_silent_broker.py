"""A broker that stopped answering (SIGSTOPped, hung) is not asked for the metadata that is
meant to route writes around it, unless no other broker is known."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import RequestTimedOutError

from services.common import kafka
from services.common.kafka import _refresh_metadata_after_timeouts


@dataclass(frozen=True)
class Broker:
    nodeId: int  # aiokafka's name


@dataclass
class Cluster:
    ids: list[int]

    def brokers(self) -> set[Broker]:
        return {Broker(n) for n in self.ids}


@dataclass
class FakeClient:
    """The parts of AIOKafkaClient the producer's wrapper replaces, behaving as aiokafka's:
    a metadata update walks the brokers (in a fixed order here: the silent one first, the
    worst case of aiokafka's shuffle) and asks the first whose connection it gets."""

    cluster: Cluster
    silent: set[int] = field(default_factory=set)
    asked: list[int] = field(default_factory=list)
    refreshes: int = 0

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> str:
        if node_id in self.silent:
            raise RequestTimedOutError()
        return "answer"

    def force_metadata_update(self) -> None:
        self.refreshes += 1

    async def _get_conn(self, node_id: int, **kwargs: Any) -> int:
        return node_id

    async def _metadata_update(self, cluster_metadata: Any, topics: Any) -> bool:
        for node_id in sorted(self.cluster.ids, key=lambda n: n not in self.silent):
            if await self._get_conn(node_id) is None:
                continue
            self.asked.append(node_id)
            return node_id not in self.silent
        return False


def wrapped(client: FakeClient) -> Any:
    _refresh_metadata_after_timeouts(client)
    return client


async def test_after_a_timeout_metadata_comes_from_another_broker() -> None:
    client = wrapped(FakeClient(Cluster([1, 2, 3]), silent={1}))
    assert await client._metadata_update(client.cluster, None) is False  # 1 asked: it hangs
    assert client.asked == [1]
    with pytest.raises(RequestTimedOutError):
        await client.send(1, "produce")
    assert client.refreshes == 1
    assert await client._metadata_update(client.cluster, None) is True
    assert client.asked == [1, 2]
    assert await client.send(2, "produce") == "answer"  # other nodes' connections untouched


async def test_a_silent_broker_is_asked_again_later_or_when_it_is_the_only_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alone = wrapped(FakeClient(Cluster([1]), silent={1}))
    with pytest.raises(RequestTimedOutError):
        await alone.send(1, "produce")
    await alone._metadata_update(alone.cluster, None)
    assert alone.asked == [1]  # never starve the client of metadata

    client = wrapped(FakeClient(Cluster([1, 2]), silent={1}))
    with pytest.raises(RequestTimedOutError):
        await client.send(1, "produce")
    monkeypatch.setattr(kafka, "SILENT_BROKER_SECONDS", 0.0)
    await client._metadata_update(client.cluster, None)
    assert client.asked == [1]  # its silence is old news: it may be back
