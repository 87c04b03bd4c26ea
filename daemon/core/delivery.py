"""What the outbox worker needs to know of a failed send, whoever it was for (an RMM's
resolve, a notification): whether trying again later can succeed."""

from __future__ import annotations


class DeliveryError(Exception):
    """A send failed. `retryable`: trying again later can succeed without anyone changing
    anything; otherwise the row is dead until an admin retries it. The message never holds
    a credential."""

    retryable = True
