"""A real Dovecot IMAP server for tests, private to one test (or module, or session).

Each `Dovecot` runs `dovecot -F -c <its own dovecot.conf>` on 127.0.0.1 with two fresh ports:
plain IMAP (STARTTLS offered, plaintext login allowed) and implicit TLS, a self-signed
certificate, one user and a maildir, all under one base directory. Nothing from /etc/dovecot
is read, so the machine's own Dovecot (if any) is never touched.

Running as root: Dovecot refuses to run login processes or mail access as root (passwd-file
even rejects UID 0), so the instance uses the users the Debian package installs: `dovecot`
(auth and other internal services), `dovenull` (login processes) and `nobody:nogroup` as the
owner of the mail. Those users must be able to reach the base directory, but pytest's tmp_path
lives under /tmp/pytest-of-root, which is mode 0700; widening that would be undone by the next
pytest session (pytest re-tightens it), so as root the fixtures put the instance in a private
directory under the system temp dir instead (mode 0711: reachable, not listable) and copy the
log into tmp_path at teardown.

Running as any other user: every Dovecot process runs as that user (the "rootless" setup),
chroots are switched off, and the base directory is simply tmp_path.

Usage: make the `dovecot` fixture visible where it is needed, e.g. `dovecot = harness.dovecot`
in a test module (an alias keeps ruff's F811 quiet, unlike importing the name a test then takes
as its argument) or `from tests.dovecot import dovecot  # noqa: F401` in a conftest; build
fixtures of a wider scope with `dovecot_fixture(scope=...)`. Seed mail with `deliver()`, which
writes straight into the maildir (IMAP APPEND manages only ~160 messages/s).

Install Dovecot with `apt-get update && apt-get install -y dovecot-imapd`. Without it these
tests skip, except when CI is "true"/"1": then they fail, because CI must run the IMAP tier.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import imap_utf7

USERNAME = "alertd"
PASSWORD = "imap-secret-1"
HOST = "127.0.0.1"

# Users the Debian dovecot-core package creates, and an existing unprivileged mail owner.
ROOT_INTERNAL_USER = "dovecot"
ROOT_LOGIN_USER = "dovenull"
ROOT_MAIL_USER = "nobody"

# Dovecot lives in sbin, which is not on a non-root user's PATH on Debian.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])

# Longest socket path Dovecot creates under its run directory, e.g. "token-login/tokenlogin";
# a UNIX socket path must fit in sun_path (108 bytes on Linux, NUL included).
_LONGEST_SOCKET_NAME = 32
_SUN_PATH_MAX = 107


class DovecotError(RuntimeError):
    """Dovecot could not be set up, started or stopped; the message carries the log tail."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _free_port() -> int:
    # Bind-and-release: the kernel picks an unused port; Dovecot binds it with SO_REUSEADDR.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path.name}: not written)"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


