"""Schedule rules (制度性安排; R6 二.4, R8 二.2): recorded items, the check of
each rule per period, and the overdue timer. A mixin of ``ProgrammeOperations``
(``self.app``: evaluation's application; ``self._dept_name``).

Who may record (docs/rpc.md): 组织部 (org_admin) any item; the staff of the
department that answers for a rule (``department_staff``, token ``org`` = that
department) its items; a college secretary its own college's items of a rule
whose subjects are the colleges (互查互评). Every role reads the status.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Optional
from uuid import UUID

import yaml

from shared.commands import Command, Key, Query, Reason, RequiredEvidence, text_type
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import COLLEGE_SECRETARY, DEPARTMENT_STAFF, ORG_ADMIN, ROLES, Caller
from services.evaluation.programme.schedule.domain import (PERIOD_KINDS, SUBJECT_KINDS,
                                                           Schedule, check_rules, period_of,
                                                           previous_period)

RULES_FILE = Path(__file__).with_name("rules.yaml")
SYSTEM_ACTOR = {"sub": "system", "role": "system"}
ItemTitle = text_type(300, 1)


@lru_cache(maxsize=1)
def load_schedule_rules(path: Path = RULES_FILE) -> dict:
    """The shipped schedule rules: ``{calendar, rules}`` (checked once)."""
    return check_rules(yaml.safe_load(path.read_text(encoding="utf-8")))


class RecordScheduleItem(Command):
    rule: Key
    subject_id: Optional[UUID] = None
    on: dt.date
    title: ItemTitle
    reason: Optional[Reason] = None
    evidence: RequiredEvidence


class ScheduleQuery(Query):
    rule: Optional[Key] = None
    on: Optional[dt.date] = None


class ScheduleRules:

    @staticmethod
    def _schedule_rules_all() -> dict:
        return load_schedule_rules()["rules"]

    def _schedule_rule(self, code: str) -> dict:
        rules = load_schedule_rules()["rules"]
        if code not in rules:
            raise ValidationError.single("rule", "one of " + ", ".join(rules))
        return rules[code]

    def _schedule_subjects(self, rule: dict, period: dict | None = None) -> list[dict]:
        """Who the rule applies to: now, or during ``period`` (``{starts_on,
        ends_on}``) when given: ``[{kind, id, name}]``. A period's leaders are
        the members who held one of the roles in the university committee at
        any time within it (the directory's ``dir_role_periods``, from
        organizations' role events), whether or not they hold it now."""
        kind = rule["subjects"]["kind"]
        if kind == "leaders" and period is not None:
            starts = dt.datetime.combine(period["starts_on"], dt.time.min, dt.timezone.utc)
            ends = dt.datetime.combine(period["ends_on"] + dt.timedelta(days=1), dt.time.min,
                                       dt.timezone.utc)
            rows = self.app.query(
                "SELECT DISTINCT m.id, m.name FROM dir_role_periods r "
                "JOIN dir_members m ON m.id = r.member_id JOIN dir_orgs o ON o.id = r.org_id "
                "WHERE o.level = 1 AND r.role = ANY(%s) "
                "AND (r.from_at IS NULL OR r.from_at < %s) "
                "AND (r.until_at IS NULL OR r.until_at >= %s) ORDER BY m.name, m.id",
                (list(rule["subjects"]["roles"]), ends, starts))
        elif kind == "leaders":
            rows = self.app.query(
                "SELECT DISTINCT m.id, m.name FROM dir_roles r "
                "JOIN dir_members m ON m.id = r.member_id JOIN dir_orgs o ON o.id = r.org_id "
                "WHERE o.level = 1 AND o.status = 'active' AND m.active AND r.role = ANY(%s) "
                "ORDER BY m.name, m.id", (list(rule["subjects"]["roles"]),))
        else:
            rows = self.app.query(
                "SELECT id, name FROM dir_orgs WHERE level = %s AND status = 'active' "
                "ORDER BY name, id", (1 if kind == "university" else 2,))
        return [{"kind": SUBJECT_KINDS[kind], "id": str(r["id"]), "name": r["name"]}
                for r in rows]

    def _may_record(self, caller: Caller, rule: dict, subject: dict) -> None:
        if caller.role == ORG_ADMIN:
            return
        if caller.role == DEPARTMENT_STAFF and caller.org == rule["department"]:
            return
        if caller.role == COLLEGE_SECRETARY and subject["kind"] == "college" \
                and caller.org == subject["id"]:
            return
        raise Forbidden(f"{rule['name']} is recorded by 组织部, by "
                        f"{self._dept_name(rule['department'])} (department_staff)"
                        + (", or by a college's secretary for its college"
                           if rule["subjects"]["kind"] == "colleges" else ""))

    def record_schedule_item(self, caller: Caller, payload: dict) -> dict:
        """Record an item a schedule rule asks for (who, when, evidence)."""
        caller.require_role(ORG_ADMIN, DEPARTMENT_STAFF, COLLEGE_SECRETARY)
        cmd = RecordScheduleItem.parse(payload)
        rule = self._schedule_rule(cmd.rule)
        today = self.app.clock().date()
        if cmd.on > today:
            raise ValidationError.single("on", f"a record of what happened: not after today "
                                         f"({today})")
        period = period_of(rule["period"], cmd.on, load_schedule_rules()["calendar"])
        # the subjects of the item's period (a leader then, though no longer)
        subjects = {s["id"]: s for s in self._schedule_subjects(rule, period)}
        subject_id = str(cmd.subject_id) if cmd.subject_id else None
        if subject_id is None:
            if rule["subjects"]["kind"] == "university" and len(subjects) == 1:
                subject_id = next(iter(subjects))
            elif caller.role == COLLEGE_SECRETARY and rule["subjects"]["kind"] == "colleges":
                subject_id = caller.org
            else:
                raise ValidationError.single("subject_id", "whose item it is: one of " + ", ".join(
                    f"{s['id']} ({s['name']})" for s in subjects.values()) if subjects else
                    "no subject of this rule is known yet")
        if subject_id not in subjects:
            raise ValidationError.single(
                "subject_id", f"not a subject of {rule['name']} ("
                + {"leaders": "a member holding " + ", ".join(rule["subjects"]["roles"])
                   + " in the university committee", "university": "the university committee",
                   "colleges": "an active college"}[rule["subjects"]["kind"]] + ")")
        subject = subjects[subject_id]
        self._may_record(caller, rule, subject)
        schedule_id = Schedule.id_for(cmd.rule, period["key"])
        schedule = self.app.load(schedule_id, Schedule, "schedule") \
            if self.app.exists(schedule_id) else \
            Schedule.open_for(cmd.rule, rule, period, caller.as_actor())
        schedule.record(subject, cmd.on.isoformat(), cmd.title, caller.as_actor(), cmd.reason,
                        cmd.evidence)
        return self.app.commit(schedule, result=lambda: self.schedule_status(
            caller, cmd.rule, cmd.on.isoformat())["rules"][0])

    def schedule_status(self, caller: Caller, rule: str | None = None,
                        on: str | None = None) -> dict:
        """Each rule checked in the period that contains ``on`` (default today):
        per subject the items recorded and met / open / overdue."""
        caller.require_role(*ROLES)
        q = ScheduleQuery.of(rule=rule, on=on)
        data = load_schedule_rules()
        codes = [q.rule] if q.rule is not None else list(data["rules"])
        if q.rule is not None:
            self._schedule_rule(q.rule)
        today = self.app.clock().date()
        day = q.on or today
        out = []
        for code in codes:
            r = data["rules"][code]
            period = period_of(r["period"], day, data["calendar"])
            items: dict = {}
            for row in self.app.query(
                    "SELECT * FROM prog_schedule_items WHERE rule = %s AND period = %s "
                    "ORDER BY on_date, version", (code, period["key"])):
                items.setdefault(row["subject_id"], []).append(
                    {"on": row["on_date"].isoformat(), "title": row["title"],
                     "actor": row["actor"], "reason": row["reason"],
                     "evidence": row["evidence"] or [],
                     "recorded_at": row["recorded_at"].isoformat()})
            flags = {row["subject_id"]: row["flagged_at"].isoformat() for row in self.app.query(
                "SELECT subject_id, flagged_at FROM prog_schedule_overdue WHERE rule = %s "
                "AND period = %s", (code, period["key"]))}
            ended = period["ends_on"] < today
            subjects = []
            known = self._schedule_subjects(r, period)  # who were subjects in it
            known_ids = {s["id"] for s in known}
            # subjects with records who no longer hold the role still show what they did
            for row in self.app.query(
                    "SELECT DISTINCT subject_id, subject_kind, subject_name FROM "
                    "prog_schedule_items WHERE rule = %s AND period = %s",
                    (code, period["key"])):
                if row["subject_id"] not in known_ids:
                    known.append({"kind": row["subject_kind"], "id": row["subject_id"],
                                  "name": row["subject_name"]})
            for s in known:
                records = items.get(s["id"], [])
                met = len(records) >= r["min"]
                subjects.append({**s, "recorded": len(records), "records": records,
                                 "status": "met" if met else ("overdue" if ended else "open"),
                                 "overdue_recorded_at": flags.get(s["id"])})
            out.append({
                "rule": code, "name": r["name"], "seed": r["seed"], "measure": r.get("measure"),
                "text": r.get("text"), "period_kind": r["period"],
                "period_kind_zh": PERIOD_KINDS[r["period"]],
                "period": {"key": period["key"], "name": period["name"],
                           "starts_on": period["starts_on"].isoformat(),
                           "ends_on": period["ends_on"].isoformat(), "ended": ended},
                "required": r["min"], "subject_kind": r["subjects"]["kind"],
                "department": {"code": r["department"],
                               "name": self._dept_name(r["department"])},
                "subjects": subjects,
                "met": sum(1 for s in subjects if s["status"] == "met"),
                "overdue": sum(1 for s in subjects if s["status"] == "overdue")})
        return {"on": day.isoformat(), "rules": out}

    def detect_schedule_overdue(self) -> int:
        """Timer: each rule's last ended period, every subject below the minimum
        flagged overdue once (the flag lives in the period's own events: a
        restart or a second instance finds it; two at once clash, one wins)."""
        data = load_schedule_rules()
        today = self.app.clock().date()
        flagged = 0
        for code, rule in data["rules"].items():
            period = previous_period(rule["period"], today, data["calendar"])
            # the subjects of the period checked (its leaders then, not today's)
            subjects = self._schedule_subjects(rule, period)
            # the read models spare loading a period in which nothing is left to flag
            counts = {r["subject_id"]: r["n"] for r in self.app.query(
                "SELECT subject_id, count(*) AS n FROM prog_schedule_items WHERE rule = %s "
                "AND period = %s GROUP BY subject_id", (code, period["key"]))}
            done = {r["subject_id"] for r in self.app.query(
                "SELECT subject_id FROM prog_schedule_overdue WHERE rule = %s AND period = %s",
                (code, period["key"]))}
            pending = [s for s in subjects if counts.get(s["id"], 0) < rule["min"]
                       and s["id"] not in done]
            if not pending:
                continue
            schedule_id = Schedule.id_for(code, period["key"])
            schedule = self.app.load(schedule_id, Schedule, "schedule") \
                if self.app.exists(schedule_id) else \
                Schedule.open_for(code, rule, period, SYSTEM_ACTOR)
            due = [s for s in pending
                   if schedule.flag_overdue(s, rule, today.isoformat(), SYSTEM_ACTOR)]
            if not due:
                continue
            try:
                self.app.commit(schedule)
            except Conflict:
                continue  # another instance recorded it (or an item arrived): next round
            flagged += len(due)
        return flagged
