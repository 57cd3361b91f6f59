"""Schedule rules (制度性安排; R6 二.4, R8 二.2), pure of I/O.

Periods (学期, 半年, 年度) computed from a date and the calendar of
``rules.yaml``; ``Schedule``: one rule's one period, the items recorded in it
(who, when, evidence) and the subjects flagged overdue, once each (the flag
lives in the aggregate's events: a restart or a second instance finds it).
"""
from __future__ import annotations

import datetime as dt
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, parse_date, require
from services.evaluation.programme.domain import clean_text

PERIOD_KINDS = {"semester": "学期", "half_year": "半年", "year": "年度"}
SUBJECT_KINDS = {"leaders": "leader", "university": "university", "colleges": "college"}


def _md(year: int, month_day: str) -> dt.date:
    month, day = (int(x) for x in month_day.split("-"))
    return dt.date(year, month, day)


def period_of(kind: str, day: dt.date, calendar: dict) -> dict:
    """The period of ``kind`` that contains ``day``: ``{key, name, starts_on, ends_on}``."""
    if kind == "year":
        return {"key": f"{day.year}", "name": f"{day.year}年度",
                "starts_on": dt.date(day.year, 1, 1), "ends_on": dt.date(day.year, 12, 31)}
    if kind == "half_year":
        first = day.month <= 6
        return {"key": f"{day.year}-H{1 if first else 2}",
                "name": f"{day.year}年{'上' if first else '下'}半年",
                "starts_on": dt.date(day.year, 1 if first else 7, 1),
                "ends_on": dt.date(day.year, 6, 30) if first else dt.date(day.year, 12, 31)}
    if kind == "semester":
        spring, autumn = calendar["spring_starts"], calendar["autumn_starts"]
        if day < _md(day.year, spring):  # January: the autumn semester of the year before
            year, which = day.year - 1, "autumn"
        elif day < _md(day.year, autumn):
            year, which = day.year, "spring"
        else:
            year, which = day.year, "autumn"
        if which == "spring":
            starts, ends = _md(year, spring), _md(year, autumn) - dt.timedelta(days=1)
        else:
            starts, ends = _md(year, autumn), _md(year + 1, spring) - dt.timedelta(days=1)
        return {"key": f"{year}-{which}",
                "name": f"{year}年{'春季' if which == 'spring' else '秋季'}学期",
                "starts_on": starts, "ends_on": ends}
    raise ValueError(f"unknown period kind {kind!r}")


def previous_period(kind: str, day: dt.date, calendar: dict) -> dict:
    """The period just before the one that contains ``day``."""
    return period_of(kind, period_of(kind, day, calendar)["starts_on"] - dt.timedelta(days=1),
                     calendar)


def check_rules(data: dict) -> dict:
    """The schedule rules file, every problem named at once (it is data)."""
    from shared.errors import ValidationError
    errors = []
    calendar = data.get("calendar") or {}
    for key in ("spring_starts", "autumn_starts"):
        try:
            _md(2001, str(calendar.get(key)))
        except (TypeError, ValueError):
            errors.append({"field": f"calendar.{key}", "message": "a month and day, MM-DD"})
    for code, rule in (data.get("rules") or {}).items():
        f = f"rules.{code}"
        if rule.get("period") not in PERIOD_KINDS:
            errors.append({"field": f"{f}.period", "message": "one of " + ", ".join(PERIOD_KINDS)})
        if not isinstance(rule.get("min"), int) or rule["min"] < 1:
            errors.append({"field": f"{f}.min", "message": "a whole number ≥ 1"})
        if (rule.get("subjects") or {}).get("kind") not in SUBJECT_KINDS:
            errors.append({"field": f"{f}.subjects.kind",
                           "message": "one of " + ", ".join(SUBJECT_KINDS)})
        for key in ("name", "seed", "department"):
            if not isinstance(rule.get(key), str) or not rule[key]:
                errors.append({"field": f"{f}.{key}", "message": "required"})
    if errors:
        raise ValidationError(errors)
    return data


