"""Channels (渠道) that leave the service: email over SMTP and signed webhooks.

Each sender raises ``SendFailed`` with a readable reason; the delivery loop
decides whether to retry or park.
"""
from __future__ import annotations

import json
import smtplib
import time
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import requests

from services.notifications.domain import webhook_signature

SIGNATURE_HEADER = "X-Lianchuang-Signature"
TIMESTAMP_HEADER = "X-Lianchuang-Timestamp"
DELIVERY_HEADER = "X-Lianchuang-Delivery"


class SendFailed(Exception):
    """The channel refused or could not be reached; the message says why."""


class SmtpSender:
    """Email with ``smtplib``; settings from config ``NOTIFICATIONS.smtp``."""

    def __init__(self, settings: dict):
        self.host = str(settings.get("host") or "127.0.0.1")
        self.port = int(settings.get("port") or 25)
        self.sender = str(settings.get("sender") or "lianchuang@localhost")
        self.sender_name = str(settings.get("sender_name") or "联创党建平台")
        self.timeout = float(settings.get("timeout") or 10)
        self.starttls = str(settings.get("starttls", False)).lower() in ("true", "yes", "1")
        self.username = settings.get("username") or None
        self.password = settings.get("password") or None

    def message(self, delivery: dict) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = delivery["subject"]
        msg["From"] = formataddr((self.sender_name, self.sender))
        msg["To"] = formataddr((delivery.get("recipient_name") or "", delivery["address"]))
        # Stable per delivery, so a mail system can drop a copy resent after a crash.
        msg["Message-ID"] = make_msgid(idstring=f"lianchuang-{delivery['id']}")
        msg["X-Lianchuang-Event"] = delivery["event_id"]
        msg["X-Lianchuang-Notice-Type"] = delivery["notice_type"]
        msg.set_content(delivery["body"], charset="utf-8")
        return msg

    def send(self, delivery: dict) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self.message(delivery))
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") \
                from None


class WebhookSender:
    """HTTP POST of a JSON body in the markdown form enterprise-chat robots accept
    (企业微信/钉钉 ``msgtype: markdown``), signed with HMAC-SHA256 in a header."""

    def __init__(self, settings: dict):
        # Without a secret the service still starts (inbox and email work); each
        # webhook is then refused with that reason and parked, never sent unsigned.
        self.secret = str(settings.get("secret") or "")
        self.timeout = float(settings.get("timeout") or 5)
        self.session = requests.Session()

    def body(self, delivery: dict) -> bytes:
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": delivery["subject"],
                         "content": f"### {delivery['subject']}\n\n{delivery['body']}"},
            "lianchuang": {"delivery_id": delivery["id"], "event_id": delivery["event_id"],
                           "notice_type": delivery["notice_type"],
                           "recipient_id": delivery["recipient_id"]},
        }
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def headers(self, body: bytes, delivery_id) -> dict:
        timestamp = str(int(time.time()))
        return {"Content-Type": "application/json; charset=utf-8",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: webhook_signature(self.secret, timestamp, body),
                DELIVERY_HEADER: str(delivery_id)}

    def send(self, delivery: dict) -> None:
        if not self.secret:
            raise SendFailed("NOTIFICATIONS.webhook.secret is not configured: not sending unsigned")
        body = self.body(delivery)
        try:
            response = self.session.post(delivery["address"], data=body,
                                         headers=self.headers(body, delivery["id"]),
                                         timeout=self.timeout)
        except requests.RequestException as exc:
            raise SendFailed(f"webhook {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise SendFailed(f"webhook HTTP {response.status_code}: {response.text[:200]}")
        # Chat robots answer 200 with {"errcode": n}; non-zero means refused.
        try:
            answer = response.json()
        except ValueError:
            return
        if isinstance(answer, dict) and answer.get("errcode") not in (None, 0):
            raise SendFailed(f"webhook refused: errcode {answer.get('errcode')} "
                             f"{answer.get('errmsg', '')}")