class Dovecot:
    """One private Dovecot instance rooted at `base_dir` (created if missing)."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.conf_path = self.base_dir / "dovecot.conf"
        self.log_path = self.base_dir / "dovecot.log"
        # dovecot's own stdout/stderr: errors from before its log process is up land here.
        self.console_path = self.base_dir / "dovecot.console"
        self.cert_path = self.base_dir / "tls-cert.pem"
        self.key_path = self.base_dir / "tls-key.pem"
        self.passwd_path = self.base_dir / "passwd"
        self.run_dir = self.base_dir / "run"
        self.state_dir = self.base_dir / "state"
        self.mail_root = self.base_dir / "mail"
        self._port: int | None = None
        self._tls_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0
        mail_user = pwd.getpwnam(ROOT_MAIL_USER) if self._as_root else pwd.getpwuid(os.getuid())
        self._mail_uid = mail_user.pw_uid
        self._mail_gid = mail_user.pw_gid
        # Maildir file names must be unique across every writer of the folder.
        self._counter = itertools.count()
        self._hostname = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    # --- connection details -------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """Plain IMAP port (STARTTLS offered)."""
        if self._port is None:
            raise DovecotError("Dovecot has not been started yet")
        return self._port

    @property
    def tls_port(self) -> int:
        """Implicit-TLS (imaps) port."""
        if self._tls_port is None:
            raise DovecotError("Dovecot has not been started yet")
        return self._tls_port

    @property
    def username(self) -> str:
        return USERNAME

    @property
    def password(self) -> str:
        return PASSWORD

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start Dovecot and wait until it greets on the plain port.

        Ports are chosen on the first start and kept afterwards, so a restarted server is
        reachable at the same address (what a reconnecting client sees in production).
        """
        if self._proc is not None:
            raise DovecotError("Dovecot is already running")
        binary = shutil.which("dovecot", path=_SEARCH_PATH)
        if binary is None:
            raise DovecotError("dovecot binary not found (apt-get install -y dovecot-imapd)")
        if self._port is None or self._tls_port is None:
            self._port = _free_port()
            self._tls_port = _free_port()
            while self._tls_port == self._port:
                self._tls_port = _free_port()
        self._prepare_files()
        with self.console_path.open("ab") as console:
            # Own session, so kill() can take down the master and all its children at once.
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Shut Dovecot down cleanly (SIGTERM; clients are disconnected) and wait for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                proc.wait(timeout)
                self._proc = None
                self._wait_until_closed(timeout)
                raise DovecotError(
                    f"Dovecot ignored SIGTERM for {timeout}s and was killed\n"
                    + self._log_tails()) from None
        # The master reaps its children before exiting; this only catches strays.
        self._kill_group()
        self._proc = None
        self._wait_until_closed(timeout)

    def kill(self) -> None:
        """SIGKILL the master and every child at once: a crash, not a shutdown."""
        proc = self._proc
        if proc is None:
            return
        self._kill_group()
        proc.wait()
        self._proc = None
        self._wait_until_closed(10.0)

    def restart(self, timeout: float = 10.0) -> None:
        """stop() then start() on the same ports, mail and certificate."""
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- mail -----------------------------------------------------------------------------

    def maildir(self, folder: str = "INBOX") -> Path:
        """The maildir (holding cur/, new/, tmp/) of `folder` in Dovecot's Maildir++ layout.

        INBOX is the user's maildir itself; every other folder is a `.<name>` directory in
        it, the name in modified UTF-7 and "." as the hierarchy separator ("Archive.2024").
        """
        root = self.mail_root / USERNAME
        if folder.upper() == "INBOX":
            return root
        if not folder or folder.startswith(".") or "/" in folder:
            raise ValueError(f"not a Maildir++ folder name: {folder!r}")
        encoded: bytes = imap_utf7.encode(folder)
        return root / ("." + encoded.decode("ascii"))

    def create_folder(self, name: str) -> Path:
        """Create folder `name` on disk (no-op if it exists); Dovecot lists it from then on."""
        path = self.maildir(name)
        self._make_maildir(path)
        marker = path / "maildirfolder"  # Maildir++ marks sub-folders with this empty file
        if not marker.exists():
            marker.touch(mode=0o600)
            self._chown(marker)
        return path

    def deliver(self, raw: bytes, folder: str = "INBOX", seen: bool = False) -> Path:
        """Put one message into `folder` as a local delivery agent would; returns its file.

        Written to tmp/ and renamed, so Dovecot never sees a partial file. An unseen message
        goes to new/ (Dovecot assigns its UID on the next sync); a seen one goes straight to
        cur/ with the `:2,S` flag suffix, since Maildir keeps flags only in cur/ names.
        Dovecot serves stored bytes as-is apart from adding CR before bare LF, so deliver
        CRLF messages when a test compares fetched bytes.
        """
        folder_dir = self.maildir(folder)
        if not (folder_dir / "tmp").is_dir():
            if folder.upper() == "INBOX":
                self._make_maildir(folder_dir)
            else:
                self.create_folder(folder)
        now = time.time()
        # time.M<usec>P<pid>Q<seq>.host is the Maildir unique name; S=<size> spares Dovecot a
        # stat() per message.
        name = (f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(self._counter)}"
                f".{self._hostname},S={len(raw)}")
        tmp_path = folder_dir / "tmp" / name
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, raw)
            if self._as_root:
                os.fchown(fd, self._mail_uid, self._mail_gid)
        finally:
            os.close(fd)
        final = folder_dir / "cur" / f"{name}:2,S" if seen else folder_dir / "new" / name
        os.rename(tmp_path, final)
        return final

    # --- internals --------------------------------------------------------------------------

    def _prepare_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            self._check_reachable_by_service_users()
        if len(str(self.run_dir)) + 1 + _LONGEST_SOCKET_NAME > _SUN_PATH_MAX:
            raise DovecotError(
                f"base_dir {self.base_dir} is too long for Dovecot's UNIX sockets; use a "
                "shorter directory (dovecot_base_dir() picks one)")
        self.state_dir.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        if not self.cert_path.exists():
            self._make_certificate()
        # Read by Dovecot's auth process (the internal user), not by the root master.
        self.passwd_path.write_text(f"{USERNAME}:{{PLAIN}}{PASSWORD}::::::\n")
        if self._as_root:
            internal = pwd.getpwnam(ROOT_INTERNAL_USER)
            os.chown(self.passwd_path, 0, internal.pw_gid)
        self.passwd_path.chmod(0o640)
        self.mail_root.mkdir(exist_ok=True)
        self._chown(self.mail_root)
        self._make_maildir(self.maildir("INBOX"))
        self.conf_path.write_text(self._config())

    def _check_reachable_by_service_users(self) -> None:
        # Dovecot's unprivileged processes need to traverse every directory above their
        # files. The base dir itself is ours to open up (search only, no listing).
        mode = self.base_dir.stat().st_mode
        if not mode & 0o001:
            self.base_dir.chmod((mode & 0o7777) | 0o011)
        for parent in self.base_dir.parents:
            if not parent.stat().st_mode & 0o001:
                raise DovecotError(
                    f"{parent} is not searchable by others, so Dovecot's unprivileged users "
                    f"({ROOT_INTERNAL_USER}, {ROOT_LOGIN_USER}, {ROOT_MAIL_USER}) cannot reach "
                    f"{self.base_dir}; as root, use a directory from dovecot_base_dir()")

    def _make_certificate(self) -> None:
        # EC P-256: generated in milliseconds, unlike RSA. The SAN makes the certificate
        # verifiable for 127.0.0.1 when a test passes cert_path as its CA file.
        result = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.key_path), "-out", str(self.cert_path)],
            stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if result.returncode != 0:
            raise DovecotError("openssl could not create the test certificate:\n"
                               + result.stderr.decode(errors="replace"))
        self.key_path.chmod(0o600)  # read by the master (root or us), handed to login processes

    def _make_maildir(self, path: Path) -> None:
        for sub in ("", "cur", "new", "tmp"):
            directory = path / sub
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._chown(directory)

    def _chown(self, path: Path) -> None:
        if self._as_root:
            os.chown(path, self._mail_uid, self._mail_gid)

    def _config(self) -> str:
        if self._as_root:
            users = (f"default_internal_user = {ROOT_INTERNAL_USER}\n"
                     f"default_login_user = {ROOT_LOGIN_USER}")
            no_chroot = ""
        else:
            # Rootless: every process runs as us, sockets belong to our group (chown to
            # the dovecot group would fail), and chroot() would need root.
            me = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            users = (f"default_internal_user = {me}\ndefault_login_user = {me}\n"
                     f"default_internal_group = {group}")
            no_chroot = "\n  chroot ="
        return f"""# Written by tests/dovecot.py; private to this test instance.
base_dir = {self.run_dir}
state_dir = {self.state_dir}
instance_name = alertd-test-{self.port}
log_path = {self.log_path}
protocols = imap
listen = {HOST}

{users}
first_valid_uid = {min(self._mail_uid, 500)}
first_valid_gid = {min(self._mail_gid, 1)}

ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_verbose = yes

passdb {{
  driver = passwd-file
  args = {self.passwd_path}
}}
userdb {{
  driver = static
  args = uid={self._mail_uid} gid={self._mail_gid} home={self.mail_root}/%u
}}
mail_location = maildir:{self.mail_root}/%u

# Test-friendly timing. A failed login is answered within 0.5 s (Dovecot flushes failures
# on a fixed 0.5 s tick) instead of after 2 s, and a selected or IDLE mailbox notices
# messages written behind Dovecot's back within a second even where inotify is unavailable.
auth_failure_delay = 0
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 10 secs
# Default is 10 per user and IP; a daemon watching several folders plus the test's own
# connections, all from 127.0.0.1 as one user, can exceed that.
mail_max_userip_connections = 100

service anvil {{{no_chroot}
  # Auth penalty: after a failed login Dovecot delays further attempts from that IP (every
  # test is 127.0.0.1) by up to 15 s, correct ones included. A socket nobody may connect
  # to is Dovecot's documented switch to turn it off.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service ipc {{{no_chroot}
}}
service imap-login {{{no_chroot}
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = yes
  }}
}}
"""

    def _wait_until_ready(self, timeout: float) -> None:
        # A listening socket alone is not enough: the kernel queues connections before any
        # imap-login process exists. The greeting proves a login process is serving.
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DovecotError(
                    f"dovecot exited with status {self._proc.returncode} during startup\n"
                    + self._log_tails())
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                    if sock.recv(256).startswith(b"* OK"):
                        return
            except OSError as err:
                last_error = err
            time.sleep(0.05)
        raise DovecotError(
            f"Dovecot did not greet on {HOST}:{self.port} within {timeout}s "
            f"(last error: {last_error!r})\n" + self._log_tails())

    def _wait_until_closed(self, timeout: float) -> None:
        # Login processes hold the listening sockets too; once nothing accepts any more,
        # every process of the instance is gone and start() can bind the ports again.
        deadline = time.monotonic() + timeout
        for port in (self._port, self._tls_port):
            while port is not None:
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                except OSError:
                    break
                if time.monotonic() > deadline:
                    raise DovecotError(f"port {port} still accepts connections after stop")
                time.sleep(0.02)
        # Children without a TCP port (log, anvil, ...) die a moment after the SIGKILL: until
        # they have, a new master refuses to start ("Socket already exists").
        for path in self._unix_sockets():
            while _accepts(path):
                if time.monotonic() > deadline:
                    raise DovecotError(f"{path} still accepts connections after stop")
                time.sleep(0.02)

    def _unix_sockets(self) -> list[Path]:
        if not self.run_dir.is_dir():
            return []
        return [p for p in self.run_dir.rglob("*") if p.is_socket()]

    def _kill_group(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)

    def _log_tails(self) -> str:
        return _tail(self.log_path) + "\n" + _tail(self.console_path)


