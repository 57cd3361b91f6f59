"""Evaluation's read models for members (党员):

* the organisational-life records consumed from organizations (``pi_meetings``,
  ``pi_attendance``, ``pi_records``), applied through the directory's inbox
  (exactly once, in order per branch or member) by ``apply_record``;
* the pioneer index's own events (``pi_schemes``, ``pi_years``, ``pi_indices``,
  and ``pi_index_history``: each state of an index with its validity period,
  for answers as of a moment), a projection of evaluation's store, rebuildable
  from zero.
"""
from __future__ import annotations

from psycopg.types.json import Jsonb

from shared.projection import Projection, handles
from services.evaluation.members.domain import IndexScheme, MemberYear, PioneerIndex

CONSUMED_DDL = (
    """CREATE TABLE IF NOT EXISTS pi_meetings (
        record_id text PRIMARY KEY, branch_id uuid NOT NULL, kind text NOT NULL,
        held_on date NOT NULL, year int NOT NULL, topic text NOT NULL, form text,
        corrections int NOT NULL DEFAULT 0, event_id text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS pi_meetings_branch ON pi_meetings (branch_id, year)",
    """CREATE TABLE IF NOT EXISTS pi_attendance (
        record_id text NOT NULL, member_id uuid NOT NULL, branch_id uuid NOT NULL,
        kind text NOT NULL, held_on date NOT NULL, year int NOT NULL, status text NOT NULL,
        PRIMARY KEY (record_id, member_id))""",
    "CREATE INDEX IF NOT EXISTS pi_attendance_member ON pi_attendance (year, member_id)",
    """CREATE TABLE IF NOT EXISTS pi_records (
        record_id text PRIMARY KEY, member_id uuid NOT NULL, branch_id uuid NOT NULL,
        kind text NOT NULL, on_date date NOT NULL, year int NOT NULL, details jsonb NOT NULL,
        corrections int NOT NULL DEFAULT 0, event_id text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS pi_records_member ON pi_records (year, member_id)",
    "CREATE INDEX IF NOT EXISTS pi_records_branch ON pi_records (year, branch_id, kind)",
)

RECORD_EVENTS = ("branch_life_meeting_recorded", "branch_life_meeting_corrected",
                 "member_file_recorded", "member_file_corrected")


def apply_record(curs, envelope: dict) -> tuple[int, set[str]] | None:
    """Apply one record event to the consumed tables; returns (year, members
    concerned) — both years for a correction that moved a record — or None."""
    kind, d = envelope["type"], envelope["data"]
    if kind not in RECORD_EVENTS:
        return None
    if kind.startswith("branch_life_"):
        curs.execute("SELECT year FROM pi_meetings WHERE record_id = %s", (d["record_id"],))
        old = curs.fetchone()
        curs.execute("SELECT member_id FROM pi_attendance WHERE record_id = %s",
                     (d["record_id"],))
        concerned = {str(r["member_id"]) for r in curs.fetchall()}
        year = int(d["held_on"][:4])
        curs.execute(
            "INSERT INTO pi_meetings (record_id, branch_id, kind, held_on, year, topic, form, "
            "corrections, event_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (record_id) DO UPDATE SET branch_id = EXCLUDED.branch_id, "
            "kind = EXCLUDED.kind, held_on = EXCLUDED.held_on, year = EXCLUDED.year, "
            "topic = EXCLUDED.topic, form = EXCLUDED.form, corrections = EXCLUDED.corrections, "
            "event_id = EXCLUDED.event_id",
            (d["record_id"], d["branch_id"], d["kind"], d["held_on"], year, d["topic"],
             d.get("form"), d.get("corrections", 0), envelope["event_id"]))
        curs.execute("DELETE FROM pi_attendance WHERE record_id = %s", (d["record_id"],))
        rows = [(m, "attended") for m in d["attendees"]] + \
               [(a["member_id"], a["kind"]) for a in d["absentees"]]
        curs.executemany(
            "INSERT INTO pi_attendance (record_id, member_id, branch_id, kind, held_on, year, "
            "status) VALUES (%s,%s,%s,%s,%s,%s,%s)",
            [(d["record_id"], m, d["branch_id"], d["kind"], d["held_on"], year, status)
             for m, status in rows])
        concerned |= {str(m) for m, _ in rows}
        years = {year} | ({old["year"]} if old else set())
        return years, concerned
    curs.execute("SELECT year FROM pi_records WHERE record_id = %s", (d["record_id"],))
    old = curs.fetchone()
    curs.execute(
        "INSERT INTO pi_records (record_id, member_id, branch_id, kind, on_date, year, details, "
        "corrections, event_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
        "ON CONFLICT (record_id) DO UPDATE SET branch_id = EXCLUDED.branch_id, "
        "on_date = EXCLUDED.on_date, year = EXCLUDED.year, details = EXCLUDED.details, "
        "corrections = EXCLUDED.corrections, event_id = EXCLUDED.event_id",
        (d["record_id"], d["member_id"], d["branch_id"], d["kind"], d["on"], d["year"],
         Jsonb(d["details"]), d.get("corrections", 0), envelope["event_id"]))
    return {int(d["year"])} | ({old["year"]} if old else set()), {str(d["member_id"])}


INDEX_DDL = (
    """CREATE TABLE IF NOT EXISTS pi_schemes (
        scheme_id text NOT NULL, version int NOT NULL, definition jsonb NOT NULL,
        published_at timestamptz NOT NULL, PRIMARY KEY (scheme_id, version))""",
    """CREATE TABLE IF NOT EXISTS pi_years (
        year int PRIMARY KEY, scheme_id text NOT NULL, scheme_version int NOT NULL,
        members int NOT NULL, closed_at timestamptz NOT NULL, actor jsonb)""",
    """CREATE TABLE IF NOT EXISTS pi_indices (
        member_id uuid NOT NULL, year int NOT NULL, branch_id uuid, college_id uuid,
        score double precision NOT NULL, zeroed bool NOT NULL, breakdown jsonb NOT NULL,
        scheme_id text, scheme_version int, revisions int NOT NULL DEFAULT 0,
        last_cause jsonb, published_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, year))""",
    "CREATE INDEX IF NOT EXISTS pi_indices_branch ON pi_indices (year, branch_id)",
    # Each state of an index with the period it held (as of a moment: the row
    # whose valid_from is the latest not after it).
    """CREATE TABLE IF NOT EXISTS pi_index_history (
        member_id uuid NOT NULL, year int NOT NULL, version int NOT NULL,
        valid_from timestamptz NOT NULL, valid_to timestamptz,
        branch_id uuid, college_id uuid, score double precision NOT NULL,
        zeroed bool NOT NULL, breakdown jsonb NOT NULL, scheme_id text, scheme_version int,
        revisions int NOT NULL, last_cause jsonb, published_at timestamptz NOT NULL,
        PRIMARY KEY (member_id, year, version))""",
    # The as-of probe (the latest period not after a moment) read from the index alone.
    "CREATE INDEX IF NOT EXISTS pi_index_history_asof ON pi_index_history "
    "(member_id, year, valid_from DESC, version DESC)",
)


class IndexReadModel(Projection):
    ddl = INDEX_DDL
    tables = ("pi_schemes", "pi_years", "pi_indices", "pi_index_history")

    @handles(IndexScheme.Published)
    def scheme_published(self, curs, e):
        curs.execute("INSERT INTO pi_schemes VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                     (e.definition["scheme_id"], e.version, Jsonb(e.definition), e.timestamp))

    @handles(MemberYear.Closed)
    def year_closed(self, curs, e):
        curs.execute("INSERT INTO pi_years VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                     (e.year, e.scheme_id, e.scheme_version, e.members, e.timestamp,
                      Jsonb(e.actor)))

    @handles(PioneerIndex.Published)
    def index_published(self, curs, e):
        curs.execute(
            "INSERT INTO pi_indices (member_id, year, branch_id, college_id, score, zeroed, "
            "breakdown, scheme_id, scheme_version, published_at, updated_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (e.member_id, e.year, e.branch_id, e.college_id, e.score, e.zeroed,
             Jsonb(e.breakdown), e.scheme_id, e.scheme_version, e.timestamp, e.timestamp))
        curs.execute(
            "INSERT INTO pi_index_history (member_id, year, version, valid_from, branch_id, "
            "college_id, score, zeroed, breakdown, scheme_id, scheme_version, revisions, "
            "published_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,0,%s) ON CONFLICT DO NOTHING",
            (e.member_id, e.year, e.originator_version, e.timestamp, e.branch_id, e.college_id,
             e.score, e.zeroed, Jsonb(e.breakdown), e.scheme_id, e.scheme_version, e.timestamp))

    @handles(PioneerIndex.Revised)
    def index_revised(self, curs, e):
        curs.execute(
            "UPDATE pi_indices SET score = %s, zeroed = %s, breakdown = %s, branch_id = %s, "
            "college_id = %s, revisions = revisions + 1, last_cause = %s, updated_at = %s "
            "WHERE member_id = %s AND year = %s",
            (e.score, e.zeroed, Jsonb(e.breakdown), e.branch_id, e.college_id, Jsonb(e.cause),
             e.timestamp, e.member_id, e.year))
        curs.execute(
            "UPDATE pi_index_history SET valid_to = %s WHERE member_id = %s AND year = %s "
            "AND version < %s AND valid_to IS NULL", (e.timestamp, e.member_id, e.year,
                                                     e.originator_version))
        curs.execute(
            "INSERT INTO pi_index_history (member_id, year, version, valid_from, branch_id, "
            "college_id, score, zeroed, breakdown, scheme_id, scheme_version, revisions, "
            "last_cause, published_at) SELECT member_id, year, %s, %s, %s, %s, %s, %s, %s, "
            "scheme_id, scheme_version, revisions + 1, %s, published_at "
            "FROM pi_index_history WHERE member_id = %s AND year = %s AND version < %s "
            "ORDER BY version DESC LIMIT 1 ON CONFLICT DO NOTHING",
            (e.originator_version, e.timestamp, e.branch_id, e.college_id, e.score, e.zeroed,
             Jsonb(e.breakdown), Jsonb(e.cause), e.member_id, e.year, e.originator_version))
