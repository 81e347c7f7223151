"""The development inbox: what `make run` sends, caught and shown on one page, like Mailpit.

`make run` points the app at two local catchers when nothing real is configured:
- an SMTP server (aiosmtpd) that keeps every e-mail;
- moto's SNS server (push to FCM/APNs platform endpoints, and SMS), which keeps every publish.

`DevInbox` runs both in this process and serves http://127.0.0.1:8025/ (HTML, newest first) and
`/messages` (JSON): the channel, recipient, text and the deep and web links of each notice.
Development only: nothing here is imported by the API or the workers.
"""

from __future__ import annotations

import email
import json
import re
import threading
import time
from email import policy
from typing import Any

from jinja2 import Environment
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

REGION = "eu-west-1"
_LINK = re.compile(r"(?:https?|ticketapp)://[^\s\"'<>]+")

_PAGE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dev inbox ({{ messages|length }})</title>
<meta http-equiv="refresh" content="3">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}
 table{border-collapse:collapse;width:100%}
 td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}
 .ch{font-weight:600;text-transform:uppercase;font-size:12px} pre{white-space:pre-wrap;margin:0}
</style></head><body>
<h1>Dev inbox</h1>
<p>Every e-mail (SMTP 127.0.0.1:{{ smtp_port }}), SMS and push (SNS {{ sns_url }}) that this
<code>make run</code> sent. JSON: <a href="messages">/messages</a>. The page refreshes itself.</p>
{% if not messages %}<p><em>Nothing sent yet.</em></p>{% else %}
<table><tr><th>received</th><th>channel</th><th>to</th><th>title</th><th>text</th><th>links</th></tr>
{% for m in messages %}<tr><td>{{ m.received_at }}</td><td class="ch">{{ m.channel }}</td><td>{{ m.to }}</td>
<td>{{ m.title }}</td><td><pre>{{ m.text }}</pre></td>
<td>{% for link in m.links %}<a href="{{ link }}">{{ link }}</a><br>{% endfor %}</td></tr>
{% endfor %}</table>{% endif %}
</body></html>""")


def _links(*texts: str) -> list[str]:
    found: list[str] = []
    for text in texts:
        for link in _LINK.findall(text or ""):
            if link not in found:
                found.append(link)
    return found


def _push_message(raw: str) -> tuple[str, str, list[str]]:
    """Title, text and links of an SNS publish with MessageStructure=json (see channels.push_payload)."""
    try:
        structure = json.loads(raw)
        gcm = json.loads(structure.get("GCM") or "{}")
    except (TypeError, ValueError):
        return "", raw, _links(raw)
    note, data = gcm.get("notification", {}), gcm.get("data", {})
    links = [link for link in (data.get("deep_link"), data.get("web_link")) if link]
    return note.get("title", ""), note.get("body", structure.get("default", "")), links


class DevInbox:
    """SMTP catcher + moto SNS + the inbox page, on loopback ports, in threads of this process."""

    def __init__(self, smtp_port: int, sns_port: int, http_port: int) -> None:
        self.smtp_port, self.sns_port, self.http_port = smtp_port, sns_port, http_port
        self._emails: list[dict[str, Any]] = []
        self._seen: dict[str, float] = {}  # SNS message id -> when this inbox first saw it
        self._lock = threading.Lock()
        self._smtp = self._moto = self._http = None
        self.fcm_arn = self.apns_arn = ""

    @property
    def sns_url(self) -> str:
        return f"http://127.0.0.1:{self.sns_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def start(self) -> DevInbox:
        from aiosmtpd.controller import Controller
        from moto.server import ThreadedMotoServer

        inbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's
                inbox._keep_email(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
                return "250 OK"

        self._smtp = Controller(Handler(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.sns_port, verbose=False)
        self._moto.start()
        self.fcm_arn, self.apns_arn = self._platform_applications()
        self._http = make_server("127.0.0.1", self.http_port, self._wsgi, threaded=True)
        threading.Thread(target=self._http.serve_forever, name="dev-inbox", daemon=True).start()
        return self

    def stop(self) -> None:
        for part, method in ((self._http, "shutdown"), (self._moto, "stop"), (self._smtp, "stop")):
            if part is not None:
                getattr(part, method)()

    def _platform_applications(self) -> tuple[str, str]:
        import boto3

        sns = boto3.client("sns", region_name=REGION, endpoint_url=self.sns_url,
                           aws_access_key_id="dev", aws_secret_access_key="dev")
        arns = []
        for platform in ("GCM", "APNS"):
            reply = sns.create_platform_application(Name=f"tickets-dev-{platform.lower()}", Platform=platform,
                                                    Attributes={"PlatformCredential": "dev"})
            arns.append(reply["PlatformApplicationArn"])
        return arns[0], arns[1]

    def _keep_email(self, sender: str, recipients: list[str], content: bytes) -> None:
        parsed = email.message_from_bytes(content, policy=policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
        with self._lock:
            self._emails.append({"channel": "email", "to": ", ".join(recipients), "from": sender,
                                 "title": str(parsed.get("Subject", "")), "text": text.strip(),
                                 "links": _links(text), "received": time.time()})

    def _sns_messages(self) -> list[dict[str, Any]]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sns.models import sns_backends

        backend = sns_backends[DEFAULT_ACCOUNT_ID][REGION]
        found: list[dict[str, Any]] = []
        now = time.time()
        for message_id, (phone, text) in list(backend.sms_messages.items()):
            found.append({"id": message_id, "channel": "sms", "to": phone, "title": "", "text": text,
                          "links": _links(text)})
        for endpoint in list(backend.platform_endpoints.values()):
            platform = "apns" if endpoint.application.platform.startswith("APNS") else "fcm"
            for message_id, raw in list(endpoint.messages.items()):
                title, text, links = _push_message(raw)
                found.append({"id": message_id, "channel": f"push ({platform})", "to": endpoint.token,
                              "title": title, "text": text, "links": links})
        with self._lock:
            for item in found:
                item["received"] = self._seen.setdefault(item.pop("id"), now)
        return found

    def messages(self) -> list[dict[str, Any]]:
        """Everything caught so far, newest first."""
        with self._lock:
            emails = [dict(m) for m in self._emails]
        items = sorted(emails + self._sns_messages(), key=lambda m: m["received"], reverse=True)
        for item in items:
            item["received_at"] = time.strftime("%H:%M:%S", time.localtime(item["received"]))
        return items

    def _wsgi(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/messages":
            response = Response(json.dumps({"messages": self.messages()}), mimetype="application/json")
        elif request.path == "/":
            response = Response(_PAGE.render(messages=self.messages(), smtp_port=self.smtp_port,
                                             sns_url=self.sns_url), mimetype="text/html")
        else:
            response = Response(json.dumps({"code": 404, "message": "not found"}), 404,
                                mimetype="application/json")
        return response(environ, start_response)
