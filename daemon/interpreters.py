"""Which interpreter reads which channel: shared by the daemon and the CLI (replay)."""

from __future__ import annotations

from daemon.config import Config
from daemon.core.events import Channel, interpret_api_delivery
from daemon.metrics import Metrics
from daemon.pipeline import Interpreter, Pipeline
from daemon.store.database import Database


def build_interpreters(config: Config) -> dict[str, Interpreter]:
    """One interpreter per channel; the email and webhook issues add theirs here."""
    return {Channel.API.value: interpret_api_delivery}


def build_pipeline(config: Config, db: Database, metrics: Metrics) -> Pipeline:
    return Pipeline(db, metrics, build_interpreters(config),
                    max_attempts=config.pipeline.max_attempts,
                    retry_base_s=config.pipeline.retry_base_s)
