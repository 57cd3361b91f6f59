"""Read models of the schedule rules (制度性安排), rebuildable from zero:
``prog_schedule_items`` (every item recorded) and ``prog_schedule_overdue``
(each subject flagged overdue in a period, once)."""
from __future__ import annotations

from psycopg.types.json import Jsonb

from shared.projection import handles
from services.evaluation.programme.schedule.domain import Schedule

DDL = (
    """CREATE TABLE IF NOT EXISTS prog_schedule_items (
        schedule_id uuid NOT NULL, version int NOT NULL, rule text NOT NULL,
        period text NOT NULL, subject_kind text NOT NULL, subject_id text NOT NULL,
        subject_name text NOT NULL, on_date date NOT NULL, title text NOT NULL, actor jsonb,
        reason text, evidence jsonb, recorded_at timestamptz NOT NULL,
        PRIMARY KEY (schedule_id, version))""",
    "CREATE INDEX IF NOT EXISTS prog_schedule_items_period ON prog_schedule_items (rule, period)",
    """CREATE TABLE IF NOT EXISTS prog_schedule_overdue (
        rule text NOT NULL, period text NOT NULL, subject_id text NOT NULL,
        subject_kind text NOT NULL, subject_name text NOT NULL, department text NOT NULL,
        required int NOT NULL, recorded int NOT NULL, ends_on date NOT NULL,
        flagged_at timestamptz NOT NULL, PRIMARY KEY (rule, period, subject_id))""",
)
TABLES = ("prog_schedule_items", "prog_schedule_overdue")


class ScheduleReadModel:
    """Handlers mixed into the programme's read model (one projector position)."""

    @handles(Schedule.ItemRecorded)
    def schedule_item_recorded(self, curs, e):
        curs.execute(
            "INSERT INTO prog_schedule_items (schedule_id, version, rule, period, subject_kind, "
            "subject_id, subject_name, on_date, title, actor, reason, evidence, recorded_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.rule, e.period, e.subject_kind,
             e.subject_id, e.subject_name, e.on, e.title, Jsonb(e.actor), e.reason,
             Jsonb(e.evidence or []), e.timestamp))

    @handles(Schedule.ItemOverdue)
    def schedule_item_overdue(self, curs, e):
        curs.execute(
            "INSERT INTO prog_schedule_overdue (rule, period, subject_id, subject_kind, "
            "subject_name, department, required, recorded, ends_on, flagged_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.rule, e.period, e.subject_id, e.subject_kind, e.subject_name, e.department,
             e.required, e.recorded, e.ends_on, e.timestamp))
