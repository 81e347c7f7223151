"""Delivery channels: SNS push (GCM/APNS payloads), Web Push to browsers, SMS through SNS, e-mail
over SMTP, and `log`
(the embedded default when no provider is configured). Each returns a provider message id or
raises ``TransientError`` (retry with backoff) / ``PermanentError`` (give up)."""

from __future__ import annotations

import atexit
import json
import logging
import re
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import requests
from flask import current_app

from app.db import assert_no_row_locks

log = logging.getLogger(__name__)

_TRANSIENT_AWS_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "InternalError",
                        "InternalFailure", "ServiceUnavailable", "KMSThrottling", "RequestTimeout"}


class TransientError(RuntimeError):
    """Worth retrying: throttling, 5xx, connection trouble."""


class PermanentError(RuntimeError):
    """Not worth retrying. ``disable_device`` when the endpoint/token is dead."""

    def __init__(self, message: str, *, disable_device: bool = False) -> None:
        super().__init__(message)
        self.disable_device = disable_device


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    deep_link: str
    web_link: str
    event_id: int
    admitted_until_iso: str
    kind: str = "queue_admitted"  # the push payload's `type`: queue_admitted, waitlist_offer, ticket_refunded
    # an e-mail's HTML part and attachments (filename, MIME type, bytes), e.g. a receipt's .ics
    html: str = ""
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    to: str = ""  # the address of a notice sent straight to the account's e-mail (a receipt)

    @classmethod
    def text(cls, title: str, body: str) -> Message:
        """A notice with no sale behind it (a verification code): no links, no deadline."""
        return cls(title=title, body=body, deep_link="", web_link="", event_id=0, admitted_until_iso="")

    def data(self) -> dict[str, str]:
        return {"deep_link": self.deep_link, "web_link": self.web_link, "event_id": str(self.event_id),
                "admitted_until": self.admitted_until_iso, "type": self.kind}


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _per_process(kind: str, make: Callable[[dict[str, Any]], Any]) -> Any:
    """This process's ``kind`` of SNS client for the configured region and endpoint, made once:
    every send asks, so no lock is taken once the process has it."""
    cfg = current_app.config
    key = f"{kind}|{cfg['AWS_REGION']}|{cfg['SNS_ENDPOINT_URL']}"
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        if key not in _clients:
            _clients[key] = make(cfg)
        return _clients[key]


def _sns_config(max_pool_connections: int) -> Any:  # botocore's Config, for both clients
    from botocore.config import Config

    return Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=5,
                  max_pool_connections=max_pool_connections)


def sns_client() -> Any:  # a boto3 SNS client (generated class)
    def make(cfg: dict[str, Any]) -> Any:
        import boto3

        return boto3.client("sns", region_name=cfg["AWS_REGION"], endpoint_url=cfg["SNS_ENDPOINT_URL"],
                            config=_sns_config(max(10, cfg.get("NOTIFY_SEND_CONCURRENCY", 32))))

    return _per_process("boto3", make)


