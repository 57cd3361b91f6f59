"""Notifications (通知): rules from events to notices, inbox, email and webhooks (issue 4).

* Events of other services arrive through an ``Inbox`` each (exactly once, in
  order per aggregate); the rules (``rules.yaml``) turn them into notices for
  recipients resolved from the service's own org directory (kept from the
  organizations service's events) and its contact registry (``Contact``).
* Every notice lands in the recipient's in-app inbox (站内信); email and webhook
  deliveries are queued in ``deliveries`` and sent by the delivery loop.
* org_admin (组织部) manages contacts and groups; each person manages their own
  contact details and channel preferences and reads only their own inbox; ops
  (信息资源中心) read and retry the dead-letter list.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import Field

from shared.commands import (BATCH_MAX, POSITION_MAX, Address, Command, Key, Name, Page,
                             Query, Reason, RequiredReason, text_type)
from shared.audit import AuditQueries
from shared.config import DatabaseSettings
from shared.consumer import APPLIED, Inbox
from shared.directory import DirectoryOperations, OrgDirectory
from shared.errors import Forbidden, NotFound, ValidationError
from shared.history import AuditedHistory, HistoryFilters
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller
from shared.parking import ParkingOperations
from shared.projection import Projector
from shared.store import EventSourcedApplication
from services.notifications import metrics
from services.notifications.domain import (CHANNELS, CONTACT_KINDS, Contact, RuleSet,
                                           contact_id_for, parse_rules)
from services.notifications.fanout import FanOut, lookups_of_a_batch, store_source_event
from services.notifications.projections import ContactsReadModel
from services.notifications.templates import Renderer

RULES_FILE = Path(__file__).with_name("rules.yaml")
# Sources whose events the rules speak of (the programme's task book and candidacies
# are evaluation's: services/evaluation/programme).
SOURCES = ("evaluation",)
STAFF_READERS = (ORG_ADMIN, OPS, AUDITOR)
Kind = Literal[tuple(CONTACT_KINDS)]  # type: ignore[valid-type]
Channel = Literal[tuple(CHANNELS)]  # type: ignore[valid-type]


def load_rules(path: Path | str = RULES_FILE) -> RuleSet:
    with open(path, encoding="utf-8") as f:
        return parse_rules(yaml.safe_load(f))


# -- commands ---------------------------------------------------------------
RecipientId = Key  # a member id, a staff number or ``role@org`` (at most 100 characters)
Groups = Annotated[list[Key], Field(max_length=20)]


class RegisterContact(Command):
    recipient_id: RecipientId
    name: Name
    kind: Kind = "member"
    email: Optional[Address] = None
    webhook_url: Optional[Address] = None
    groups: Groups = Field(default_factory=list)
    reason: Optional[Reason] = None


class UpdateContact(Command):
    recipient_id: RecipientId
    name: Optional[Name] = None
    email: Optional[Address] = None
    webhook_url: Optional[Address] = None
    groups: Optional[Groups] = None
    reason: Optional[Reason] = None


class SetPreferences(Command):
    recipient_id: Optional[RecipientId] = None
    preferences: Annotated[dict[Key, Annotated[list[Channel], Field(max_length=len(CHANNELS))]],
                           Field(max_length=100)]
    reason: Optional[Reason] = None


class DeactivateContact(Command):
    recipient_id: RecipientId
    reason: RequiredReason


class ContactHistory(HistoryFilters):
    recipient_id: RecipientId


CONTACT_LABELS = {"contact_registered": "登记联系人", "contact_changed": "联系人信息变更",
                  "contact_preferences_set": "通知偏好设置", "contact_deactivated": "停用联系人"}


class GetContact(Query):
    recipient_id: Optional[RecipientId] = None


class ListContacts(Query):
    group: Optional[Key] = None
    page: Page = 1
    page_size: int = Field(default=50, ge=1, le=500)


class ListInbox(Query):
    page: Page = 1
    page_size: int = Field(default=20, ge=1, le=200)
    unread_only: bool = False


class MarkRead(Command):
    notice_ids: Annotated[list[Annotated[int, Field(ge=1, le=POSITION_MAX)]],
                          Field(max_length=BATCH_MAX)] = Field(default_factory=list)
    all: bool = False


class ListDeadLetters(Query):
    channel: Optional[Channel] = None
    page: Page = 1
    page_size: int = Field(default=50, ge=1, le=500)


class RetryDeadLetter(Command):
    delivery_id: int = Field(ge=1, le=POSITION_MAX)


class ListDeliveries(Query):
    event_id: text_type(200, 1)


def _within(deadline, now: dt.datetime, horizon: dt.datetime) -> bool:
    """Is this deadline (ISO date or timestamp) still ahead but within the horizon?"""
    try:
        moment = dt.datetime.fromisoformat(str(deadline))
    except ValueError:
        return False  # a deadline we cannot read cannot be approaching
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return now < moment <= horizon


def _iso(value):
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def _row(row: dict) -> dict:
    return {k: _iso(v) for k, v in row.items()}


class NotificationsApplication(AuditedHistory, AuditQueries, ParkingOperations, DirectoryOperations,
                               EventSourcedApplication):
    name = "notifications"

    def __init__(self, settings: DatabaseSettings):
        super().__init__(settings)
        self.directory = OrgDirectory(self, service="notifications")
        self.read_model = ContactsReadModel()
        Projector(self, [self.read_model], service="notifications")
        self.inboxes = {source: Inbox(self, consumer=f"notifications.{source}",
                                      service="notifications", effect=self._apply_event)
                        for source in SOURCES}
        self.config: dict = {}
        self.instance = ""
        self.rules = load_rules()
        self.renderer = Renderer(self.rules)
        self.fanout = FanOut(self.rules, self.renderer)
        self.deadline_days = self.rules.deadline_days_before
        self.directory.listen(self._remake_notices_parked_for_a_role,
                               types=("organization_role_assigned",))

    def _remake_notices_parked_for_a_role(self, curs, envelope: dict) -> None:
        """A role filled (e.g. a new 书记): notices parked because no one held it
        are made again, now addressed, in the transaction that records the role."""
        if envelope["type"] != "organization_role_assigned":
            return
        designation = f"{envelope['data']['role']}@{envelope['originator_id']}"
        curs.execute("SELECT d.*, n.rule FROM deliveries d JOIN notices n ON n.id = d.notice_id "
                     "WHERE d.status = 'parked' AND d.channel = 'inbox' AND d.recipient_id = %s "
                     "ORDER BY d.id FOR UPDATE OF d", (designation,))
        for delivery in curs.fetchall():
            metrics.count(self._remake_inbox_notice(curs, delivery))

    def _remake_inbox_notice(self, curs, d: dict) -> list:
        """Make a parked inbox notice again from its stored event and rule."""
        curs.execute("SELECT envelope FROM source_events WHERE event_id = %s", (d["event_id"],))
        source = curs.fetchone()
        rule = self.rules.by_key(d["rule"])
        if source is None or rule is None:
            raise ValidationError.single(
                "delivery_id", "its event or rule is no longer known; cannot remake it")
        curs.execute("DELETE FROM notices WHERE id = %s", (d["notice_id"],))
        return self.fanout.apply(curs, source["envelope"], rule)

    def configure(self, config: dict, instance: str = "") -> None:
        """Apply ``NOTIFICATIONS`` settings: rules file, templates, deadline days."""
        self.config = dict(config.get("NOTIFICATIONS") or {})
        self.instance = instance
        if self.config.get("rules_file"):
            self.rules = load_rules(self.config["rules_file"])
        self.renderer = Renderer(self.rules, self.config.get("templates_dir"))
        self.fanout = FanOut(self.rules, self.renderer)
        days = self.config_section("deadline").get("days_before")
        self.deadline_days = float(days) if days not in (None, "") else \
            self.rules.deadline_days_before

    def config_section(self, name: str) -> dict:
        return dict(self.config.get(name) or {})

    # -- consuming events ------------------------------------------------------
    def on_event(self, envelope: dict, fill_gap=None) -> str:
        """Apply one event of another service: notices for whom the rules say."""
        source = envelope.get("source", "?")
        inbox = self.inboxes.get(source)
        if inbox is None:
            raise ValueError(f"no inbox for events of {source!r}")
        created: list[tuple] = []

        def effect(curs, env):
            created.clear()  # a retried effect starts again from nothing
            created.extend(self._effect(curs, env))

        outcome = inbox.handle(envelope, effect, fill_gap)
        if outcome == APPLIED:
            metrics.count(created)
        return outcome

    def on_events(self, envelopes: list[dict], fill_gap=None) -> list[str]:
        """A batch of another service's events (one source per batch, as a
        consumer's queue delivers them): ``Inbox.handle_batch``, the notices of
        those applied counted once the batch committed."""
        sources = sorted({str(e.get("source", "?")) for e in envelopes})
        inbox = self.inboxes.get(sources[0]) if len(sources) == 1 else None
        if inbox is None:
            raise ValueError(f"no inbox for a batch of events of {sources!r}")
        created: dict[str, list] = {}

        def effect(curs, env):
            # an effect tried again (the batch rolled back) starts from nothing
            created[env["event_id"]] = self._effect(curs, env)

        with lookups_of_a_batch():
            outcomes = inbox.handle_batch(envelopes, effect, fill_gap)
        for envelope, outcome in zip(envelopes, outcomes):
            if outcome == APPLIED:
                metrics.count(created.get(envelope["event_id"], []))
        return outcomes

    def _effect(self, curs, envelope: dict) -> list[tuple]:
        self._track(curs, envelope)
        return self._apply_rules(curs, envelope)

    def _apply_event(self, curs, envelope: dict) -> None:
        """A parked event applied again (ops' retry), with its notices counted."""
        metrics.count(self._effect(curs, envelope))

    def _apply_rules(self, curs, envelope: dict) -> list[tuple]:
        rules = self.rules.for_event(envelope["source"], envelope["type"],
                                     envelope.get("data") or {})
        if not rules:
            return []
        store_source_event(curs, envelope)
        created = []
        for rule in rules:
            created += self.fanout.apply(curs, envelope, rule)
        return created

    def _track(self, curs, envelope: dict) -> None:
        """Keep what the deadline timer needs: cycles, and who has submitted what."""
        if envelope["source"] != "evaluation":
            return
        d = envelope.get("data") or {}
        kind = envelope["type"]
        from psycopg.types.json import Jsonb

        if kind == "cycle_opened":
            curs.execute(
                "INSERT INTO eval_cycles (cycle_id, name, org_ids, deadlines, opened_at) "
                "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (cycle_id) DO UPDATE SET name = "
                "EXCLUDED.name, org_ids = EXCLUDED.org_ids, deadlines = EXCLUDED.deadlines",
                (envelope["originator_id"], str(d.get("name") or ""),
                 Jsonb([str(o) for o in d.get("org_ids") or []]),
                 Jsonb(d.get("deadlines") or {}), envelope["occurred_at"]))
        elif kind == "cycle_organization_added" and d.get("org_id"):
            curs.execute("UPDATE eval_cycles SET org_ids = org_ids || to_jsonb(%s::text) "
                         "WHERE cycle_id = %s AND NOT org_ids ? %s",
                         (str(d["org_id"]), envelope["originator_id"], str(d["org_id"])))
        elif kind == "cycle_organization_dropped" and d.get("org_id"):
            curs.execute("UPDATE eval_cycles SET org_ids = org_ids - %s WHERE cycle_id = %s",
                         (str(d["org_id"]), envelope["originator_id"]))
        elif kind == "assessment_submitted" and d.get("cycle_id") and d.get("org_id"):
            curs.execute(
                "INSERT INTO eval_submissions (cycle_id, org_id, stage, submitted_at) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (str(d["cycle_id"]), str(d["org_id"]), str(d.get("stage")),
                 envelope["occurred_at"]))
        elif kind == "assessment_deadline_extended" and d.get("cycle_id") and d.get("until"):
            # An organisation's own later deadline for a stage replaces the cycle's.
            curs.execute(
                "INSERT INTO eval_extensions (cycle_id, org_id, stage, until) VALUES (%s,%s,%s,%s) "
                "ON CONFLICT (cycle_id, org_id, stage) DO UPDATE SET until = EXCLUDED.until",
                (str(d["cycle_id"]), str(d["org_id"]), str(d.get("stage")), str(d["until"])))
        elif kind == "assessment_returned" and d.get("cycle_id") and d.get("org_id"):
            # Returned for changes: the stage is owed again.
            curs.execute("DELETE FROM eval_submissions WHERE cycle_id = %s AND org_id = %s "
                         "AND stage = %s", (str(d["cycle_id"]), str(d["org_id"]),
                                            str(d.get("stage"))))

    # -- the stage-deadline timer ----------------------------------------------
    def check_deadlines(self, now: dt.datetime | None = None) -> int:
        """Remind whoever has not yet submitted a stage due within N days.

        Each (cycle, stage, organisation, deadline) is claimed once by a unique
        key in the same transaction as its notices: a restart or a second
        instance running the same check finds the claim and does nothing.
        """
        now = now or dt.datetime.now(dt.timezone.utc)
        horizon = now + dt.timedelta(days=self.deadline_days)
        reminded = 0
        for cycle in self.query("SELECT * FROM eval_cycles"):
            extensions = {(r["org_id"], r["stage"]): r["until"] for r in self.query(
                "SELECT org_id, stage, until FROM eval_extensions WHERE cycle_id = %s",
                (cycle["cycle_id"],))}
            for stage, at in sorted((cycle["deadlines"] or {}).items()):
                if not self.rules.for_event("timer", "stage_deadline_approaching",
                                            {"stage": stage}):
                    continue
                submitted = {r["org_id"] for r in self.query(
                    "SELECT org_id FROM eval_submissions WHERE cycle_id = %s AND stage = %s",
                    (cycle["cycle_id"], stage))}
                for org_id in map(str, cycle["org_ids"]):
                    deadline = extensions.get((org_id, stage), at)
                    if org_id not in submitted and _within(deadline, now, horizon):
                        reminded += self._remind(cycle, stage, str(deadline), org_id, now)
        return reminded

    def _remind(self, cycle: dict, stage: str, deadline: str, org_id: str,
                now: dt.datetime) -> int:
        envelope = {
            "envelope_version": 1,
            "event_id": f"deadline:{cycle['cycle_id']}:{stage}:{org_id}:{deadline}",
            "type": "stage_deadline_approaching", "source": "timer",
            "aggregate_type": "Cycle", "originator_id": cycle["cycle_id"],
            "occurred_at": now.isoformat(), "actor": {"sub": "system", "role": "system"},
            "reason": None, "evidence": None,
            "data": {"cycle_id": cycle["cycle_id"], "cycle_name": cycle["name"], "stage": stage,
                     "deadline": deadline, "org_id": org_id},
        }
        with self.transaction() as curs:
            curs.execute(
                "INSERT INTO deadline_reminders (cycle_id, stage, org_id, deadline, instance) "
                "VALUES (%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING cycle_id",
                (cycle["cycle_id"], stage, org_id, deadline, self.instance))
            if curs.fetchone() is None:
                return 0  # reminded already (another instance, or before a restart)
            created = self._apply_rules(curs, envelope)
        metrics.count(created)
        return 1

    # -- contacts (联系人) ------------------------------------------------------
    def _may_manage_contact(self, caller: Caller, recipient_id: str, groups_changed: bool):
        if caller.role == ORG_ADMIN:
            return
        if groups_changed:
            raise Forbidden("only org_admin (组织部) assigns contact groups")
        if recipient_id != caller.sub:
            raise Forbidden("a person manages only their own contact details")

    def _contact(self, recipient_id: str) -> Contact:
        return self.load(contact_id_for(recipient_id), Contact, "contact")

    def register_contact(self, caller: Caller, payload: dict) -> dict:
        cmd = RegisterContact.parse(payload)
        self._may_manage_contact(caller, cmd.recipient_id, bool(cmd.groups))
        contact = Contact.register(cmd.recipient_id, cmd.name, cmd.kind, cmd.email,
                                   cmd.webhook_url, cmd.groups, caller.as_actor(), cmd.reason)
        if self.exists(contact.id):
            raise ValidationError.single("recipient_id",
                                         f"{contact.recipient_id} is already registered")
        return self.commit(contact, result=lambda: self.get_contact(caller, {"recipient_id": contact.recipient_id}))

    def update_contact(self, caller: Caller, payload: dict) -> dict:
        cmd = UpdateContact.parse(payload)
        changes = {k: getattr(cmd, k) for k in ("name", "email", "webhook_url", "groups")
                   if k in cmd.model_fields_set}
        self._may_manage_contact(caller, cmd.recipient_id, "groups" in changes)
        contact = self._contact(cmd.recipient_id)
        contact.change(caller.as_actor(), cmd.reason, **changes)
        return self.commit(contact, result=lambda: self.get_contact(caller, {"recipient_id": contact.recipient_id}))

    def set_preferences(self, caller: Caller, payload: dict) -> dict:
        cmd = SetPreferences.parse(payload)
        recipient_id = cmd.recipient_id or caller.sub
        self._may_manage_contact(caller, recipient_id, False)
        contact = self._contact(recipient_id)
        contact.set_preferences(cmd.preferences, self.rules.notice_types, caller.as_actor(),
                                cmd.reason)
        return self.commit(contact, result=lambda: self.get_contact(caller, {"recipient_id": recipient_id}))

    def deactivate_contact(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = DeactivateContact.parse(payload)
        contact = self._contact(cmd.recipient_id)
        contact.deactivate(caller.as_actor(), cmd.reason)
        return self.commit(contact, result=lambda: self.get_contact(caller, {"recipient_id": cmd.recipient_id}))

    def get_contact(self, caller: Caller, payload: dict) -> dict:
        recipient_id = GetContact.parse(payload).recipient_id or caller.sub
        if caller.role not in STAFF_READERS and recipient_id != caller.sub:
            raise Forbidden("a person reads only their own contact details")
        row = self.query_one("SELECT * FROM contacts WHERE recipient_id = %s", (recipient_id,))
        if row is None:
            raise NotFound(f"contact {recipient_id} not found")
        return _contact_out(row)

    def get_contact_history(self, caller: Caller, payload: dict) -> list[dict] | dict:
        """A contact's every change with actor and reason, contact details included
        (for 纪委办 auditors and 组织部; the bus never carries them), with Chinese
        labels, filtered by time and kind, as JSON, CSV or .xlsx; the read is
        recorded (``list_audit_reads``)."""
        caller.require_role(ORG_ADMIN, AUDITOR)
        cmd = ContactHistory.parse(payload)
        recipient_id = cmd.recipient_id.strip()
        filters = cmd.model_dump(mode="json", exclude={"recipient_id"}, exclude_none=True)
        return self.audited_history(caller, {"aggregate_id": contact_id_for(recipient_id),
                                             **filters}, CONTACT_LABELS, "contact",
                                    subject_id=recipient_id)

    def list_contacts(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(*STAFF_READERS)
        cmd = ListContacts.parse(payload)
        where, params = "", []
        if cmd.group:
            where, params = "WHERE %s = ANY(groups)", [cmd.group]
        total = self.query_one(f"SELECT count(*) AS n FROM contacts {where}", params)["n"]
        rows = self.query(f"SELECT * FROM contacts {where} ORDER BY name, recipient_id "
                          "LIMIT %s OFFSET %s",
                          [*params, cmd.page_size, (cmd.page - 1) * cmd.page_size])
        return {"page": cmd.page, "page_size": cmd.page_size, "total": int(total),
                "items": [_contact_out(r) for r in rows]}

    # -- the in-app inbox (站内信) ----------------------------------------------
    def list_inbox(self, caller: Caller, payload: dict) -> dict:
        """The caller's own notices, unread first, newest first within each."""
        cmd = ListInbox.parse(payload)
        where = "recipient_id = %s AND status = 'visible'" + (
            " AND read_at IS NULL" if cmd.unread_only else "")
        counts = self.query_one(
            "SELECT count(*) AS total, count(*) FILTER (WHERE read_at IS NULL) AS unread "
            f"FROM notices WHERE {where}", (caller.sub,))
        rows = self.query(
            "SELECT id, notice_type, event_type, subject, body, org_id, org_name, deadline, "
            f"occurred_at, created_at, read_at FROM notices WHERE {where} "
            "ORDER BY (read_at IS NOT NULL), created_at DESC, id DESC LIMIT %s OFFSET %s",
            (caller.sub, cmd.page_size, (cmd.page - 1) * cmd.page_size))
        items = []
        for r in rows:
            item = _row(r)
            item["title"] = self.rules.notice_types.get(r["notice_type"], {}).get("title")
            item["read"] = r["read_at"] is not None
            items.append(item)
        return {"page": cmd.page, "page_size": cmd.page_size, "total": int(counts["total"]),
                "unread": int(counts["unread"]), "items": items}

    def unread_count(self, caller: Caller) -> dict:
        row = self.query_one("SELECT count(*) AS n FROM notices WHERE recipient_id = %s "
                             "AND status = 'visible' AND read_at IS NULL", (caller.sub,))
        return {"unread": int(row["n"])}

    def mark_read(self, caller: Caller, payload: dict) -> dict:
        cmd = MarkRead.parse(payload)
        if not cmd.all and not cmd.notice_ids:
            raise ValidationError.single("notice_ids", "name the notices to mark, or all=true")
        with self.transaction() as curs:
            if cmd.all:
                curs.execute("UPDATE notices SET read_at = now() WHERE recipient_id = %s "
                             "AND status = 'visible' AND read_at IS NULL", (caller.sub,))
                marked = curs.rowcount
            else:
                curs.execute("SELECT id FROM notices WHERE id = ANY(%s) AND recipient_id = %s "
                             "AND status = 'visible'", (cmd.notice_ids, caller.sub))
                own = {r["id"] for r in curs.fetchall()}
                others = sorted(set(cmd.notice_ids) - own)
                if others:
                    # Someone else's notice is reported exactly like a missing one.
                    raise NotFound(f"notices not in your inbox: {others}")
                curs.execute("UPDATE notices SET read_at = now() WHERE id = ANY(%s) "
                             "AND read_at IS NULL", (cmd.notice_ids,))
                marked = curs.rowcount
        return {"marked": marked, **self.unread_count(caller)}

    # -- delivery: dead letters (死信) for ops ------------------------------------
    def list_dead_letters(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(OPS, ORG_ADMIN, AUDITOR)
        cmd = ListDeadLetters.parse(payload)
        where, params = "d.status = 'parked'", []
        if cmd.channel:
            where += " AND d.channel = %s"
            params.append(cmd.channel)
        total = self.query_one(f"SELECT count(*) AS n FROM deliveries d WHERE {where}",
                               params)["n"]
        rows = self.query(
            "SELECT d.id AS delivery_id, d.channel, d.notice_type, d.recipient_id, d.event_id, "
            "d.address, d.attempts, d.last_error AS error, d.parked_at, n.id AS notice_id, "
            "n.event_type, n.subject, n.org_name FROM deliveries d JOIN notices n "
            f"ON n.id = d.notice_id WHERE {where} ORDER BY d.parked_at, d.id LIMIT %s OFFSET %s",
            [*params, cmd.page_size, (cmd.page - 1) * cmd.page_size])
        return {"page": cmd.page, "page_size": cmd.page_size, "total": int(total),
                "items": [_row(r) for r in rows]}

    def retry_dead_letter(self, caller: Caller, payload: dict) -> dict:
        """Try a parked delivery again. An email or webhook is queued afresh (with
        the address now registered); a notice that could not be made (unknown
        recipient, template error) is made again from the stored event."""
        caller.require_role(OPS)
        cmd = RetryDeadLetter.parse(payload)
        created: list[tuple] = []
        with self.transaction() as curs:
            curs.execute("SELECT d.*, n.rule FROM deliveries d JOIN notices n "
                         "ON n.id = d.notice_id WHERE d.id = %s FOR UPDATE OF d",
                         (cmd.delivery_id,))
            d = curs.fetchone()
            if d is None:
                raise NotFound(f"delivery {cmd.delivery_id} not found")
            if d["status"] != "parked":
                raise ValidationError.single("delivery_id",
                                             f"is {d['status']}, not parked (dead-lettered)")
            if d["channel"] == "inbox":
                created = self._remake_inbox_notice(curs, d)
                rule = self.rules.by_key(d["rule"])
                curs.execute(
                    "SELECT d.id AS delivery_id, n.recipient_id, n.status, n.error FROM notices n "
                    "JOIN deliveries d ON d.notice_id = n.id AND d.channel = 'inbox' "
                    "WHERE n.event_id = %s AND n.rule = %s ORDER BY n.id",
                    (d["event_id"], rule.key))
                result = {"delivery_id": cmd.delivery_id, "channel": "inbox",
                          "notices": [_row(r) for r in curs.fetchall()]}
            else:
                column = "email" if d["channel"] == "email" else "webhook_url"
                curs.execute(f"SELECT {column} AS address FROM contacts "
                             "WHERE recipient_id = %s AND active", (d["recipient_id"],))
                contact = curs.fetchone()
                address = (contact or {}).get("address") or d["address"]
                curs.execute(
                    "UPDATE deliveries SET status = 'pending', attempts = 0, address = %s, "
                    "next_attempt_at = now(), parked_at = NULL WHERE id = %s "
                    "RETURNING id AS delivery_id, channel, status, address, last_error",
                    (address, cmd.delivery_id))
                result = _row(curs.fetchone())
        metrics.count(created)
        return result

    def list_deliveries(self, caller: Caller, payload: dict) -> dict:
        """Every notice and delivery one event caused (for ops tracing a complaint)."""
        caller.require_role(OPS, ORG_ADMIN, AUDITOR)
        cmd = ListDeliveries.parse(payload)
        rows = self.query(
            "SELECT d.id AS delivery_id, d.channel, d.status, d.attempts, d.last_error AS error, "
            "d.address, d.sent_at, d.recipient_id, d.notice_type, n.id AS notice_id, "
            "n.status AS notice_status FROM deliveries d JOIN notices n ON n.id = d.notice_id "
            "WHERE d.event_id = %s ORDER BY d.recipient_id, d.channel", (cmd.event_id,))
        return {"event_id": cmd.event_id, "items": [_row(r) for r in rows]}

    # -- ops ---------------------------------------------------------------------
    def consumer_status(self, caller: Caller) -> dict:
        """What this service has applied of other services' events (for ops)."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        status = {"org_directory": self.directory.status()}
        for source, inbox in self.inboxes.items():
            row = self.query_one(
                "SELECT count(*) AS aggregates, coalesce(sum(last_version), 0) AS events "
                "FROM inbox_positions WHERE consumer = %s", (inbox.consumer,))
            status[source] = {"aggregates": int(row["aggregates"]), "events": int(row["events"]),
                              "failures": [_row(f) for f in inbox.failures()],
                              "parked": inbox.status()}
        status["read_models"] = {"parked": self.projector.parking.summary()}
        return status

    def business_gauges(self) -> list[dict]:
        rows = self.query("SELECT channel, notice_type, status, count(*) AS n FROM deliveries "
                          "WHERE status <> 'sent' GROUP BY channel, notice_type, status")
        unread = self.query_one("SELECT count(*) AS n FROM notices "
                                "WHERE status = 'visible' AND read_at IS NULL")["n"]
        return [
            {"name": "lianchuang_notice_deliveries", "labels": ["channel", "notice_type", "status"],
             "help": "Deliveries not yet sent: pending, sending, retrying, parked (dead letters)",
             "samples": [((r["channel"], r["notice_type"], r["status"]), r["n"]) for r in rows]},
            {"name": "lianchuang_notices_unread", "labels": [],
             "help": "Inbox notices not yet read", "samples": [((), unread)]},
        ]


def _contact_out(row: dict) -> dict:
    return {"recipient_id": row["recipient_id"], "name": row["name"], "kind": row["kind"],
            "email": row["email"], "webhook_url": row["webhook_url"],
            "groups": list(row["groups"] or []), "preferences": row["preferences"] or {},
            "active": row["active"], "updated_at": _iso(row["updated_at"])}
