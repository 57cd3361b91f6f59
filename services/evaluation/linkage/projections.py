"""Read models of the linkage rules (rebuildable from zero): each organisation's
述职评议 outcome per year (R1) and the 两优一先 nominations (R2)."""
from __future__ import annotations

from psycopg.types.json import Jsonb

from shared.projection import Projection, handles
from services.evaluation.linkage.domain import AnnualReview, Nomination

DDL = (
    """CREATE TABLE IF NOT EXISTS lk_reviews (
        org_id uuid NOT NULL, year int NOT NULL, org_name text NOT NULL,
        creation_failures jsonb NOT NULL DEFAULT '[]', proposed text, grade text,
        capped bool, conditions jsonb, annual_excellent_eligible bool, responsible jsonb,
        proposals int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL,
        PRIMARY KEY (org_id, year))""",
    """CREATE TABLE IF NOT EXISTS lk_nominations (
        id uuid PRIMARY KEY, kind text NOT NULL, year int NOT NULL, subject_id text NOT NULL,
        subject_name text NOT NULL, org_id uuid, status text NOT NULL, failed jsonb,
        history jsonb NOT NULL DEFAULT '[]', updated_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS lk_nominations_year ON lk_nominations (year, kind)",
)


def _step(e, status: str) -> Jsonb:
    return Jsonb([{"status": status, "at": e.timestamp.isoformat(), "actor": e.actor,
                   "reason": e.reason}])


class LinkageReadModel(Projection):
    ddl = DDL
    tables = ("lk_reviews", "lk_nominations")

    @handles(AnnualReview.Opened)
    def opened(self, curs, e):
        curs.execute("INSERT INTO lk_reviews (org_id, year, org_name, updated_at) "
                     "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                     (e.org_id, e.year, e.org_name, e.timestamp))

    @handles(AnnualReview.CreationFailed)
    def creation_failed(self, curs, e):
        curs.execute("UPDATE lk_reviews SET creation_failures = creation_failures || %s, "
                     "updated_at = %s WHERE org_id = %s AND year = %s",
                     (Jsonb([{"reason": e.reason, "evidence": e.evidence,
                              "at": e.timestamp.isoformat()}]), e.timestamp, e.org_id, e.year))

    @handles(AnnualReview.GradeProposed)
    def proposed(self, curs, e):
        curs.execute(
            "UPDATE lk_reviews SET proposed = %s, grade = %s, capped = %s, conditions = %s, "
            "annual_excellent_eligible = %s, responsible = %s, proposals = proposals + 1, "
            "updated_at = %s WHERE org_id = %s AND year = %s",
            (e.proposed, e.grade, e.capped, Jsonb(e.conditions), e.annual_excellent_eligible,
             Jsonb(e.responsible), e.timestamp, e.org_id, e.year))

    @handles(Nomination.Made)
    def made(self, curs, e):
        curs.execute(
            "INSERT INTO lk_nominations (id, kind, year, subject_id, subject_name, org_id, "
            "status, history, updated_at) VALUES (%s,%s,%s,%s,%s,%s,'nominated',%s,%s)",
            (e.originator_id, e.kind, e.year, e.subject_id, e.subject_name, e.org_id,
             _step(e, "nominated"), e.timestamp))

    def _status(self, curs, e, status: str, failed=None):
        curs.execute("UPDATE lk_nominations SET status = %s, failed = coalesce(%s, failed), "
                     "history = history || %s, updated_at = %s WHERE id = %s",
                     (status, Jsonb(failed) if failed is not None else None, _step(e, status),
                      e.timestamp, e.originator_id))

    @handles(Nomination.Refused)
    def refused(self, curs, e):
        self._status(curs, e, "refused", e.failed)

    @handles(Nomination.Reviewed)
    def reviewed(self, curs, e):
        self._status(curs, e, "reviewed" if e.approved else "returned")

    @handles(Nomination.Awarded)
    def awarded(self, curs, e):
        self._status(curs, e, "awarded")
