"""Interpreter of the webhook channel: one parser per source (the route that stored it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from daemon.config.rmm_sections import FieldTarget
from daemon.core.events import Interpretation, RawDelivery, Unprocessable
from daemon.webhooks import datto, syncro


def webhook_interpreter(datto_fields: Mapping[str, FieldTarget]
                        ) -> Callable[[RawDelivery], Interpretation]:
    by_source = {datto.SOURCE: datto.datto_interpreter(datto_fields),
                 syncro.SOURCE: syncro.interpret_syncro_delivery}

    def interpret(delivery: RawDelivery) -> Interpretation:
        interpreter = by_source.get(delivery.source or "")
        if interpreter is None:
            raise Unprocessable(f"no webhook interpreter for source {delivery.source!r}")
        return interpreter(delivery)
    return interpret
