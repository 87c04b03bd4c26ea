"""What can go wrong talking to an RMM API, as the callers (outbox, polling, connection test)
need to tell it apart: retry later, stop for a while, or fix the configuration."""

from __future__ import annotations

from daemon.core.delivery import DeliveryError


class RmmError(DeliveryError):
    """Base class. `retryable`: trying again later can succeed without anyone changing
    anything. The message never contains credentials."""

    retryable = True

    def __init__(self, source: str, message: str):
        super().__init__(f"{source}: {message}")
        self.source = source


class Unreachable(RmmError):
    """DNS, connection or TLS failure, or a timeout: the host did not answer."""


class ServerError(RmmError):
    """5xx, 409 (concurrent write) or an unreadable answer, after the client's own retries."""


class RateLimited(RmmError):
    """429 or "Retry later" persisted after the client's own waits."""


class Blocked(RmmError):
    """Datto's temporary block (403 after throttling): every call stops until `until_s`."""

    def __init__(self, source: str, message: str, until_s: float):
        super().__init__(source, message)
        self.until_s = until_s


class AuthFailed(RmmError):
    """The credentials were refused (after one fresh token): fix the configuration."""

    retryable = False


class PermissionDenied(RmmError):
    """The credentials work, but not for this resource: grant the named permission."""

    retryable = False

    def __init__(self, source: str, message: str, resource: str):
        super().__init__(source, message)
        self.resource = resource


class NotFound(RmmError):
    """404: the named object does not exist (for a resolve: already gone)."""

    retryable = False


class Rejected(RmmError):
    """Any other 4xx: the RMM refuses this request as it is; sending it again cannot help."""

    retryable = False


class WrongEndpoint(RmmError):
    """The host answers, but not as this RMM's API (wrong platform or subdomain)."""

    retryable = False
