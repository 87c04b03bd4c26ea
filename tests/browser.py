"""Debian's Chromium driven by the `playwright` package, for the console's browser tests.

Without Chromium or playwright the tests skip with the reason, except in CI (CI=true), where
they fail: `.ci/run` installs the `chromium` package, and the test extra brings playwright.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("ALERTD_TEST_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# As root and on a machine without network: no sandbox, no GPU, no calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def browser_unavailable_reason() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    return None


def require_browser() -> None:
    reason = browser_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


async def launch(playwright: Any) -> Any:
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