def _aws_error(exc: Exception) -> Exception:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "EndpointDisabled":
            return PermanentError("endpoint disabled", disable_device=True)
        if code in {"InvalidParameter", "InvalidParameterValue"} and "Endpoint" in str(exc) and "disabled" in str(exc):
            return PermanentError("endpoint disabled", disable_device=True)
        if code == "NotFound":
            return PermanentError("endpoint not found", disable_device=True)
        if code in _TRANSIENT_AWS_CODES or status >= 500:
            return TransientError(f"SNS {code}")
        return PermanentError(f"SNS {code}: {exc}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"SNS unreachable: {exc}")
    if isinstance(exc, ResponseParserError):  # a 5xx page instead of SNS's XML (a proxy, an outage)
        return TransientError(f"SNS answered garbage: {str(exc)[:200]}")
    return exc


def push_payload(message: Message) -> str:
    """MessageStructure=json: one payload per platform, a default for everything else."""
    gcm = {"notification": {"title": message.title, "body": message.body}, "data": message.data()}
    apns = {"aps": {"alert": {"title": message.title, "body": message.body}, "sound": "default"},
            **message.data()}
    return json.dumps({"default": f"{message.title} {message.body}", "GCM": json.dumps(gcm),
                       "APNS": json.dumps(apns), "APNS_SANDBOX": json.dumps(apns)})


def _publish_args(endpoint_arn: str, message: Message) -> dict[str, str]:
    """SNS Publish's arguments for a mobile push (both clients)."""
    return {"TargetArn": endpoint_arn, "MessageStructure": "json", "Message": push_payload(message)}


def send_push(endpoint_arn: str, message: Message) -> str:
    assert_no_row_locks("SNS publish")
    try:
        reply = sns_client().publish(**_publish_args(endpoint_arn, message))
    except Exception as exc:  # noqa: BLE001
        raise _aws_error(exc) from exc
    return reply["MessageId"]


class PushSender:
    """Mobile pushes of a whole slice from one asyncio loop per process (aiobotocore): the same
    botocore request building, signing and parsing as ``send_push``, with up to ``in_flight``
    calls open at once and no thread hand-offs between them. Against an SNS that answers at once,
    16 threads of boto3 spend about 1.0 ms of CPU per publish and this loop 0.65 (docs/scale.md).
    The loop runs on a daemon thread with one client, made on first use in the process that sends
    (after any fork)."""

    def __init__(self, region: str, endpoint_url: str | None, in_flight: int) -> None:
        import asyncio

        self._asyncio = asyncio
        self._in_flight = in_flight
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="push-sender", daemon=True).start()
        self._client = asyncio.run_coroutine_threadsafe(self._open(region, endpoint_url), self._loop).result()
        atexit.register(self.close)

    def close(self, timeout: float = 5.0) -> None:
        """Close the client's connections (at exit: an open aiohttp session warns when collected)."""
        try:
            self._asyncio.run_coroutine_threadsafe(self._client.__aexit__(None, None, None), self._loop).result(timeout)
        except Exception:  # noqa: BLE001 - exiting anyway; the connections close with the process
            log.debug("push sender did not close cleanly", exc_info=True)

    async def _open(self, region: str, endpoint_url: str | None) -> Any:
        from aiobotocore.session import get_session

        self._slots = self._asyncio.Semaphore(self._in_flight)
        # entered for the process's lifetime: the client and its connections live as long as the loop
        return await get_session().create_client("sns", region_name=region, endpoint_url=endpoint_url,
                                                 config=_sns_config(self._in_flight)).__aenter__()

    def publish_all(self, pushes: list[tuple[str, Message]]) -> Future:
        """Start every (endpoint ARN, message) push; the future gives, in order, each one's (message
        id, time handed to SNS) or its error (``TransientError``, ``PermanentError``, or what else
        was raised) as a value: one failure does not hide the others' outcomes."""
        assert_no_row_locks("SNS publish")
        return self._asyncio.run_coroutine_threadsafe(self._publish_all(pushes), self._loop)

    async def _publish_all(self, pushes: list[tuple[str, Message]]) -> list[tuple[str, float] | Exception]:
        return list(await self._asyncio.gather(*(self._publish(arn, message) for arn, message in pushes)))

    async def _publish(self, endpoint_arn: str, message: Message) -> tuple[str, float] | Exception:
        async with self._slots:
            try:
                reply = await self._client.publish(**_publish_args(endpoint_arn, message))
            except Exception as exc:  # noqa: BLE001 - returned: the caller records each outcome
                return _aws_error(exc)
            return reply["MessageId"], time.time()


def push_sender() -> PushSender:
    """This process's ``PushSender`` for the configured SNS (one per region and endpoint)."""
    return _per_process("loop", lambda cfg: PushSender(cfg["AWS_REGION"], cfg["SNS_ENDPOINT_URL"] or None,
                                                       cfg["NOTIFY_SEND_CONCURRENCY"]))


# how long a push service keeps an undelivered notice: an admission or offer that arrives later
# than this is stale anyway
WEBPUSH_TTL_SECONDS = 600


def send_webpush(endpoint: str, keys: dict[str, str], message: Message) -> str:
    """A notice to a browser's push subscription (RFC 8030), encrypted to its keys (RFC 8291,
    aes128gcm) and signed with our VAPID key (RFC 8292), through pywebpush. The page's service
    worker (/sw.js) shows it even when no tab of the site is open."""
    from pywebpush import WebPushException, webpush

    assert_no_row_locks("Web Push")
    cfg = current_app.config
    payload = json.dumps({"title": message.title, "body": message.body, "url": message.web_link, **message.data()})
    try:
        response = webpush({"endpoint": endpoint, "keys": keys}, data=payload,
                           vapid_private_key=cfg["WEBPUSH_VAPID_PRIVATE_KEY"],
                           vapid_claims={"sub": cfg["WEBPUSH_SUBJECT"]}, ttl=WEBPUSH_TTL_SECONDS, timeout=10)
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (404, 410):  # the browser unsubscribed: the subscription is gone for good
            raise PermanentError(f"web push subscription gone ({status})", disable_device=True) from exc
        if status is None or status == 429 or status >= 500:
            raise TransientError(f"web push service: {exc}") from exc
        raise PermanentError(f"web push refused ({status}): {exc}") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"web push service unreachable: {exc}") from exc
    return response.headers.get("Location") or f"webpush-{response.status_code}"


