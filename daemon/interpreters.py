"""Which interpreter reads which channel: shared by the daemon and the CLI (replay)."""

from __future__ import annotations

from daemon.config import Config
from daemon.core.events import Channel, interpret_api_delivery
from daemon.mail.interpret import RulesHolder, email_interpreter
from daemon.metrics import Metrics
from daemon.pipeline import Interpreter, Pipeline
from daemon.rules.load import load_rules
from daemon.store.database import Database
from daemon.sync.placement import TicketPlacer
from daemon.webhooks.interpret import webhook_interpreter


def build_interpreters(config: Config, rules: RulesHolder) -> dict[str, Interpreter]:
    """One interpreter per channel."""
    email = email_interpreter(rules)
    return {Channel.API.value: interpret_api_delivery, Channel.SMTP.value: email,
            Channel.IMAP.value: email, Channel.POLL.value: interpret_api_delivery,
            Channel.WEBHOOK.value: webhook_interpreter(config.datto.webhook_fields)}


def build_pipeline(config: Config, db: Database, metrics: Metrics,
                   rules: RulesHolder | None = None) -> Pipeline:
    """The pipeline with the configured rules (loaded now unless `rules` is given).

    Raises `RulesError` when the rules file is invalid.
    """
    holder = rules or RulesHolder(load_rules(config.rules.path))
    return Pipeline(db, metrics, build_interpreters(config, holder),
                    max_attempts=config.pipeline.max_attempts,
                    retry_base_s=config.pipeline.retry_base_s,
                    placer=TicketPlacer(config.sync.fallback_end_user))
