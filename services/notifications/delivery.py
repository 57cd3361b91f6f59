"""The delivery loop (投递): sends queued email and webhook deliveries.

A background thread of each instance claims due deliveries with ``FOR UPDATE
SKIP LOCKED`` and marks them ``sending`` under a lease (so two instances never
send the same one, and one that died mid-send is picked up after the lease),
sends them, and records the outcome of each on its own: ``sent``; ``retrying``
with exponential backoff; or ``parked`` in the dead-letter list after the last
try, with the error, for ops to read and retry over RPC.
"""
from __future__ import annotations

import logging

import eventlet
from eventlet.greenpool import GreenPool

from services.notifications import metrics
from services.notifications.channels import SendFailed, SmtpSender, WebhookSender
from services.notifications.domain import EMAIL, WEBHOOK, backoff_delay

log = logging.getLogger(__name__)


class DeliveryLoop:
    def __init__(self, app, settings: dict, instance: str):
        self.app = app
        self.instance = instance
        self.poll_interval = float(settings.get("poll_interval", 0.5))
        self.batch_size = int(settings.get("batch_size", 50))
        self.max_attempts = int(settings.get("max_attempts", 6))
        self.backoff_base = float(settings.get("backoff_base", 2.0))
        self.backoff_max = float(settings.get("backoff_max", 600))
        self.lease = float(settings.get("lease", 60))
        self.concurrency = int(settings.get("concurrency", 8))
        self.senders = {EMAIL: SmtpSender(app.config_section("smtp")),
                        WEBHOOK: WebhookSender(app.config_section("webhook"))}

    def claim(self) -> list[dict]:
        with self.app.transaction() as curs:
            curs.execute(
                "UPDATE deliveries SET status = 'sending', instance = %s, "
                "next_attempt_at = now() + make_interval(secs => %s) "
                "WHERE id IN (SELECT id FROM deliveries "
                "  WHERE status IN ('pending', 'retrying', 'sending') AND next_attempt_at <= now() "
                "  ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id", (self.instance, self.lease, self.batch_size))
            ids = [r["id"] for r in curs.fetchall()]
            if not ids:
                return []
            curs.execute(
                "SELECT d.id, d.event_id, d.recipient_id, d.channel, d.notice_type, d.address, "
                "d.attempts, n.subject, n.body, n.recipient_name, n.occurred_at "
                "FROM deliveries d JOIN notices n ON n.id = d.notice_id WHERE d.id = ANY(%s) "
                "ORDER BY d.id", (ids,))
            return list(curs.fetchall())

    def send_one(self, delivery: dict) -> str:
        channel, notice_type = delivery["channel"], delivery["notice_type"]
        sender = self.senders.get(channel)
        try:
            if sender is None:
                raise SendFailed(f"no sender for channel {channel!r}")
            sender.send(delivery)
        except Exception as exc:  # any failure of one send must not stop the loop
            error = str(exc) if isinstance(exc, SendFailed) else f"{type(exc).__name__}: {exc}"
            return self._failed(delivery, error)
        with self.app.transaction() as curs:
            curs.execute("UPDATE deliveries SET status = 'sent', attempts = attempts + 1, "
                         "sent_at = clock_timestamp(), last_error = NULL "
                         "WHERE id = %s AND status = 'sending' RETURNING sent_at",
                         (delivery["id"],))
            row = curs.fetchone()
        metrics.SENT.labels(channel, notice_type).inc()
        if row is not None:
            metrics.LATENCY.labels(channel, notice_type).observe(
                (row["sent_at"] - delivery["occurred_at"]).total_seconds())
        return "sent"

    def _failed(self, delivery: dict, error: str) -> str:
        channel, notice_type = delivery["channel"], delivery["notice_type"]
        attempts = int(delivery["attempts"]) + 1
        metrics.FAILED.labels(channel, notice_type).inc()
        if attempts >= self.max_attempts:
            status, delay = "parked", 0.0
        else:
            status, delay = "retrying", backoff_delay(attempts, self.backoff_base, self.backoff_max)
        with self.app.transaction() as curs:
            curs.execute(
                "UPDATE deliveries SET status = %s, attempts = %s, last_error = %s, "
                "next_attempt_at = now() + make_interval(secs => %s), "
                "parked_at = CASE WHEN %s = 'parked' THEN now() END "
                "WHERE id = %s AND status = 'sending'",
                (status, attempts, error[:2000], delay, status, delivery["id"]))
        (metrics.PARKED if status == "parked" else metrics.RETRYING).labels(
            channel, notice_type).inc()
        log.warning("delivery %s (%s to %s) failed, attempt %d: %s → %s", delivery["id"],
                    channel, delivery["recipient_id"], attempts, error, status)
        return status

    def step(self) -> int:
        batch = self.claim()
        if batch:
            pool = GreenPool(self.concurrency)
            list(pool.imap(self.send_one, batch))
        return len(batch)

    def run_forever(self, stopping: eventlet.event.Event):
        while not stopping.ready():
            try:
                if self.step():
                    continue  # more may be due: do not sleep between full batches
            except Exception:  # the database may be briefly away; keep the loop alive
                log.exception("delivery loop step failed")
            stopping.wait(self.poll_interval)
