"""IMAP account settings (no server): plain IMAP only on loopback, TLS verified by default."""

from __future__ import annotations

import ssl

import pytest

from daemon.config.mail_sections import ImapAccount


def test_plain_imap_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ImapAccount(name="x", host="imap.example.com", tls="none", username="u",
                    password="p")  # type: ignore[arg-type]


def test_tls_context_verifies_by_default() -> None:
    account = ImapAccount(name="x", host="imap.example.com", username="u",
                          password="p")  # type: ignore[arg-type]
    assert account.verify_tls and account.effective_port == 993
    assert ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED
