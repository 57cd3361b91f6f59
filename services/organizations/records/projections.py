"""Read models of the organisational-life records (rebuildable from zero):
the current state of every meeting and member record, with how many times it
was corrected (the corrections themselves stay in the event store)."""
from __future__ import annotations

from psycopg.types.json import Jsonb

from shared.projection import Projection, handles
from services.organizations.records.domain import BranchLife, MemberFile

DDL = (
    """CREATE TABLE IF NOT EXISTS life_meetings (
        record_id text PRIMARY KEY, branch_id uuid NOT NULL, kind text NOT NULL,
        held_on date NOT NULL, topic text NOT NULL, form text, attendees jsonb NOT NULL,
        absentees jsonb NOT NULL, corrections int NOT NULL DEFAULT 0,
        recorded_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS life_meetings_branch ON life_meetings (branch_id, held_on)",
    "CREATE INDEX IF NOT EXISTS life_meetings_attendees ON life_meetings USING gin (attendees)",
    """CREATE TABLE IF NOT EXISTS life_member_records (
        record_id text PRIMARY KEY, member_id uuid NOT NULL, branch_id uuid NOT NULL,
        kind text NOT NULL, on_date date NOT NULL, year int NOT NULL, details jsonb NOT NULL,
        corrections int NOT NULL DEFAULT 0, recorded_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS life_member_records_member "
    "ON life_member_records (member_id, year)",
)


class RecordsReadModel(Projection):
    ddl = DDL
    tables = ("life_meetings", "life_member_records")

    @handles(BranchLife.MeetingRecorded)
    def meeting_recorded(self, curs, e):
        curs.execute(
            "INSERT INTO life_meetings (record_id, branch_id, kind, held_on, topic, form, "
            "attendees, absentees, recorded_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.record_id, e.branch_id, e.kind, e.held_on, e.topic, e.form, Jsonb(e.attendees),
             Jsonb(e.absentees), e.timestamp, e.timestamp))

    @handles(BranchLife.MeetingCorrected)
    def meeting_corrected(self, curs, e):
        curs.execute(
            "UPDATE life_meetings SET kind = %s, held_on = %s, topic = %s, form = %s, "
            "attendees = %s, absentees = %s, corrections = %s, updated_at = %s "
            "WHERE record_id = %s",
            (e.kind, e.held_on, e.topic, e.form, Jsonb(e.attendees), Jsonb(e.absentees),
             e.corrections, e.timestamp, e.record_id))

    @handles(MemberFile.Recorded)
    def member_recorded(self, curs, e):
        curs.execute(
            "INSERT INTO life_member_records (record_id, member_id, branch_id, kind, on_date, "
            "year, details, recorded_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.record_id, e.member_id, e.branch_id, e.kind, e.on, e.year, Jsonb(e.details),
             e.timestamp, e.timestamp))

    @handles(MemberFile.Corrected)
    def member_corrected(self, curs, e):
        curs.execute(
            "UPDATE life_member_records SET branch_id = %s, on_date = %s, year = %s, "
            "details = %s, corrections = %s, updated_at = %s WHERE record_id = %s",
            (e.branch_id, e.on, e.year, Jsonb(e.details), e.corrections, e.timestamp,
             e.record_id))
