"""Email and webhook delivery: a real SMTP server (aiosmtpd, in a child process so its
asyncio loop is clear of eventlet) and a real HTTP endpoint; retries, backoff, the
dead-letter list, and exactly one copy per notice and channel."""
import email
import email.policy
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import eventlet
import eventlet.wsgi
import pytest
import requests

from tests.conftest import free_port, wait_for
from tests.interface.test_notifications_rpc import (Publisher, build_tree, notifications_config,
                                                    wait_inbox)

SMTP_SINK = r"""
import json, sys, time, uuid
from pathlib import Path
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        out = Path(sys.argv[2]) / f"{time.time_ns()}-{uuid.uuid4().hex}.eml"
        out.write_bytes(envelope.original_content or envelope.content)
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
controller.stop()
"""


class SmtpServer:
    """A local SMTP server the test can start and stop; it keeps every message."""

    def __init__(self, port: int, maildir: Path):
        self.port, self.maildir, self.proc = port, maildir, None
        maildir.mkdir(exist_ok=True)

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SMTP_SINK, str(self.port),
                                      str(self.maildir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
            self.proc = None

    def messages(self) -> list:
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted(self.maildir.glob("*.eml"))]


@pytest.fixture
def smtp(tmp_path):
    server = SmtpServer(free_port(), tmp_path / "mail")
    yield server
    server.stop()


