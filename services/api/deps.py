"""Dependency aliases: routes ask for what they use, the runtime on app.state provides it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.api.feed import LiveFeed
from services.api.publisher import OrderPublisher
from services.api.quotes import Quoter
from services.api.read_model import ReadModel
from services.api.runtime import ApiRuntime
from services.common.settings import Settings


def _runtime(connection: HTTPConnection) -> ApiRuntime:
    runtime: ApiRuntime = connection.app.state.runtime
    return runtime


def _settings(runtime: Runtime) -> Settings:
    return runtime.settings


def _publisher(runtime: Runtime) -> OrderPublisher:
    return runtime.publisher


def _read_model(runtime: Runtime) -> ReadModel:
    return runtime.read_model


def _feed(runtime: Runtime) -> LiveFeed:
    return runtime.feed


def _quoter(runtime: Runtime) -> Quoter:
    return runtime.quoter


Runtime = Annotated[ApiRuntime, Depends(_runtime)]
SettingsDep = Annotated[Settings, Depends(_settings)]
PublisherDep = Annotated[OrderPublisher, Depends(_publisher)]
ReadModelDep = Annotated[ReadModel, Depends(_read_model)]
FeedDep = Annotated[LiveFeed, Depends(_feed)]
QuoterDep = Annotated[Quoter, Depends(_quoter)]
