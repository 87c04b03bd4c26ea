"""Interpreter of the webhook channel: one parser per source (the route that stored it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from daemon.config.rmm_sections import FieldTarget
from daemon.core.events import Interpretation, RawDelivery, Unprocessable, with_ticket_type
from daemon.webhooks import datto, syncro


def webhook_interpreter(datto_fields: Mapping[str, FieldTarget], datto_type: str = "",
                        syncro_type: str = "") -> Callable[[RawDelivery], Interpretation]:
    """`*_type`: each source's `ticket_type` for the tickets its webhooks open ("": alert)."""
    by_source = {datto.SOURCE: (datto.datto_interpreter(datto_fields), datto_type),
                 syncro.SOURCE: (syncro.interpret_syncro_delivery, syncro_type)}

    def interpret(delivery: RawDelivery) -> Interpretation:
        found = by_source.get(delivery.source or "")
        if found is None:
            raise Unprocessable(f"no webhook interpreter for source {delivery.source!r}")
        interpreter, ticket_type = found
        meaning = interpreter(delivery)
        if not ticket_type:
            return meaning
        return replace(meaning, events=tuple(with_ticket_type(event, ticket_type)
                                             for event in meaning.events))
    return interpret
