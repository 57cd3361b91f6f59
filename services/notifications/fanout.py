"""From an event to notices (通知) and deliveries: recipients resolved from the
service's own org directory and contact registry, text from the templates.

Runs inside the transaction that records the event as applied, so an event
redelivered by RabbitMQ finds its notices already there (and the unique keys
would refuse a second copy anyway). A recipient that cannot be resolved or a
template that cannot be rendered parks the notice with the reason — the
consumer carries on with the next event.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from psycopg.types.json import Jsonb

from services.notifications.domain import (EMAIL, INBOX, WEBHOOK, Rule, RuleSet, Selector,
                                           as_list, channels_for, lookup)
from services.notifications.templates import Renderer, TemplateProblem, format_when

VISIBLE, PARKED, SUPERSEDED = "visible", "parked", "superseded"


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str
    org_id: str | None = None


@dataclass(frozen=True)
class Unresolved:
    designation: str
    error: str
    org_id: str | None = None


# Directory and contact lookups of the batch being applied (``lookups_of_a_batch``):
# a batch's events name the same organisations, role holders and contacts again
# and again, and each lookup is a round trip inside the batch's transaction.
_LOOKUPS: ContextVar[dict | None] = ContextVar("notification_lookups", default=None)


@contextlib.contextmanager
def lookups_of_a_batch():
    """Within it, each distinct directory or contact lookup of this green thread
    runs once (what it read stands for the batch, a fraction of a second, as a
    snapshot would; the tables it reads change in other transactions)."""
    token = _LOOKUPS.set({})
    try:
        yield
    finally:
        _LOOKUPS.reset(token)


def _select(curs, statement: str, params: tuple, one: bool):
    memo = _LOOKUPS.get()
    key = (statement, params, one)
    if memo is not None and key in memo:
        return memo[key]
    curs.execute(statement, params)
    found = curs.fetchone() if one else curs.fetchall()
    if memo is not None:
        memo[key] = found
    return found


def select_one(curs, statement: str, params: tuple) -> dict | None:
    return _select(curs, statement, params, True)


def select_all(curs, statement: str, params: tuple) -> list[dict]:
    return _select(curs, statement, params, False)


class FanOut:
    def __init__(self, rules: RuleSet, renderer: Renderer):
        self.rules = rules
        self.renderer = renderer

    # -- recipients ------------------------------------------------------------
    def resolve(self, curs, selector: Selector, data: dict) -> list[Recipient | Unresolved]:
        if selector.kind == "role":
            return self._role_holders(curs, selector, data)
        if selector.kind == "members":
            return self._members(curs, selector, data)
        if selector.kind == "group":
            return self._group(curs, selector, data)
        if selector.kind == "reviewer":
            return self._reviewers(curs, selector, data)
        return self._person(curs, selector, data)

    def _org_name(self, curs, org_id) -> str | None:
        if _uuid(org_id) is None:
            return None
        row = select_one(curs, "SELECT name FROM dir_orgs WHERE id = %s", (_uuid(org_id),))
        return row["name"] if row else None

    def _role_holders(self, curs, sel: Selector, data: dict) -> list:
        found = []
        for org_id in as_list(lookup(data, sel.path)):
            org_id = str(org_id)
            target = org_id
            if sel.college:
                row = None
                if _uuid(org_id) is not None:
                    row = select_one(curs, "SELECT level, parent_id FROM dir_orgs WHERE id = %s",
                                     (_uuid(org_id),))
                if row is None:
                    found.append(Unresolved(f"{sel.role}@college_of:{org_id}",
                                            f"unknown recipient: organisation {org_id} is not in "
                                            "the directory", org_id))
                    continue
                # A branch's college is its parent; a college is its own.
                target = str(row["parent_id"]) if row["level"] == 3 else org_id
            rows = []
            if _uuid(target) is not None:
                rows = select_all(
                    curs, "SELECT m.id::text AS id, m.name FROM dir_roles r JOIN dir_members m "
                    "ON m.id = r.member_id WHERE r.org_id = %s AND r.role = %s AND m.active "
                    "ORDER BY m.name", (_uuid(target), sel.role))
            if not rows:
                name = self._org_name(curs, target)
                where = f"'{name}'" if name else f"organisation {target} (not in the directory)"
                found.append(Unresolved(f"{sel.role}@{target}",
                                        f"unknown recipient: no one holds the role {sel.role} "
                                        f"in {where}", org_id))
            # The notice is about the organisation named in the event, not the college.
            found.extend(Recipient(r["id"], r["name"], org_id) for r in rows)
        return found

    def _reviewers(self, curs, sel: Selector, data: dict) -> list:
        """Whoever reviews (审核) the organisation's assessment: a branch (level 3)
        is reviewed by its college's secretary; a college (level 2) and the
        committee by 组织部, so its contacts in the org_admin group are told,
        not the organisation being reviewed."""
        found = []
        for org_id in as_list(lookup(data, sel.path)):
            org_id = str(org_id)
            row = None
            if _uuid(org_id) is not None:
                row = select_one(curs, "SELECT level FROM dir_orgs WHERE id = %s",
                                 (_uuid(org_id),))
            if row is None:
                found.append(Unresolved(f"reviewer:{org_id}",
                                        f"unknown recipient: organisation {org_id} is not in "
                                        "the directory", org_id))
            elif row["level"] == 3:
                found.extend(self._role_holders(
                    curs, Selector("role", path="org_id", role="secretary", college=True),
                    {"org_id": org_id}))
            else:
                found.extend(r if isinstance(r, Unresolved) else Recipient(r.id, r.name, org_id)
                             for r in self._group(curs, Selector("group", group="org_admin"),
                                                  data))
        return found

    def _members(self, curs, sel: Selector, data: dict) -> list:
        found = []
        for org_id in as_list(lookup(data, sel.path)):
            if _uuid(org_id) is None:
                continue  # not an organisation id: no members to tell
            # An empty branch is not an error: there is simply no one to tell.
            found.extend(Recipient(r["id"], r["name"], str(org_id)) for r in select_all(
                curs, "SELECT id::text AS id, name FROM dir_members WHERE active AND "
                "(branch_id = %s OR branch_id IN (SELECT id FROM dir_orgs WHERE parent_id = %s)) "
                "ORDER BY name", (_uuid(org_id), _uuid(org_id))))
        return found

    def _group(self, curs, sel: Selector, data: dict) -> list:
        try:
            group = sel.group.format_map({k: v for k, v in data.items() if v is not None})
        except (KeyError, ValueError) as exc:
            return [Unresolved(f"group:{sel.group}",
                               f"unknown recipient: the event lacks {exc} to name the group")]
        rows = select_all(curs, "SELECT recipient_id, name FROM contacts WHERE active "
                                "AND %s = ANY(groups) ORDER BY name", (group,))
        if not rows:
            return [Unresolved(f"group:{group}",
                               f"unknown recipient: no active contact in group {group}")]
        return [Recipient(r["recipient_id"], r["name"]) for r in rows]

    def _person(self, curs, sel: Selector, data: dict) -> list:
        person = lookup(data, sel.path)
        if not person:
            return [Unresolved(f"person:{sel.path}",
                               f"unknown recipient: the event names no {sel.path}")]
        person = str(person)
        row = None
        if _uuid(person) is not None:
            row = select_one(curs, "SELECT id::text AS id, name FROM dir_members "
                                   "WHERE id = %s AND active", (_uuid(person),))
        if row is None:
            row = select_one(curs, "SELECT recipient_id AS id, name FROM contacts "
                                   "WHERE recipient_id = %s AND active", (person,))
        if row is None:
            return [Unresolved(person, f"unknown recipient: {person} is neither an active member "
                                       "nor a registered contact")]
        return [Recipient(row["id"], row["name"])]

    # -- notices -----------------------------------------------------------------
    def apply(self, curs, envelope: dict, rule: Rule) -> list[tuple]:
        """Create the rule's notices and deliveries for one event.

        Returns what was created as ``(channel, notice_type, status, latency_seconds)``
        for the caller to count once the transaction committed.
        """
        data = envelope.get("data") or {}
        occurred_at = envelope["occurred_at"]
        seen: set[str] = set()
        created: list[tuple] = []
        for selector in rule.selectors:
            for target in self.resolve(curs, selector, data):
                key = target.id if isinstance(target, Recipient) else target.designation
                if key in seen:  # the same person through two selectors: one notice
                    continue
                seen.add(key)
                created += self._notice(curs, envelope, rule, data, target, occurred_at)
        return created

    def _context(self, curs, envelope: dict, rule: Rule, data: dict, target) -> dict:
        org_id = target.org_id or next(iter(as_list(lookup(data, rule.org))), None)
        org_name = None
        if org_id is not None:
            org_name = self._org_name(curs, org_id)
            if org_name is None and str(lookup(data, "org_id")) == str(org_id):
                org_name = data.get("org_name")
        deadline = lookup(data, rule.deadline) if rule.deadline else None
        return {
            "notice_type": rule.notice,
            "title": self.rules.notice_types[rule.notice]["title"],
            "data": data,
            # An unresolved target is parked before rendering; its name is never shown.
            "recipient_name": target.name if isinstance(target, Recipient) else "",
            "org_id": str(org_id) if org_id else None,
            "org_name": org_name or data.get("org_name") or "（未知组织）",
            "deadline": format_when(deadline) if deadline else "（未设定）",
            "deadline_raw": deadline,
            "actor": envelope.get("actor") or {},
            "reason": envelope.get("reason"),
            "occurred_at": format_when(envelope.get("occurred_at")),
        }

    def _notice(self, curs, envelope, rule: Rule, data, target, occurred_at) -> list[tuple]:
        ctx = self._context(curs, envelope, rule, data, target)
        subject = body = ""
        if isinstance(target, Unresolved):
            status, error = PARKED, target.error
        else:
            try:
                subject, body = self.renderer.render(rule.notice, ctx)
                status, error = VISIBLE, None
            except TemplateProblem as exc:
                status, error = PARKED, f"template error: {exc}"
        recipient_id = target.id if isinstance(target, Recipient) else target.designation
        curs.execute(
            "INSERT INTO notices (event_id, source, event_type, rule, notice_type, recipient_id, "
            "recipient_name, org_id, org_name, subject, body, deadline, status, error, occurred_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (event_id, recipient_id, notice_type) DO NOTHING "
            "RETURNING id, created_at",
            (envelope["event_id"], envelope["source"], envelope["type"], rule.key, rule.notice,
             recipient_id, ctx["recipient_name"] or None, ctx["org_id"], ctx["org_name"],
             subject, body, None if ctx["deadline_raw"] is None else str(ctx["deadline_raw"]),
             status, error, occurred_at))
        row = curs.fetchone()
        if row is None:  # already notified for this event: a redelivery
            return []
        latency = (row["created_at"] - _parse_ts(occurred_at)).total_seconds()
        # The inbox delivery is done by the insert itself (or parked with the notice).
        curs.execute(
            "INSERT INTO deliveries (notice_id, event_id, recipient_id, channel, notice_type, "
            "status, attempts, last_error, sent_at, parked_at) VALUES "
            "(%s,%s,%s,'inbox',%s,%s,1,%s, CASE WHEN %s THEN clock_timestamp() END, "
            "CASE WHEN %s THEN clock_timestamp() END)",
            (row["id"], envelope["event_id"], recipient_id, rule.notice,
             "sent" if status == VISIBLE else "parked", error,
             status == VISIBLE, status != VISIBLE))
        created = [(INBOX, rule.notice, "created", None),
                   (INBOX, rule.notice, "sent" if status == VISIBLE else "parked",
                    latency if status == VISIBLE else None)]
        if status == VISIBLE:
            created += self.outbound(curs, row["id"], envelope["event_id"], recipient_id,
                                     rule.notice)
        return created

    def outbound(self, curs, notice_id, event_id, recipient_id, notice_type) -> list[tuple]:
        """Queue email and webhook deliveries the person wants and has an address for."""
        contact = select_one(curs, "SELECT email, webhook_url, preferences FROM contacts "
                                   "WHERE recipient_id = %s AND active", (recipient_id,))
        if contact is None:
            return []
        wanted = channels_for(contact["preferences"], notice_type,
                              list(self.rules.default_channels))
        addresses = {EMAIL: contact["email"], WEBHOOK: contact["webhook_url"]}
        created = []
        for channel in (EMAIL, WEBHOOK):
            if channel in wanted and addresses[channel]:
                curs.execute(
                    "INSERT INTO deliveries (notice_id, event_id, recipient_id, channel, "
                    "notice_type, address, status) VALUES (%s,%s,%s,%s,%s,%s,'pending') "
                    "ON CONFLICT DO NOTHING RETURNING id",
                    (notice_id, event_id, recipient_id, channel, notice_type, addresses[channel]))
                if curs.fetchone() is not None:
                    created.append((channel, notice_type, "created", None))
        return created


def store_source_event(curs, envelope: dict) -> None:
    curs.execute("INSERT INTO source_events (event_id, source, type, envelope) "
                 "VALUES (%s,%s,%s,%s) ON CONFLICT (event_id) DO NOTHING",
                 (envelope["event_id"], envelope["source"], envelope["type"], Jsonb(envelope)))


def _uuid(value) -> UUID | None:
    """An id from event data as a UUID, or None when it is not one (then it names no
    organisation or member: the lookup finds nothing instead of failing the event)."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        return None


def _parse_ts(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    moment = dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
