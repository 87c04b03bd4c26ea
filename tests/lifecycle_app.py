"""The app the lifecycle tests (conditions, maintenance) drive: the webhook samples'
configuration, a `[lifecycle]` section of the test's choosing, and mail rules that extract a
device and a condition (fixtures `make_app` and `app` in tests/component/conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.api_client import Api

ROOT = Path(__file__).resolve().parents[1]
# The packaged rules, the raise rule extracting the device and the kind of check from Datto's
# subject convention ("Alert on device: FS-01, reason Disk usage - Alert{...}").
MAIL_RULES = (ROOT / "rules.example.toml").read_text().replace(
    '''subject = { regex = \'\'\'Alert\\{(?P<alert_uid>''',
    '''subject = { regex = \'\'\'device: (?P<device>[^,]+), reason (?P<condition>.+?) - '''
    '''Alert\\{(?P<alert_uid>''')
assert "(?P<condition>" in MAIL_RULES

MakeApp = Callable[[str], Awaitable[Api]]


def uid(n: int) -> str:
    """The n-th test alert's id (a Datto GUID)."""
    return f"5e0c8b1a-7d2f-4c3e-9a6b-{n:012d}"
