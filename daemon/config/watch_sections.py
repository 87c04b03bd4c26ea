"""`[watch]`: the intake channels that must not fall silent, each with the longest silence it
may have (issue 18, item 4; `daemon.tickets.silence`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from daemon.core.durations import parse_duration

# The channels alertd can tell the last input of; `imap:<account>` for each IMAP account.
# (Polling is not among them: a healthy poll stores nothing while webhooks bring every alert.)
WATCHABLE = ("smtp", "api", "webhook:datto", "webhook:syncro")
MIN_SILENCE_S = 300  # the check runs every minute; less would flap on a quiet hour


def _silence(text: str) -> int:
    seconds = parse_duration(text)
    if seconds < MIN_SILENCE_S:
        raise ValueError(f"{text!r} is shorter than 5m (the check runs every minute)")
    return seconds


SilenceS = Annotated[int, BeforeValidator(_silence)]


def check_channels(watch: dict[str, int], imap_accounts: list[str],
                   webhooks: dict[str, bool]) -> None:
    """Every watched channel is one alertd has and runs (raises ValueError naming the first
    that is not). `webhooks`: per source, whether its webhook secret is set (else it is off,
    and certain to be silent)."""
    known = [*WATCHABLE, *(f"imap:{name}" for name in imap_accounts)]
    for channel in watch:
        if channel not in known:
            raise ValueError(f"[watch] {channel!r} is no channel alertd has: one of "
                             f"{', '.join(known)}")
        kind, _, source = channel.partition(":")
        if kind == "webhook" and not webhooks.get(source):
            raise ValueError(f"[watch] {channel!r}: that webhook is off (no [{source}] "
                             f"{'webhook_secret' if source == 'datto' else 'webhook_token'})")