class WebhookEndpoint:
    """An HTTP endpoint that answers with the next scripted status (then 200)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.sock = eventlet.listen(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/robot/send"
        self.thread = eventlet.spawn(eventlet.wsgi.server, self.sock, self.app, log_output=False)

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append({"headers": {k: v for k, v in environ.items()
                                          if k.startswith("HTTP_")},
                              "body": body, "status": status})
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [json.dumps({"errcode": 0 if status == 200 else 500}).encode()]

    def accepted(self) -> list[dict]:
        return [r for r in self.requests if r["status"] == 200]

    def close(self):
        self.thread.kill()
        self.sock.close()


@pytest.fixture
def endpoint():
    created = []

    def make(statuses=()):
        created.append(WebhookEndpoint(statuses))
        return created[-1]

    yield make
    for e in created:
        e.close()


def rating_changed(ids, before, after):
    return {"org_id": ids["branch"], "org_name": "教工第一党支部", "stars_before": before,
            "stars_after": after, "score": 71.5, "cause": "年度考评", "scheme_version": 1,
            "cycle_id": "c1"}


def test_smtp_down_then_up_delivers_each_notice_once(start_service, rpc_as, rabbit_config,
                                                      smtp):
    start_service("organizations")
    start_service("notifications", **notifications_config(
        smtp={"host": "127.0.0.1", "port": smtp.port, "timeout": 2}))
    ids = build_tree(rpc_as)
    rpc_as("member", sub=ids["secretary"]).notifications.register_contact(
        recipient_id=ids["secretary"], name="张书记", email="zhang@example.edu")
    pub = Publisher(rabbit_config)
    rating = None
    for before, after in ((4, 3), (3, 4), (4, 5)):
        rating = pub.publish("rating_changed", rating_changed(ids, before, after),
                             originator_id=rating and rating["originator_id"])
    wait_inbox(rpc_as, ids["secretary"], 3)
    ops = rpc_as("ops").notifications
    # Nothing listens: every email fails and waits for another try.
    trace = wait_for(lambda: (t := [d for d in ops.list_deliveries(event_id=rating["event_id"])
                                    ["items"] if d["channel"] == "email"])
                     and t[0]["attempts"] >= 2 and t, message="failed attempts")
    assert trace[0]["status"] in ("retrying", "sending")
    assert "Connection refused" in trace[0]["error"] or "SMTP" in trace[0]["error"]
    smtp.start()
    wait_for(lambda: len(smtp.messages()) >= 3, timeout=15, message="three emails")
    eventlet.sleep(1.0)  # long enough for any duplicate to arrive
    messages = smtp.messages()
    assert len(messages) == 3
    subjects = sorted(m["subject"] for m in messages)
    assert "【星级变动】教工第一党支部：★★★★（4星） → ★★★（3星）" in subjects
    assert {m["to"].addresses[0].addr_spec for m in messages} == {"zhang@example.edu"}
    body = messages[0].get_body().get_content()
    assert "张书记同志" in body and "教工第一党支部" in body
    assert len({m["message-id"] for m in messages}) == 3
    done = ops.list_deliveries(event_id=rating["event_id"])["items"]
    assert {(d["channel"], d["status"]) for d in done} == {("inbox", "sent"), ("email", "sent")}


def test_webhook_failing_twice_then_succeeding_gets_the_notice_once(
        start_service, rpc_as, rabbit_config, endpoint):
    robot = endpoint(statuses=[500, 503])
    start_service("organizations")
    service = start_service("notifications", **notifications_config())
    ids = build_tree(rpc_as)
    admin = rpc_as("org_admin").notifications
    admin.register_contact(recipient_id="li.zzb", name="组织部李老师", kind="staff",
                           groups=["org_admin"], webhook_url=robot.url)
    pub = Publisher(rabbit_config)
    event = pub.publish("rating_fell_to_three_or_below", {
        "org_id": ids["branch"], "org_name": "教工第一党支部", "stars": 3, "previous_stars": 4,
        "rectification_due": "2027-01-31"})
    wait_for(lambda: robot.accepted(), timeout=15, message="webhook accepted")
    eventlet.sleep(1.0)
    assert [r["status"] for r in robot.requests] == [500, 503, 200]
    accepted = robot.accepted()
    assert len(accepted) == 1
    request = accepted[0]
    payload = json.loads(request["body"])
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["title"] == "【整改通知】教工第一党支部评定为3星级，请限期整改"
    assert payload["lianchuang"]["event_id"] == event["event_id"]
    timestamp = request["headers"]["HTTP_X_LIANCHUANG_TIMESTAMP"]
    expected = hmac.new(b"test-webhook-secret", timestamp.encode() + b"." + request["body"],
                        hashlib.sha256).hexdigest()
    assert request["headers"]["HTTP_X_LIANCHUANG_SIGNATURE"] == "sha256=" + expected
    hook = next(d for d in rpc_as("ops").notifications.list_deliveries(
        event_id=event["event_id"])["items"] if d["channel"] == "webhook")
    assert (hook["status"], hook["attempts"], hook["error"]) == ("sent", 3, None)
    metrics = requests.get(f"http://{service.config['WEB_SERVER_ADDRESS']}/metrics").text
    labels = '{channel="webhook",notice_type="rectification_required"}'
    assert f"lianchuang_notices_sent_total{labels}" in metrics
    assert f"lianchuang_notices_retrying_total{labels}" in metrics
    assert f"lianchuang_notice_delivery_latency_seconds_count{labels}" in metrics
    assert 'lianchuang_notices_unread ' in metrics


def test_last_failure_parks_with_the_error_and_ops_retry_it(start_service, rpc_as,
                                                            rabbit_config, endpoint):
    robot = endpoint(statuses=[500, 500])
    start_service("organizations")
    start_service("notifications", **notifications_config(delivery={"max_attempts": 2}))
    ids = build_tree(rpc_as)
    me = rpc_as("member", sub=ids["secretary"]).notifications
    me.register_contact(recipient_id=ids["secretary"], name="张书记", webhook_url=robot.url)
    # Preferences: webhook for returns only; nothing but the inbox for anything else.
    me.set_preferences(preferences={"assessment_returned": ["webhook"], "*": []})
    pub = Publisher(rabbit_config)
    pub.publish("rating_changed", rating_changed(ids, 4, 3))
    returned = pub.publish("assessment_returned", {
        "cycle_id": "c1", "org_id": ids["branch"], "stage": "self_assessment",
        "comments": "佐证材料不全"})
    ops = rpc_as("ops").notifications
    dead = wait_for(lambda: (d := ops.list_dead_letters(channel="webhook"))["total"] == 1 and d,
                    timeout=15)["items"][0]
    assert dead["event_id"] == returned["event_id"]
    assert dead["attempts"] == 2 and "webhook HTTP 500" in dead["error"]
    assert len(robot.requests) == 2  # the rating change went to the inbox only
    assert ops.retry_dead_letter(delivery_id=dead["delivery_id"])["status"] == "pending"
    wait_for(lambda: robot.accepted(), timeout=10, message="retried webhook accepted")
    assert json.loads(robot.accepted()[0]["body"])["markdown"]["title"] == \
        "【考评材料被退回】教工第一党支部 · 自评"
    assert ops.list_dead_letters()["total"] == 0
    assert me.unread_count() == {"unread": 2}


def test_a_send_left_unfinished_by_a_dead_instance_is_taken_over_after_its_lease(
        start_service, rpc_as, rabbit_config, smtp, clean_databases):
    import psycopg

    smtp.start()
    start_service("organizations")
    smtp_settings = {"host": "127.0.0.1", "port": smtp.port, "timeout": 2}
    start_service("notifications", INSTANCE="a", **notifications_config(
        smtp=smtp_settings, delivery={"enabled": False}))
    ids = build_tree(rpc_as)
    rpc_as("member", sub=ids["secretary"]).notifications.register_contact(
        recipient_id=ids["secretary"], name="张书记", email="zhang@example.edu")
    event = Publisher(rabbit_config).publish("rating_changed", rating_changed(ids, 4, 3))
    wait_inbox(rpc_as, ids["secretary"], 1)
    # Instance "a" claimed the email and died mid-send: its lease ran out a moment ago.
    with psycopg.connect(clean_databases["notifications"].conninfo(), autocommit=True) as conn:
        claimed = conn.execute(
            "UPDATE deliveries SET status = 'sending', instance = 'a', "
            "next_attempt_at = now() - interval '1 second' WHERE channel = 'email' "
            "RETURNING id").fetchall()
    assert len(claimed) == 1
    assert smtp.messages() == []  # "a" sends nothing: its delivery loop is off
    start_service("notifications", INSTANCE="b", **notifications_config(smtp=smtp_settings))
    wait_for(lambda: smtp.messages(), timeout=10, message="the email sent by instance b")
    eventlet.sleep(0.5)
    assert len(smtp.messages()) == 1
    email_row = next(d for d in rpc_as("ops").notifications.list_deliveries(
        event_id=event["event_id"])["items"] if d["channel"] == "email")
    assert (email_row["status"], email_row["attempts"]) == ("sent", 1)
