"""`[watch]`: the intake channels that must not fall silent, each with the longest silence it
may have (issue 18, item 4; `daemon.tickets.silence`). A silence is a `SilenceS`
(daemon.config.base: a duration of at least 5m)."""

from __future__ import annotations

from collections.abc import Mapping

# The channels alertd can tell the last input of; `imap:<account>` for each IMAP account.
# (Polling is not among them: a healthy poll stores nothing while webhooks bring every alert.)
WATCHABLE = ("smtp", "api", "webhook:datto", "webhook:syncro")


def check_channels(watch: Mapping[str, int], imap_accounts: list[str],
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
