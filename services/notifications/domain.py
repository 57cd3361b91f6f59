"""Notifications (通知): the contact registry aggregate and the pure rules, pure of I/O.

* ``Contact`` (联系人): a person who receives notices — a Party member (党员,
  ``recipient_id`` = member id) or a staff member (工作人员, e.g. 组织部 staff or a
  functional department's contact, ``recipient_id`` = their login) — with an
  email address, a webhook (e.g. an enterprise-chat robot, 企业微信/钉钉机器人),
  groups (``org_admin``, ``department:<code>``) and channel preferences.
* ``RuleSet``: which event becomes which notice type (通知类型) for whom, read from
  ``rules.yaml`` (data, not code branches) and checked when the service starts.

Public methods check invariants and raise ``ValidationError`` naming the field;
the ``@event`` methods they call only record what happened.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, require
from shared.envelope import personal_data
from shared.errors import ValidationError

INBOX, EMAIL, WEBHOOK = "inbox", "email", "webhook"
# 站内信, 电子邮件, 机器人 webhook
CHANNELS = {INBOX: "站内信", EMAIL: "电子邮件", WEBHOOK: "Webhook 机器人"}
CONTACT_KINDS = {"member": "党员", "staff": "工作人员"}
# A group a contact belongs to: org_admin (组织部) or a department (职能部门), e.g.
# "department:organization"; rules name groups, so they are free-form data.
GROUP_RE = re.compile(r"^[a-z][a-z0-9_]*(:[a-z0-9_]+)?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
WILDCARD = "*"
MAX_NAME = 100


def contact_id_for(recipient_id: str) -> UUID:
    """One contact per recipient: registering twice is a version conflict, not a twin."""
    return derived_id("notification-contact", recipient_id)


def clean_email(value) -> str | None:
    if value in (None, ""):
        return None
    require(isinstance(value, str) and bool(EMAIL_RE.match(value.strip())), "email",
            f"not an email address: {value!r}")
    return value.strip()


def clean_webhook(value) -> str | None:
    if value in (None, ""):
        return None
    require(isinstance(value, str) and value.strip().startswith(("http://", "https://")),
            "webhook_url", f"must be an http(s) URL: {value!r}")
    return value.strip()


def clean_groups(groups) -> list[str]:
    groups = list(groups or [])
    for g in groups:
        require(isinstance(g, str) and bool(GROUP_RE.match(g)), "groups",
                f"not a group name (e.g. org_admin, department:organization): {g!r}")
    return sorted(set(groups))


def clean_preferences(preferences, notice_types) -> dict[str, list[str]]:
    """``{notice type or "*": [channels]}``; the inbox (站内信) always receives."""
    require(isinstance(preferences, dict), "preferences", "must be a mapping notice type → channels")
    cleaned = {}
    for notice_type, channels in preferences.items():
        require(notice_type == WILDCARD or notice_type in notice_types, "preferences",
                f"unknown notice type {notice_type!r}; one of *, {', '.join(sorted(notice_types))}")
        require(isinstance(channels, (list, tuple)), f"preferences.{notice_type}",
                "must be a list of channels")
        for channel in channels:
            require(channel in CHANNELS, f"preferences.{notice_type}",
                    f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
        cleaned[notice_type] = sorted(set(channels) | {INBOX})
    return cleaned


# Contact details never leave this service: no other service needs them
# (docs/events.md); the auditors' history keeps them.
@personal_data(Registered=("name", "email", "webhook_url"),
               Changed=("changes.name", "changes.email", "changes.webhook_url"))
class Contact(Aggregate):
    """联系人: where and how a person receives notices."""

    id: UUID

    @event("Registered")
    def __init__(self, recipient_id: str, name: str, kind: str, email: str | None,
                 webhook_url: str | None, groups: list, actor: dict, reason: str | None = None):
        self.recipient_id = recipient_id
        self.name = name
        self.kind = kind
        self.email = email
        self.webhook_url = webhook_url
        self.groups = list(groups)
        self.preferences: dict[str, list[str]] = {}
        self.active = True

    @classmethod
    def register(cls, recipient_id, name, kind, email, webhook_url, groups, actor: dict,
                 reason: str | None = None) -> "Contact":
        require(isinstance(recipient_id, str) and 0 < len(recipient_id.strip()) <= 100,
                "recipient_id", "must be a member id or a staff login (1-100 characters)")
        recipient_id = recipient_id.strip()
        require(kind in CONTACT_KINDS, "kind", f"one of {', '.join(CONTACT_KINDS)}")
        if kind == "member":
            try:
                recipient_id = str(UUID(recipient_id))
            except ValueError:
                raise ValidationError.single(
                    "recipient_id", "a member contact is keyed by the member id (UUID)")
        name = " ".join(str(name or "").split())
        require(0 < len(name) <= MAX_NAME, "name", f"1-{MAX_NAME} characters")
        return cls(id=contact_id_for(recipient_id), recipient_id=recipient_id, name=name,
                   kind=kind, email=clean_email(email), webhook_url=clean_webhook(webhook_url),
                   groups=clean_groups(groups), actor=actor, reason=reason)

    def change(self, actor: dict, reason: str | None = None, **changes: Any) -> None:
        """Change name, email, webhook_url or groups; only what differs is recorded."""
        require(self.active, "recipient_id", f"{self.name} is deactivated")
        cleaned = {}
        if "name" in changes:
            name = " ".join(str(changes["name"] or "").split())
            require(0 < len(name) <= MAX_NAME, "name", f"1-{MAX_NAME} characters")
            cleaned["name"] = name
        if "email" in changes:
            cleaned["email"] = clean_email(changes["email"])
        if "webhook_url" in changes:
            cleaned["webhook_url"] = clean_webhook(changes["webhook_url"])
        if "groups" in changes:
            cleaned["groups"] = clean_groups(changes["groups"])
        cleaned = {k: v for k, v in cleaned.items() if getattr(self, k) != v}
        require(bool(cleaned), "changes", "nothing differs from the current contact")
        self._changed(changes=cleaned, actor=actor, reason=reason)

    @event("Changed")
    def _changed(self, changes: dict, actor: dict, reason: str | None):
        for key, value in changes.items():
            setattr(self, key, value)

    def set_preferences(self, preferences, notice_types, actor: dict,
                        reason: str | None = None) -> None:
        require(self.active, "recipient_id", f"{self.name} is deactivated")
        preferences = clean_preferences(preferences, notice_types)
        self._preferences_set(preferences=preferences, actor=actor, reason=reason)

    @event("PreferencesSet")
    def _preferences_set(self, preferences: dict, actor: dict, reason: str | None):
        self.preferences = preferences

    def deactivate(self, actor: dict, reason: str | None) -> None:
        require(self.active, "recipient_id", f"{self.name} is already deactivated")
        require(bool(reason), "reason", "a deactivation needs a reason")
        self._deactivated(actor=actor, reason=reason)

    @event("Deactivated")
    def _deactivated(self, actor: dict, reason: str | None):
        self.active = False


def channels_for(preferences: dict | None, notice_type: str, default: list[str]) -> list[str]:
    """The channels a person wants for a notice type: their choice for that type,
    else their ``*`` choice, else the service default; the inbox always."""
    preferences = preferences or {}
    chosen = preferences.get(notice_type, preferences.get(WILDCARD, default))
    return sorted(set(chosen) | {INBOX})


# -- rules (规则) ------------------------------------------------------------------
SELECTOR_KINDS = ("role", "members", "group", "person", "reviewer")


@dataclass(frozen=True)
class Selector:
    """Who receives: holders of a role in an organisation (or in its college),
    the members of an organisation, a contact group, one named person, or the
    reviewer (审核) of an organisation's assessment: a branch's college secretary,
    组织部 (the org_admin group) for a college or the committee."""

    kind: str
    path: str = ""  # data path naming the organisation(s) or the person
    role: str = ""
    college: bool = False  # role holders in the college (二级学院党组织) of the org
    group: str = ""  # may hold {field} placeholders filled from the event data

    @property
    def designation(self) -> str:
        if self.kind == "role":
            return f"{self.role}@{'college_of:' if self.college else ''}{self.path}"
        if self.kind == "group":
            return f"group:{self.group}"
        return f"{self.kind}:{self.path}"


@dataclass(frozen=True)
class Rule:
    key: str
    source: str
    event: str
    notice: str
    selectors: tuple[Selector, ...]
    org: str = ""  # data path of the organisation(s) the notice is about
    deadline: str = ""  # data path of the deadline shown
    when: dict = field(default_factory=dict)

    def matches(self, data: dict) -> bool:
        return all(lookup(data, k) == v for k, v in self.when.items())


@dataclass(frozen=True)
class RuleSet:
    notice_types: dict  # type -> {"title": Chinese title}
    rules: tuple[Rule, ...]
    stages: dict  # stage -> Chinese name
    labels: dict  # kind -> {code: Chinese label}
    deadline_days_before: float
    default_channels: tuple[str, ...]

    def for_event(self, source: str, event_type: str, data: dict) -> list[Rule]:
        return [r for r in self.rules
                if r.source == source and r.event == event_type and r.matches(data)]

    def by_key(self, key: str) -> Rule | None:
        return next((r for r in self.rules if r.key == key), None)


class RulesError(ValueError):
    """rules.yaml is malformed: the service refuses to start rather than misroute."""


def _selector(raw: dict, where: str) -> Selector:
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: a recipient selector must be a mapping")
    if "role" in raw:
        if ("org" in raw) == ("college_of" in raw):
            raise RulesError(f"{where}: a role selector needs exactly one of org, college_of")
        return Selector("role", path=str(raw.get("org") or raw.get("college_of")),
                        role=str(raw["role"]), college="college_of" in raw)
    if "members" in raw:
        return Selector("members", path=str(raw["members"]))
    if "group" in raw:
        return Selector("group", group=str(raw["group"]))
    if "person" in raw:
        return Selector("person", path=str(raw["person"]))
    if "reviewer" in raw:
        return Selector("reviewer", path=str(raw["reviewer"]))
    raise RulesError(f"{where}: unknown selector {raw!r}; one of {', '.join(SELECTOR_KINDS)}")


def parse_rules(raw: dict) -> RuleSet:
    """Check and load the rules data; every mistake names where it is."""
    if not isinstance(raw, dict):
        raise RulesError("rules data must be a mapping")
    notice_types = raw.get("notice_types") or {}
    if not isinstance(notice_types, dict) or not notice_types:
        raise RulesError("notice_types: a mapping of notice type → {title}")
    for name, spec in notice_types.items():
        if not isinstance(spec, dict) or not spec.get("title"):
            raise RulesError(f"notice_types.{name}: needs a title")
    rules = []
    for i, r in enumerate(raw.get("rules") or []):
        where = f"rules[{i}]"
        for key in ("source", "event", "notice", "recipients"):
            if not r.get(key):
                raise RulesError(f"{where}: {key} is required")
        if r["notice"] not in notice_types:
            raise RulesError(f"{where}: notice type {r['notice']!r} is not in notice_types")
        selectors = tuple(_selector(s, f"{where}.recipients[{j}]")
                          for j, s in enumerate(r["recipients"]))
        when = r.get("when") or {}
        key = r.get("key") or f"{r['source']}.{r['event']}" + (
            "?" + "&".join(f"{k}={v}" for k, v in sorted(when.items())) if when else "")
        rules.append(Rule(key=key, source=r["source"], event=r["event"], notice=r["notice"],
                          selectors=selectors, org=r.get("org") or "",
                          deadline=r.get("deadline") or "", when=dict(when)))
    keys = [r.key for r in rules]
    if len(keys) != len(set(keys)):
        raise RulesError(f"rule keys must be unique: {sorted(k for k in keys if keys.count(k) > 1)}")
    defaults = raw.get("defaults") or {}
    channels = tuple(defaults.get("channels") or (INBOX, EMAIL, WEBHOOK))
    for c in channels:
        if c not in CHANNELS:
            raise RulesError(f"defaults.channels: unknown channel {c!r}")
    timer = (raw.get("timers") or {}).get("stage_deadline_approaching") or {}
    return RuleSet(notice_types=dict(notice_types), rules=tuple(rules),
                   stages=dict(raw.get("stages") or {}),
                   labels=dict(raw.get("labels") or {}),
                   deadline_days_before=float(timer.get("days_before", 3)),
                   default_channels=channels)


def lookup(data: dict, path: str):
    """``deadlines.review`` → data["deadlines"]["review"]; None when absent."""
    value: Any = data
    for part in path.split(".") if path else ():
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# -- delivery (投递) ---------------------------------------------------------------
def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``attempts`` failures: base·2^(n-1), capped."""
    return min(cap, base * (2 ** max(attempts - 1, 0)))


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``: the receiver recomputes it
    with the shared secret and rejects stale timestamps (replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