def send_sms(phone: str, message: Message) -> str:
    assert_no_row_locks("SNS SMS publish")
    try:
        reply = sns_client().publish(
            PhoneNumber=phone, Message=f"{message.body} {message.web_link}",
            MessageAttributes={"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}})
    except Exception as exc:  # noqa: BLE001
        raise _aws_error(exc) from exc
    return reply["MessageId"]


def send_email(address: str, message: Message) -> str:
    assert_no_row_locks("SMTP send")
    cfg = current_app.config
    email = EmailMessage()
    message_id = f"<{uuid.uuid4().hex}@tickets>"
    email["From"] = cfg["SMTP_FROM"]
    email["To"] = address
    email["Subject"] = message.title
    email["Message-ID"] = message_id
    if message.html:  # a receipt: its own text and HTML parts, 7-bit safe for any relay
        email.set_content(message.body, cte="quoted-printable")
        email.add_alternative(message.html, subtype="html", cte="quoted-printable")
    else:
        email.set_content(f"{message.body}\n\n{message.web_link}\n{message.deep_link}\n")
    for filename, mime, data in message.attachments:
        maintype, subtype = mime.split("/", 1)
        email.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=10) as smtp:
            if cfg["SMTP_USERNAME"]:
                smtp.starttls(context=ssl.create_default_context())
                smtp.login(cfg["SMTP_USERNAME"], cfg["SMTP_PASSWORD"])
            smtp.send_message(email)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentError(f"recipient refused: {exc}") from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientError(f"SMTP {exc.smtp_code}") from exc
        raise PermanentError(f"SMTP {exc.smtp_code}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(f"SMTP unreachable: {exc}") from exc
    return message_id


def send_email_or_log(address: str, message: Message) -> tuple[str, str]:
    """(provider message id, channel used): SMTP when a host is configured, else the log."""
    if current_app.config["SMTP_HOST"]:
        return send_email(address, message), "email"
    return send_log(address, message), "log"


def send_log(target: str, message: Message) -> str:
    """No provider configured for the channel: the notice goes to the log only (status `logged`)."""
    log.info("notification logged, not delivered (no provider configured) to %s: %s - %s %s %s",
             target, message.title, message.body, message.web_link, message.deep_link,
             extra={"target": target, "title": message.title, "body": message.body,
                    "deep_link": message.deep_link, "web_link": message.web_link})
    return f"log-{uuid.uuid4().hex[:12]}"


# --- SNS platform endpoints (as AWS documents for token registration) ---------------------------

_EXISTS = re.compile(r".*Endpoint (arn:aws:sns[^ ]+) already exists with the same [Tt]oken.*")


def ensure_platform_endpoint(application_arn: str, token: str, endpoint_arn: str | None, user_data: str) -> str:
    """Create or repair the SNS endpoint of a push token; returns its ARN (enabled, current token).

    Raises TransientError (SNS throttling/unreachable) or PermanentError (token refused)."""
    assert_no_row_locks("SNS endpoint registration")
    try:
        return _ensure_platform_endpoint(application_arn, token, endpoint_arn, user_data)
    except (TransientError, PermanentError):
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's errors, classified below
        raise _aws_error(exc) from exc


def _ensure_platform_endpoint(application_arn: str, token: str, endpoint_arn: str | None, user_data: str) -> str:
    from botocore.exceptions import ClientError

    client = sns_client()
    if endpoint_arn:
        try:
            attrs = client.get_endpoint_attributes(EndpointArn=endpoint_arn)["Attributes"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFound":
                raise _aws_error(exc) from exc
            endpoint_arn = None  # deleted on the AWS side: create it again
        else:
            if attrs.get("Token") != token or attrs.get("Enabled", "true").lower() != "true":
                client.set_endpoint_attributes(EndpointArn=endpoint_arn,
                                               Attributes={"Token": token, "Enabled": "true"})
            return endpoint_arn
    try:
        return client.create_platform_endpoint(PlatformApplicationArn=application_arn, Token=token,
                                               CustomUserData=user_data)["EndpointArn"]
    except ClientError as exc:
        match = _EXISTS.match(str(exc))
        if not match:
            raise _aws_error(exc) from exc
        existing = match.group(1)
        client.set_endpoint_attributes(EndpointArn=existing, Attributes={"Token": token, "Enabled": "true",
                                                                          "CustomUserData": user_data})
        return existing
