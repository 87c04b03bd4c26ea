"""How a notification leaves alertd: a signed webhook POST, a Teams or Slack incoming
webhook, or mail through an SMTP relay.

Every failure is a `NotifyError` that says what failed without the credential (a chat
webhook's URL is one: only its host is named). Retryable: a network error, a timeout, 429 or
5xx, a relay's 4xx reply; not: any other HTTP 4xx, a 5xx SMTP reply, a refused login, a
certificate that does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from daemon.core.delivery import DeliveryError

SIGNATURE_HEADER = "X-Alertd-Signature"
TIMESTAMP_HEADER = "X-Alertd-Timestamp"
DELIVERY_HEADER = "X-Alertd-Delivery"
MAX_ANSWER_CHARS = 200  # of a receiver's answer, in the reason a send failed


class NotifyError(DeliveryError):
    """A notification could not be sent; `retryable` says whether trying later can help."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def signature(secret: bytes, body: bytes) -> str:
    """`X-Alertd-Signature`: sha256=<hex HMAC-SHA256 of the body, keyed by the secret>."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def shown_url(url: str, with_path: bool) -> str:
    """A URL as errors, logs and the CLI name it: never user-info or query (a token may sit
    there), and the path only when it is no credential (a chat webhook's is)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path if with_path else ''}"


def _failure(err: aiohttp.ClientError) -> str:
    """What went wrong, without the exception's text (it may quote the URL)."""
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"{type(err).__name__}: {err.os_error}"  # the host and port at most
    return type(err).__name__


async def post_json(session: aiohttp.ClientSession, url: str, body: bytes,
                    headers: Mapping[str, str], timeout_s: float, show_path: bool) -> None:
    """POST `body`; return on 2xx, raise NotifyError otherwise."""
    where = shown_url(url, show_path)
    try:
        async with session.post(url, data=body, allow_redirects=False,
                                headers={"Content-Type": "application/json", **headers},
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as answer:
            if 200 <= answer.status < 300:
                return
            text = (await answer.content.read(4096)).decode("utf-8", "replace")
    except TimeoutError:
        raise NotifyError(f"{where}: no answer within {timeout_s:g} s", True) from None
    except aiohttp.ClientError as err:
        raise NotifyError(f"{where}: {_failure(err)}", True) from None
    snippet = " ".join(text.split())[:MAX_ANSWER_CHARS]
    retryable = answer.status == 429 or answer.status >= 500
    raise NotifyError(f"{where} answered HTTP {answer.status}"
                      + (f": {snippet}" if snippet else ""), retryable)


def webhook_request(secret: str, document: Mapping[str, Any], now_s: float | None = None
                    ) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed webhook: the timestamp is in the signed body too
    (`sent_at`), so a receiver can refuse a replayed one."""
    sent_at = int(time.time() if now_s is None else now_s)
    body = json.dumps({**document, "sent_at": sent_at}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    return body, {SIGNATURE_HEADER: signature(secret.encode(), body),
                  TIMESTAMP_HEADER: str(sent_at), DELIVERY_HEADER: str(document["id"])}


def slack_escape(text: str) -> str:
    """Slack's three control characters: `<!channel>` from an alert must not ping anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(subject: str, text: str) -> bytes:
    return json.dumps({"text": f"*{slack_escape(subject)}*\n{slack_escape(text)}",
                       "unfurl_links": False}, ensure_ascii=False).encode()


def _plain(text: str, **style: Any) -> dict[str, Any]:
    """A line of plain text on a card: a TextRun renders no Markdown (a TextBlock would turn
    an alert's `[Reset your password](https://...)` into a link)."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **style}]}


def teams_body(subject: str, text: str, url: str) -> bytes:
    """An Adaptive Card in the message envelope that Teams' incoming webhooks (connector and
    Workflows) take: the subject in bold, then the text a line per block."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4",
        "body": [_plain(subject, weight="Bolder"),
                 *(_plain(line) for line in text.splitlines() if line.strip())],
        "actions": [{"type": "Action.OpenUrl", "title": "Open in alertd", "url": url}],
    }
    return json.dumps({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "content": card}]},
        ensure_ascii=False).encode()


def send_mail(target: Any, subject: str, text: str, delivery_id: str) -> None:
    """Send one mail through the target's relay (blocking: run in a thread)."""
    message = EmailMessage()
    message["From"] = target.mail_from
    message["To"] = ", ".join(target.to)
    message["Subject"] = subject  # one line: Templates.render collapsed it
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(f"alertd.{delivery_id}")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    message.set_content(text)
    where = f"smtp://{target.smtp_host}:{target.smtp_port}"
    context = ssl.create_default_context(cafile=target.ca_file or None)
    try:
        if target.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(target.smtp_host, target.smtp_port,
                                                    timeout=target.timeout_s, context=context)
        else:
            client = smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=target.timeout_s)
        with client:
            if target.security == "starttls":
                client.starttls(context=context)
            if target.username:
                client.login(target.username, target.password.get_secret_value())
            refused = client.send_message(message)
    except smtplib.SMTPAuthenticationError as err:
        raise NotifyError(f"{where}: login refused: {err.smtp_code} {_said(err.smtp_error)}",
                          False) from None
    except smtplib.SMTPNotSupportedError as err:
        raise NotifyError(f"{where}: {err}", False) from None
    except smtplib.SMTPRecipientsRefused as err:
        said = "; ".join(f"{rcpt}: {code} {_said(text)}"
                         for rcpt, (code, text) in err.recipients.items())
        raise NotifyError(f"{where}: every recipient refused: {said}",
                          all(code < 500 for code, _ in err.recipients.values())) from None
    except smtplib.SMTPResponseException as err:
        raise NotifyError(f"{where}: {err.smtp_code} {_said(err.smtp_error)}",
                          err.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as err:
        raise NotifyError(f"{where}: the relay's certificate does not verify "
                          f"({err.verify_message}); set ca_file to its CA", False) from None
    except (OSError, smtplib.SMTPException) as err:
        raise NotifyError(f"{where}: {type(err).__name__}: {err}", True) from None
    if refused:
        said = "; ".join(f"{rcpt}: {code} {_said(text)}" for rcpt, (code, text) in refused.items())
        raise NotifyError(f"{where}: some recipients refused (the others got it): {said}",
                          False)


def _said(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:MAX_ANSWER_CHARS]