class Schedule(Aggregate):
    """One schedule rule in one period (e.g. leader_lecture, 2024年春季学期)."""

    id: UUID

    @staticmethod
    def id_for(rule: str, period_key: str) -> UUID:
        return derived_id("programme-schedule", rule, period_key)

    @event("Opened")
    def __init__(self, rule: str, rule_name: str, period: str, period_name: str,
                 starts_on: str, ends_on: str, required: int, actor: dict):
        self.rule = rule
        self.rule_name = rule_name
        self.period = period
        self.period_name = period_name
        self.starts_on = starts_on
        self.ends_on = ends_on
        self.required = required
        self.counts: dict[str, int] = {}
        self.flagged: dict[str, str] = {}  # subject id -> day it was flagged

    @classmethod
    def open_for(cls, code: str, rule: dict, period: dict, actor: dict) -> "Schedule":
        return cls(id=cls.id_for(code, period["key"]), rule=code, rule_name=rule["name"],
                   period=period["key"], period_name=period["name"],
                   starts_on=period["starts_on"].isoformat(),
                   ends_on=period["ends_on"].isoformat(), required=int(rule["min"]),
                   actor=actor)

    def record(self, subject: dict, on, title, actor: dict, reason, evidence) -> None:
        """An item done (a lecture given, a report heard, a list published, an
        inspection held): who, when, evidence."""
        on = parse_date(on, "on")
        require(self.starts_on <= on <= self.ends_on, "on",
                f"{self.period_name} runs {self.starts_on} to {self.ends_on}")
        require(bool(evidence), "evidence", "a record is kept with its evidence "
                "(讲稿, 会议纪要, 清单, 通知)")
        self._item_recorded(rule=self.rule, period=self.period, subject_kind=subject["kind"],
                            subject_id=str(subject["id"]), subject_name=subject["name"], on=on,
                            title=clean_text(title, "title", limit=300), actor=actor,
                            reason=clean_text(reason, "reason", required=False),
                            evidence=list(evidence))

    @event("ItemRecorded")
    def _item_recorded(self, rule: str, period: str, subject_kind: str, subject_id: str,
                       subject_name: str, on: str, title: str, actor: dict, reason: str | None,
                       evidence: list):
        self.counts[subject_id] = self.counts.get(subject_id, 0) + 1

    def unmet(self, subjects: list[dict], today: str) -> list[dict]:
        """Subjects below the rule's minimum in a period that has ended, not yet flagged."""
        if today <= self.ends_on:
            return []
        return [s for s in subjects if self.counts.get(str(s["id"]), 0) < self.required
                and str(s["id"]) not in self.flagged]

    def flag_overdue(self, subject: dict, rule: dict, today: str, actor: dict) -> bool:
        """Record the subject overdue for this period, once (False: nothing to record)."""
        subject_id = str(subject["id"])
        if subject not in self.unmet([subject], today):
            return False
        self._item_overdue(
            rule=self.rule, rule_name=self.rule_name, seed=rule["seed"],
            rule_text=rule.get("text", rule["name"]), period=self.period,
            period_name=self.period_name, starts_on=self.starts_on, ends_on=self.ends_on,
            subject_kind=subject["kind"], subject_id=subject_id, subject_name=subject["name"],
            required=self.required, recorded=self.counts.get(subject_id, 0),
            department=rule["department"], on=today, actor=actor,
            reason=f"制度落实逾期 (timer): {self.rule_name}, {self.period_name}")
        return True

    @event("ItemOverdue")
    def _item_overdue(self, rule: str, rule_name: str, seed: str, rule_text: str, period: str,
                      period_name: str, starts_on: str, ends_on: str, subject_kind: str,
                      subject_id: str, subject_name: str, required: int, recorded: int,
                      department: str, on: str, actor: dict, reason: str):
        self.flagged[subject_id] = on
