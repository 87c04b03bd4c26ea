"""The Dovecot harness itself: a real server the IMAP intake tests can rely on."""

from __future__ import annotations

import socket
import ssl

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests import dovecot as harness
from tests.dovecot import Dovecot

dovecot = harness.dovecot  # the fixture, made visible to this module's tests


def _message(n: int) -> bytes:
    # CRLF throughout: Dovecot adds CR before bare LF on output, so only CRLF round-trips.
    return (f"From: rmm@example.com\r\nTo: alerts@example.com\r\nSubject: alert {n}\r\n"
            f"Message-ID: <alert-{n}@example.com>\r\n\r\nbody {n}\r\n").encode()


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _login(server: Dovecot) -> IMAPClient:
    client = IMAPClient(server.host, server.port, ssl=False, timeout=5)
    client.login(server.username, server.password)
    return client


def test_login_plain_with_starttls(dovecot: Dovecot) -> None:
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=5) as client:
        assert b"STARTTLS" in client.capabilities()
        client.starttls(ssl_context=_unverified())
        assert client.login(dovecot.username, dovecot.password) == b"Logged in"
        assert client.folder_exists("INBOX")


def test_login_implicit_tls(dovecot: Dovecot) -> None:
    with IMAPClient(dovecot.host, dovecot.tls_port, ssl=True, ssl_context=_unverified(),
                    timeout=5) as client:
        assert client.login(dovecot.username, dovecot.password) == b"Logged in"


def test_certificate_verifies_against_itself(dovecot: Dovecot) -> None:
    # Lets intake tests exercise certificate verification, not just switch it off.
    context = ssl.create_default_context(cafile=str(dovecot.cert_path))
    with IMAPClient(dovecot.host, dovecot.tls_port, ssl=True, ssl_context=context,
                    timeout=5) as client:
        client.login(dovecot.username, dovecot.password)


def test_delivered_messages_are_searchable_and_byte_identical(dovecot: Dovecot) -> None:
    raws = [_message(n) for n in range(3)]
    paths = [dovecot.deliver(raw) for raw in raws]
    assert all(path.parent == dovecot.maildir() / "new" for path in paths)
    with _login(dovecot) as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search()
        assert len(uids) == 3
        fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
        assert sorted(data[b"BODY[]"] for data in fetched.values()) == sorted(raws)
        assert all(b"\\Seen" not in data[b"FLAGS"] for data in fetched.values())


def test_deliver_seen_sets_the_flag(dovecot: Dovecot) -> None:
    dovecot.deliver(_message(1), seen=True)
    dovecot.deliver(_message(2))
    with _login(dovecot) as client:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search("SEEN")) == 1
        assert len(client.search("UNSEEN")) == 1


def test_create_folder_and_move(dovecot: Dovecot) -> None:
    dovecot.create_folder("Processed")
    dovecot.deliver(_message(1))
    with _login(dovecot) as client:
        assert client.folder_exists("Processed")
        client.select_folder("INBOX")
        [uid] = client.search()
        client.move([uid], "Processed")
        assert client.search() == []
        client.select_folder("Processed", readonly=True)
        [moved] = client.search()
        assert client.fetch([moved], ["BODY.PEEK[]"])[moved][b"BODY[]"] == _message(1)
    folder = dovecot.maildir("Processed")
    assert len([*(folder / "new").iterdir(), *(folder / "cur").iterdir()]) == 1


def test_deliver_into_new_folder_creates_it(dovecot: Dovecot) -> None:
    dovecot.deliver(_message(1), folder="Alerts")
    with _login(dovecot) as client:
        assert client.select_folder("Alerts", readonly=True)[b"EXISTS"] == 1


def test_restart_keeps_ports_and_mail(dovecot: Dovecot) -> None:
    dovecot.deliver(_message(1))
    port, tls_port = dovecot.port, dovecot.tls_port
    client = _login(dovecot)
    client.select_folder("INBOX")
    dovecot.restart()
    # The old session is gone: exactly what a reconnecting intake has to cope with.
    with pytest.raises((OSError, IMAPClient.Error, IMAPClient.AbortError)):
        client.noop()
    client.shutdown()
    assert (dovecot.port, dovecot.tls_port) == (port, tls_port)
    with _login(dovecot) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1


def test_stop_is_clean_and_start_reuses_the_ports(dovecot: Dovecot) -> None:
    port = dovecot.port
    dovecot.stop()
    assert not dovecot.running
    assert "Fatal" not in dovecot.log_path.read_text()
    dovecot.start()
    assert dovecot.port == port
    with _login(dovecot) as client:
        assert client.folder_exists("INBOX")


def test_kill_then_start_again(dovecot: Dovecot) -> None:
    dovecot.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dovecot.host, dovecot.port), timeout=2).close()
    dovecot.start()
    with _login(dovecot) as client:
        assert client.folder_exists("INBOX")


def test_wrong_password_is_a_login_error(dovecot: Dovecot) -> None:
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=5) as client, \
            pytest.raises(LoginError):
        client.login(dovecot.username, "wrong-password")
