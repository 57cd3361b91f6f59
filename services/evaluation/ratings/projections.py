"""Read models of the evaluation store (rebuildable from zero).

``eval_assessments`` feeds the progress board; ``eval_ratings`` holds each
organisation's current rating; ``eval_rating_history`` holds every rating with
its validity period, so a rating can be read as of any timestamp with one
indexed lookup (the store itself stays the authority: ``get_rating(...,
replay=True)`` rebuilds it from events).
"""
from __future__ import annotations

import datetime as dt

from psycopg import sql
from psycopg.types.json import Jsonb

from shared.folds import jsonb
from shared.projection import Batch, Projection, bulk, folds, handles, stage
from services.evaluation.ratings.domain import Assessment, Cycle, Rating, Scheme

DDL = (
    """CREATE TABLE IF NOT EXISTS eval_schemes (
        scheme_id text NOT NULL, version int NOT NULL, level int NOT NULL, title text NOT NULL,
        definition jsonb NOT NULL, published_at timestamptz NOT NULL, actor jsonb,
        reason text, PRIMARY KEY (scheme_id, version))""",
    """CREATE TABLE IF NOT EXISTS eval_cycles (
        id uuid PRIMARY KEY, name text NOT NULL, level int NOT NULL, period text NOT NULL,
        scheme_id text NOT NULL, scheme_version int NOT NULL, deadlines jsonb NOT NULL,
        publicity_days double precision NOT NULL, appeal_days double precision NOT NULL,
        auto_add bool NOT NULL, college_id uuid, opened_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS eval_assessments (
        id uuid PRIMARY KEY, cycle_id uuid NOT NULL, org_id uuid NOT NULL, org_name text NOT NULL,
        level int NOT NULL, college_id uuid, stage text NOT NULL,
        self_score double precision, self_stars int, review_score double precision,
        review_stars int, score double precision, stars int, direct_stars int,
        extensions jsonb NOT NULL DEFAULT '{}', returned_from text,
        reopened bool NOT NULL DEFAULT false, returns int NOT NULL DEFAULT 0,
        objections int NOT NULL DEFAULT 0, publicity_ends_at timestamptz,
        final_at timestamptz, appeal_until timestamptz, updated_at timestamptz NOT NULL,
        version int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS eval_assessments_cycle ON eval_assessments (cycle_id, college_id)",
    "CREATE INDEX IF NOT EXISTS eval_assessments_org ON eval_assessments (org_id)",
    """CREATE TABLE IF NOT EXISTS eval_ratings (
        org_id uuid PRIMARY KEY, rating_id uuid NOT NULL, org_name text NOT NULL,
        level int NOT NULL, stars int, underlying int, score double precision, cause text,
        scheme_id text, scheme_version int, cycle_id uuid, breakdown jsonb,
        open_problems int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL,
        version int NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS eval_rating_history (
        org_id uuid NOT NULL, version int NOT NULL, stars_before int, stars_after int,
        score double precision, cause text NOT NULL, scheme_id text, scheme_version int,
        cycle_id uuid, actor jsonb, reason text, evidence jsonb,
        valid_from timestamptz NOT NULL, valid_to timestamptz, recorded_at timestamptz,
        PRIMARY KEY (org_id, version))""",
    # valid_from is when a rating took effect; recorded_at when it was recorded (they
    # differ for backfilled past results). Read models made before this column existed:
    "ALTER TABLE eval_rating_history ADD COLUMN IF NOT EXISTS recorded_at timestamptz",
    # The rating handlers update by rating_id: without an index each update of a
    # rebuild scans the table (slower and slower as it fills).
    "CREATE INDEX IF NOT EXISTS eval_ratings_rating ON eval_ratings (rating_id)",
    # The as-of probe (get_rating, the distribution, a backfill's neighbours): the
    # latest period not after a moment, ties by version, from the index alone.
    "CREATE INDEX IF NOT EXISTS eval_rating_history_asof_version "
    "ON eval_rating_history (org_id, valid_from DESC, version DESC)",
    "DROP INDEX IF EXISTS eval_rating_history_asof",
    # Closing the current period reads only the open row of an org.
    "CREATE INDEX IF NOT EXISTS eval_rating_history_open "
    "ON eval_rating_history (org_id) WHERE valid_to IS NULL",
    """CREATE TABLE IF NOT EXISTS eval_problems (
        org_id uuid NOT NULL, problem_id text NOT NULL, description text NOT NULL,
        downgrade_to int NOT NULL, status text NOT NULL, rectification_due date,
        plan text, plan_due date, recorded_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL, PRIMARY KEY (org_id, problem_id))""",
    # major_problem (重大问题, caps the stars) or low_stars (★3 and below: a
    # rectification owed, no cap).
    "ALTER TABLE eval_problems ADD COLUMN IF NOT EXISTS kind text NOT NULL "
    "DEFAULT 'major_problem'",
    # The star trend reads each organisation's latest result per cycle.
    "CREATE INDEX IF NOT EXISTS eval_rating_history_cycle ON eval_rating_history "
    "(cycle_id, org_id, valid_from DESC, version DESC) WHERE cycle_id IS NOT NULL",
    # Objections (异议) lodged during 公示, each with 组织部's decision. A read model
    # made before decisions were kept fills this on a rebuild (rebuild_read_models).
    """CREATE TABLE IF NOT EXISTS eval_objections (
        cycle_id uuid NOT NULL, org_id uuid NOT NULL, objection_no int NOT NULL,
        org_name text NOT NULL, college_id uuid, text text NOT NULL, objector text,
        lodged_at timestamptz NOT NULL, status text NOT NULL DEFAULT 'open',
        decided_by jsonb, decided_at timestamptz, reason text,
        PRIMARY KEY (cycle_id, org_id, objection_no))""",
    "CREATE INDEX IF NOT EXISTS eval_objections_open ON eval_objections (cycle_id) "
    "WHERE status = 'open'",
    # The publicity timer passes over results whose objections are undecided.
    "ALTER TABLE eval_assessments ADD COLUMN IF NOT EXISTS open_objections int NOT NULL "
    "DEFAULT 0",
    # A rating as of a moment carries the breakdown (各项得分) the live rating showed
    # then: a cycle's result or direct grading its own, a downgrade or restoration
    # the one before it, a backfilled past result none. A problem's stages carry
    # their moments, so the problems in force then are read too. Read models made
    # before these columns existed fill them on a rebuild (rebuild_read_models).
    "ALTER TABLE eval_rating_history ADD COLUMN IF NOT EXISTS breakdown jsonb",
    "ALTER TABLE eval_problems ADD COLUMN IF NOT EXISTS planned_at timestamptz",
    "ALTER TABLE eval_problems ADD COLUMN IF NOT EXISTS completed_at timestamptz",
    "ALTER TABLE eval_problems ADD COLUMN IF NOT EXISTS verified_at timestamptz",
)


_INHERIT = object()  # a history row's breakdown: the one in force before it
_OWN_BREAKDOWN = frozenset(("cycle", "direct_grading"))  # causes carrying their breakdown


_j = jsonb  # JSON written by orjson (shared.folds.json_dumps)


class EvaluationReadModel(Projection):
    ddl = DDL
    tables = ("eval_schemes", "eval_cycles", "eval_assessments", "eval_ratings",
              "eval_rating_history", "eval_problems", "eval_objections")

    # -- schemes and cycles ------------------------------------------------------
    @handles(Scheme.Published)
    def scheme_published(self, curs, e):
        curs.execute(
            "INSERT INTO eval_schemes (scheme_id, version, level, title, definition, "
            "published_at, actor, reason) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT DO NOTHING",
            (e.definition["scheme_id"], e.version, e.level, e.title, Jsonb(e.definition),
             e.timestamp, _j(e.actor), e.reason))

    @handles(Cycle.Opened)
    def cycle_opened(self, curs, e):
        curs.execute(
            "INSERT INTO eval_cycles (id, name, level, period, scheme_id, scheme_version, "
            "deadlines, publicity_days, appeal_days, auto_add, college_id, opened_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.name, e.level, e.period, e.scheme_id, e.scheme_version,
             Jsonb(e.deadlines), e.publicity_days, e.appeal_days, e.auto_add, e.college_id,
             e.timestamp))

    # -- assessments -------------------------------------------------------------
    def _update(self, curs, e, sets: str, params: tuple = ()):
        curs.execute(f"UPDATE eval_assessments SET {sets}, updated_at = %s, version = %s "
                     "WHERE id = %s", params + (e.timestamp, e.originator_version,
                                                e.originator_id))

    @handles(Assessment.Started)
    def assessment_started(self, curs, e):
        curs.execute(
            "INSERT INTO eval_assessments (id, cycle_id, org_id, org_name, level, college_id, "
            "stage, updated_at, version) VALUES (%s,%s,%s,%s,%s,%s,'self_assessment',%s,%s)",
            (e.originator_id, e.cycle_id, e.org_id, e.org_name, e.level, e.college_id,
             e.timestamp, e.originator_version))

    @handles(Assessment.Submitted)
    def submitted(self, curs, e):
        if e.stage == "self_assessment":
            self._update(curs, e, "stage = 'review', self_score = %s, self_stars = %s, "
                         "returned_from = NULL", (e.score, e.stars))
        else:
            self._update(curs, e, "stage = 'approval', review_score = %s, review_stars = %s, "
                         "returned_from = NULL", (e.score, e.stars))

    @handles(Assessment.Returned)
    def returned(self, curs, e):
        reopened = e.from_stage == "publicity"
        self._update(curs, e, "stage = %s, returned_from = %s, returns = returns + 1, "
                     "reopened = reopened OR %s", (e.stage, e.from_stage, reopened))

    @handles(Assessment.DeadlineExtended)
    def extended(self, curs, e):
        self._update(curs, e, "extensions = extensions || %s", (Jsonb({e.stage: e.until}),))

    @handles(Assessment.Approved)
    def approved(self, curs, e):
        self._update(curs, e, "score = %s, stars = %s", (e.score, e.stars))

    @handles(Assessment.PublicityOpened)
    def publicity_opened(self, curs, e):
        self._update(curs, e, "stage = 'publicity', publicity_ends_at = %s", (e.ends_at,))

    @handles(Assessment.ObjectionLodged)
    def objection(self, curs, e):
        self._update(curs, e, "objections = objections + 1, "
                     "open_objections = open_objections + 1")
        curs.execute(
            "INSERT INTO eval_objections (cycle_id, org_id, objection_no, org_name, college_id, "
            "text, objector, lodged_at) SELECT a.cycle_id, a.org_id, a.objections, a.org_name, "
            "a.college_id, %s, %s, %s FROM eval_assessments a WHERE a.id = %s",
            (e.text, (e.actor or {}).get("sub"), e.timestamp, e.originator_id))

    @handles(Assessment.ObjectionDecided)
    def objection_decided(self, curs, e):
        self._update(curs, e, "open_objections = greatest(open_objections - 1, 0)")
        curs.execute(
            "UPDATE eval_objections SET status = %s, decided_by = %s, decided_at = %s, "
            "reason = %s WHERE cycle_id = %s AND org_id = %s AND objection_no = %s",
            (e.decision, _j(e.actor), e.timestamp, e.reason, e.cycle_id, e.org_id,
             e.objection_no))

    @handles(Assessment.PublicityClosed)
    def publicity_closed(self, curs, e):
        self._update(curs, e, "stage = 'final', final_at = %s, appeal_until = %s",
                     (e.final_at, e.appeal_until))

    @handles(Assessment.AppealLodged)
    def appeal_lodged(self, curs, e):
        self._update(curs, e, "stage = 'appeal'")

    @handles(Assessment.AppealDecided)
    def appeal_decided(self, curs, e):
        if e.decision == "upheld":
            self._update(curs, e, "stage = 'review', reopened = true")
        else:
            self._update(curs, e, "stage = 'final'")

    @handles(Assessment.DirectlyGraded)
    def directly_graded(self, curs, e):
        self._update(curs, e, "direct_stars = %s, stars = CASE WHEN stage IN "
                     "('publicity', 'final') THEN %s ELSE stars END", (e.stars, e.stars))

    @handles(Assessment.Dropped)
    def dropped(self, curs, e):
        self._update(curs, e, "stage = 'dropped'")

    # -- ratings -----------------------------------------------------------------
    # Folded (shared.projection.folds): a page of rating events becomes a few
    # set-based writes, each rating's row written once however often it changed.
    def new_batch(self) -> "RatingBatch":
        return RatingBatch()

    def write_batch(self, curs, batch: "RatingBatch") -> None:
        if batch.closes:
            # A rating changed: the open period of the one before it ends (the
            # periods opened in this batch were closed as it was folded).
            closes = list(batch.closes.items())
            if bulk(curs, closes):
                staged = stage(curs, [("org_id", "uuid"), ("valid_to", "timestamptz")], closes)
                curs.execute(sql.SQL(
                    "UPDATE eval_rating_history h SET valid_to = v.valid_to FROM {} v "
                    "WHERE h.org_id = v.org_id AND h.valid_to IS NULL").format(staged))
            else:
                curs.executemany("UPDATE eval_rating_history SET valid_to = %s "
                                 "WHERE org_id = %s AND valid_to IS NULL",
                                 [(valid_to, org) for org, valid_to in closes])
        if batch.inherits:
            # Downgrades and restorations keep the breakdown of the result before
            # them: where that result is older than the batch, eval_ratings holds it
            # (not yet written over: the batch writes below).
            curs.execute("SELECT rating_id::text AS rating_id, breakdown FROM eval_ratings "
                         "WHERE rating_id = ANY(%s)",
                         (list({r for r in batch.inherits.values()}),))
            before = {r["rating_id"]: r["breakdown"] for r in curs.fetchall()}
            for key, rating_id in batch.inherits.items():
                batch.history.update(key, breakdown=_j(before.get(rating_id)))
            batch.inherits.clear()
        batch.write(curs)

    @folds(Rating.Opened)
    def rating_opened(self, batch, e):
        batch.ratings.insert(e.originator_id, org_id=e.org_id, org_name=e.org_name,
                             level=e.level, updated_at=e.timestamp,
                             version=e.originator_version, open_problems=0)

    @folds(Rating.UnderlyingSet)
    def underlying_set(self, batch, e):
        batch.ratings.update(str(e.originator_id), underlying=e.stars,
                             version=e.originator_version)

    @folds(Rating.Changed)
    def rating_changed(self, batch, e):
        # Every attribute read once (a rebuild folds every rating change here).
        stamp, version, cause = e.timestamp, e.originator_version, e.cause
        stars, score, cycle_id = e.stars_after, e.score, e.cycle_id
        scheme_id, scheme_version = e.scheme_id, e.scheme_version
        ratings, history = batch.ratings, batch.history
        changes = dict(stars=stars, score=score, cause=cause, scheme_id=scheme_id,
                       scheme_version=scheme_version, updated_at=stamp, version=version)
        if cycle_id is not None:
            changes["cycle_id"] = cycle_id
        rating_id = str(e.originator_id)
        if cause in _OWN_BREAKDOWN:
            changes["breakdown"] = breakdown = _j(e.breakdown)
        else:  # the breakdown in force before: this batch's, or the stored one
            breakdown = ratings.get(rating_id, "breakdown", _INHERIT)
        ratings.update(rating_id, **changes)
        org = str(e.org_id)
        still_open = batch.open_periods.get(org)
        if still_open is not None:
            history.update(still_open, valid_to=stamp)
        else:
            batch.closes.setdefault(org, stamp)
        history.insert(
            (org, version), stars_before=e.stars_before, stars_after=stars, score=score,
            cause=cause, scheme_id=scheme_id, scheme_version=scheme_version,
            cycle_id=cycle_id, actor=_j(e.actor), reason=e.reason, evidence=_j(e.evidence),
            valid_from=stamp, valid_to=None, recorded_at=stamp,
            breakdown=None if breakdown is _INHERIT else breakdown)
        if breakdown is _INHERIT:
            batch.inherits[(org, str(version))] = rating_id
        batch.open_periods[org] = (org, version)

    @handles(Rating.Backfilled)
    def rating_backfilled(self, curs, e):
        """A past result: it takes its place in the history at its effective date
        (the start of that day, UTC), between the ratings before and after it."""
        effective = dt.datetime.combine(dt.date.fromisoformat(e.effective_on), dt.time(),
                                        tzinfo=dt.timezone.utc)
        if e.current:
            curs.execute(
                "UPDATE eval_ratings SET stars = %s, underlying = %s, "
                "score = coalesce(%s, score), cause = 'backfill', updated_at = %s, version = %s "
                "WHERE rating_id = %s", (e.stars, e.stars, e.score, e.timestamp,
                                         e.originator_version, e.originator_id))
        else:
            curs.execute("UPDATE eval_ratings SET version = %s WHERE rating_id = %s",
                         (e.originator_version, e.originator_id))
        curs.execute(
            "SELECT version, stars_after FROM eval_rating_history WHERE org_id = %s "
            "AND valid_from < %s ORDER BY valid_from DESC, version DESC LIMIT 1",
            (e.org_id, effective))
        before = curs.fetchone()
        curs.execute("SELECT min(valid_from) AS next FROM eval_rating_history "
                     "WHERE org_id = %s AND valid_from > %s", (e.org_id, effective))
        after = curs.fetchone()["next"]
        if before is not None:
            curs.execute("UPDATE eval_rating_history SET valid_to = %s "
                         "WHERE org_id = %s AND version = %s",
                         (effective, e.org_id, before["version"]))
        curs.execute(
            "INSERT INTO eval_rating_history (org_id, version, stars_before, stars_after, score, "
            "cause, actor, reason, evidence, valid_from, valid_to, recorded_at) "
            "VALUES (%s,%s,%s,%s,%s,'backfill',%s,%s,%s,%s,%s,%s)",
            (e.org_id, e.originator_version, before["stars_after"] if before else None,
             e.stars, e.score, _j(e.actor), e.reason, _j(e.evidence), effective, after,
             e.timestamp))

    @folds(Rating.RectificationObliged)
    def rectification_obliged(self, batch, e):
        batch.problems.insert((e.org_id, e.problem_id), description=e.description,
                              downgrade_to=e.stars, status="open",
                              rectification_due=e.rectification_due, recorded_at=e.timestamp,
                              updated_at=e.timestamp, kind="low_stars")
        batch.ratings.increment(e.originator_id, "open_problems")

    @folds(Rating.MajorProblemRecorded)
    def problem_recorded(self, batch, e):
        batch.problems.insert((e.org_id, e.problem_id), description=e.description,
                              downgrade_to=e.downgrade_to, status="open",
                              rectification_due=e.rectification_due, recorded_at=e.timestamp,
                              updated_at=e.timestamp, kind="major_problem")
        batch.ratings.increment(e.originator_id, "open_problems")

    @folds(Rating.RectificationPlanned)
    def rectification_planned(self, batch, e):
        batch.problems.update((e.org_id, e.problem_id), status="planned", plan=e.plan,
                              plan_due=e.due, updated_at=e.timestamp, planned_at=e.timestamp)

    @folds(Rating.RectificationCompleted)
    def rectification_completed(self, batch, e):
        batch.problems.update((e.org_id, e.problem_id), status="completed",
                              updated_at=e.timestamp, completed_at=e.timestamp)

    @folds(Rating.RectificationVerified)
    def rectification_verified(self, batch, e):
        batch.problems.update((e.org_id, e.problem_id), status="verified",
                              updated_at=e.timestamp, verified_at=e.timestamp)


class RatingBatch(Batch):
    """A page of rating events folded: ``eval_ratings`` by rating, new history
    periods by (org, version), problems by (org, problem); ``closes`` ends the
    open period of an organisation whose rating changed (at the first change),
    ``open_periods`` the period this batch opened last, per organisation."""

    def __init__(self):
        super().__init__()
        self.closes: dict[str, dt.datetime] = {}
        self.open_periods: dict[str, tuple] = {}
        # history rows (org, version) whose breakdown is the one eval_ratings holds
        # before the batch, by rating id
        self.inherits: dict[tuple, str] = {}
        self.ratings = self.table("eval_ratings", "rating_id")
        self.history = self.table("eval_rating_history", "org_id", "version")
        self.problems = self.table("eval_problems", "org_id", "problem_id")