def _accepts(path: Path) -> bool:
    """True while a process listens on the UNIX socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


# --- availability and fixtures --------------------------------------------------------------


@contextlib.contextmanager
def dovecot_base_dir(tmp_path: Path) -> Iterator[Path]:
    """A base directory for a Dovecot instance belonging to the test owning `tmp_path`.

    As another user than root this is tmp_path/dovecot. As root it is a fresh directory in
    the system temp dir that Dovecot's unprivileged users can reach (see the module
    docstring); it is removed afterwards, its dovecot.log copied to tmp_path first.
    """
    if os.geteuid() != 0:
        yield tmp_path / "dovecot"
        return
    base = Path(tempfile.mkdtemp(prefix="alertd-dovecot-"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        with contextlib.suppress(OSError):
            tmp_path.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(base / "dovecot.log", tmp_path / "dovecot.log")
        shutil.rmtree(base, ignore_errors=True)


@functools.cache
def dovecot_unavailable_reason() -> str | None:
    """None when Dovecot is installed and a trial instance starts; else why not.

    Checked once per process: the trial start costs a fraction of a second.
    """
    if shutil.which("dovecot", path=_SEARCH_PATH) is None:
        return "dovecot is not installed (apt-get install -y dovecot-imapd)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (needed for the test certificate)"
    if os.geteuid() == 0:
        for user in (ROOT_INTERNAL_USER, ROOT_LOGIN_USER, ROOT_MAIL_USER):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"user {user!r} is missing (the dovecot-core package creates it)"
    try:
        with tempfile.TemporaryDirectory(prefix="alertd-dovecot-probe-") as scratch, \
                dovecot_base_dir(Path(scratch)) as base:
            server = Dovecot(base)
            server.start()
            server.kill()  # see running_dovecot(): a clean stop costs a second
    except (DovecotError, OSError, KeyError, subprocess.SubprocessError) as err:
        return f"Dovecot does not start here: {err}"
    return None


def require_dovecot() -> None:
    """Skip the calling test when Dovecot is unavailable; fail instead in CI."""
    reason = dovecot_unavailable_reason()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"CI must run the IMAP tests, but: {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def running_dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A started Dovecot for the duration of the block (skips or fails if unavailable)."""
    require_dovecot()
    with dovecot_base_dir(tmp_path) as base:
        server = Dovecot(base)
        server.start()
        try:
            yield server
        finally:
            # A clean stop() always costs over a second: Dovecot's master sleeps a fixed 1 s
            # for its log process to drain. The instance is thrown away here, so kill it;
            # every log line written before now is already in dovecot.log.
            server.kill()


def dovecot_fixture(scope: Any = "function") -> Callable[..., Iterator[Dovecot]]:
    """A `dovecot` fixture of the given scope, e.g. one server seeded once per module:

        dovecot_module = dovecot_fixture(scope="module")
    """
    @pytest.fixture(scope=scope)
    def _dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
        with running_dovecot(tmp_path_factory.mktemp("dovecot")) as server:
            yield server
    return _dovecot


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A started, empty Dovecot private to this test; killed afterwards (running_dovecot)."""
    with running_dovecot(tmp_path) as server:
        yield server
