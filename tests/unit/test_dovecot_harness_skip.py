"""The Dovecot harness's availability rule (no server started): skip locally, fail in CI."""

from __future__ import annotations

import pytest

from tests import dovecot as harness


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "dovecot_unavailable_reason", lambda: "no dovecot here")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no dovecot here"):
        harness.require_dovecot()
    for value in ("true", "1"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match="no dovecot here"):
            harness.require_dovecot()
