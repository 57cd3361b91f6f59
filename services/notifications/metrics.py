"""Notification metrics (process-wide registry), by channel and notice type.

Counted after the transaction that made the change committed, so a rolled-back
attempt is never counted. Current backlog (pending, retrying, parked) is read
from the tables at scrape time (``NotificationsApplication.business_gauges``).
"""
from prometheus_client import Counter, Histogram

LABELS = ["channel", "notice_type"]
CREATED = Counter("lianchuang_notices_created_total",
                  "Deliveries created (one per notice and channel)", LABELS)
SENT = Counter("lianchuang_notices_sent_total",
               "Deliveries completed (inbox: shown; email/webhook: accepted)", LABELS)
FAILED = Counter("lianchuang_notices_failed_total", "Failed send attempts", LABELS)
RETRYING = Counter("lianchuang_notices_retrying_total",
                   "Failed sends scheduled for another try (with backoff)", LABELS)
PARKED = Counter("lianchuang_notices_parked_total",
                 "Deliveries parked in the dead-letter list", LABELS)
LATENCY = Histogram("lianchuang_notice_delivery_latency_seconds",
                    "From the event's time to the send (inbox: to the notice's creation)", LABELS,
                    buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))


def count(created: list[tuple]) -> None:
    """Count what ``FanOut.apply`` created: (channel, notice type, what, latency)."""
    for channel, notice_type, what, latency in created:
        {"created": CREATED, "sent": SENT, "parked": PARKED}[what].labels(
            channel, notice_type).inc()
        if latency is not None:
            LATENCY.labels(channel, notice_type).observe(latency)
