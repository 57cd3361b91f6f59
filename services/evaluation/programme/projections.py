"""Read models of the creation programme (三级联创), rebuildable from zero.

``prog_candidacies`` (one row per candidacy, its current stage and title
period), ``prog_candidacy_moves`` (every move, dated) and ``prog_acceptances``
(验收 scored against the standard) feed the progress view and 创建未达标;
``prog_plans``, ``prog_brands`` (+ recognitions), ``prog_tasks``,
``prog_milestones`` and ``prog_task_reports`` the rest; ``prog_plan_versions``,
``prog_task_versions``, ``prog_milestone_versions`` and ``prog_milestone_flags``
keep each version from the moment it was recorded, so targets and the task book
are answered as of a moment (with the reports' ``recorded_at``). The innovation
projects' (``projects/``) and schedule rules' (``schedule/``) tables are mixed in.
"""
from __future__ import annotations

from psycopg.types.json import Jsonb

from shared.projection import Projection, handles
from services.evaluation.programme.domain import Brand, Candidacy, Plan, Task
from services.evaluation.programme.projects import projections as projects
from services.evaluation.programme.schedule import projections as schedule

DDL = (
    """CREATE TABLE IF NOT EXISTS prog_candidacies (
        id uuid PRIMARY KEY, org_id uuid NOT NULL, org_name text NOT NULL, level int NOT NULL,
        college_id uuid, title text NOT NULL, tier text NOT NULL, attempt int NOT NULL,
        stage text NOT NULL, nominated_on date NOT NULL, stage_on date NOT NULL,
        held_from date, held_until date, ladder jsonb, updated_at timestamptz NOT NULL,
        version int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS prog_candidacies_org ON prog_candidacies (org_id, tier)",
    """CREATE TABLE IF NOT EXISTS prog_candidacy_moves (
        candidacy_id uuid NOT NULL, version int NOT NULL, org_id uuid NOT NULL,
        from_stage text, to_stage text NOT NULL, on_date date NOT NULL, actor jsonb,
        reason text, evidence jsonb, recorded_at timestamptz NOT NULL,
        PRIMARY KEY (candidacy_id, version))""",
    "CREATE INDEX IF NOT EXISTS prog_candidacy_moves_org ON prog_candidacy_moves (org_id, on_date)",
    """CREATE TABLE IF NOT EXISTS prog_acceptances (
        candidacy_id uuid NOT NULL, version int NOT NULL, org_id uuid NOT NULL,
        scheme_id text NOT NULL, scheme_version int NOT NULL, score float8 NOT NULL,
        band_stars int, outcome text NOT NULL, rule jsonb NOT NULL, findings jsonb NOT NULL,
        breakdown jsonb NOT NULL, entries jsonb NOT NULL, on_date date NOT NULL, actor jsonb,
        reason text, evidence jsonb, recorded_at timestamptz NOT NULL,
        PRIMARY KEY (candidacy_id, version))""",
    """CREATE TABLE IF NOT EXISTS prog_plans (
        id uuid PRIMARY KEY, code text NOT NULL UNIQUE, name text NOT NULL,
        starts_on date NOT NULL, ends_on date NOT NULL, targets jsonb NOT NULL,
        brand_target jsonb, updated_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS prog_brands (
        id uuid PRIMARY KEY, name text NOT NULL, kind text NOT NULL, org_id uuid NOT NULL,
        org_name text NOT NULL, level text, recognised_on date,
        recognitions jsonb NOT NULL DEFAULT '[]', registered_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS prog_tasks (
        id uuid PRIMARY KEY, number text NOT NULL UNIQUE, section text NOT NULL,
        title text NOT NULL, lead_department text NOT NULL, cooperating jsonb NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS prog_milestones (
        task_id uuid NOT NULL, milestone_id text NOT NULL, title text NOT NULL,
        year int NOT NULL, due_on date NOT NULL, status text NOT NULL,
        completed_on date, overdue_at timestamptz, updated_at timestamptz NOT NULL,
        PRIMARY KEY (task_id, milestone_id))""",
    "CREATE INDEX IF NOT EXISTS prog_milestones_due ON prog_milestones (due_on) "
    "WHERE status <> 'completed' AND overdue_at IS NULL",
    # Validity history (as of a moment): each version of a plan's targets, of a
    # measure's departments, of a milestone (title, due date), and each overdue
    # flag, from the moment it was recorded; completions are the reports' rows.
    """CREATE TABLE IF NOT EXISTS prog_plan_versions (
        plan_id uuid NOT NULL, version int NOT NULL, targets jsonb NOT NULL,
        brand_target jsonb, valid_from timestamptz NOT NULL, PRIMARY KEY (plan_id, version))""",
    """CREATE TABLE IF NOT EXISTS prog_task_versions (
        task_id uuid NOT NULL, version int NOT NULL, lead_department text NOT NULL,
        cooperating jsonb NOT NULL, actor jsonb, reason text, valid_from timestamptz NOT NULL,
        PRIMARY KEY (task_id, version))""",
    """CREATE TABLE IF NOT EXISTS prog_milestone_versions (
        task_id uuid NOT NULL, version int NOT NULL, milestone_id text NOT NULL,
        title text NOT NULL, year int NOT NULL, due_on date NOT NULL,
        valid_from timestamptz NOT NULL, PRIMARY KEY (task_id, version))""",
    """CREATE TABLE IF NOT EXISTS prog_milestone_flags (
        task_id uuid NOT NULL, version int NOT NULL, milestone_id text NOT NULL,
        due_on date NOT NULL, flagged_at timestamptz NOT NULL, PRIMARY KEY (task_id, version))""",
    """CREATE TABLE IF NOT EXISTS prog_task_reports (
        task_id uuid NOT NULL, version int NOT NULL, milestone_id text, department text NOT NULL,
        text text NOT NULL, completed bool NOT NULL, on_date date NOT NULL, actor jsonb,
        evidence jsonb, recorded_at timestamptz NOT NULL, PRIMARY KEY (task_id, version))""",
)


def _j(value):
    return None if value is None else Jsonb(value)


class ProgrammeReadModel(projects.ProjectsReadModel, schedule.ScheduleReadModel, Projection):
    """The programme's read models, the sub-domains' (innovation projects,
    schedule rules) mixed in: one projection, one position in the log."""
    ddl = DDL + projects.DDL + schedule.DDL
    tables = ("prog_candidacies", "prog_candidacy_moves", "prog_acceptances", "prog_plans",
              "prog_brands", "prog_tasks", "prog_milestones", "prog_task_reports",
              "prog_plan_versions", "prog_task_versions", "prog_milestone_versions",
              "prog_milestone_flags",
              *projects.TABLES, *schedule.TABLES)

    # -- candidacies ---------------------------------------------------------------
    @handles(Candidacy.Nominated)
    def nominated(self, curs, e):
        curs.execute(
            "INSERT INTO prog_candidacies (id, org_id, org_name, level, college_id, title, tier, "
            "attempt, stage, nominated_on, stage_on, ladder, updated_at, version) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,'cultivating',%s,%s,%s,%s,%s)",
            (e.originator_id, e.org_id, e.org_name, e.level, e.college_id, e.title, e.tier,
             e.attempt, e.on, e.on, _j(e.ladder), e.timestamp, e.originator_version))
        curs.execute(
            "INSERT INTO prog_candidacy_moves (candidacy_id, version, org_id, from_stage, "
            "to_stage, on_date, actor, reason, evidence, recorded_at) "
            "VALUES (%s,%s,%s,NULL,'cultivating',%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.org_id, e.on, _j(e.actor), e.reason,
             _j(e.evidence), e.timestamp))

    @handles(Candidacy.Moved)
    def moved(self, curs, e):
        curs.execute(
            "UPDATE prog_candidacies SET stage = %s, stage_on = %s, "
            "held_from = CASE WHEN %s = 'passed' THEN %s::date ELSE held_from END, "
            "held_until = CASE WHEN %s = 'passed' THEN %s::date ELSE held_until END, "
            "updated_at = %s, version = %s WHERE id = %s",
            (e.to_stage, e.on, e.to_stage, e.on, e.to_stage, e.held_until, e.timestamp,
             e.originator_version, e.originator_id))
        curs.execute(
            "INSERT INTO prog_candidacy_moves (candidacy_id, version, org_id, from_stage, "
            "to_stage, on_date, actor, reason, evidence, recorded_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.org_id, e.from_stage, e.to_stage, e.on,
             _j(e.actor), e.reason, _j(e.evidence), e.timestamp))

    @handles(Candidacy.AcceptanceScored)
    def acceptance_scored(self, curs, e):
        curs.execute(
            "INSERT INTO prog_acceptances (candidacy_id, version, org_id, scheme_id, "
            "scheme_version, score, band_stars, outcome, rule, findings, breakdown, entries, "
            "on_date, actor, reason, evidence, recorded_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.org_id, e.scheme_id, e.scheme_version,
             e.score, e.band_stars, e.outcome, Jsonb(e.rule), Jsonb(e.findings),
             Jsonb(e.breakdown), Jsonb(e.entries), e.on, _j(e.actor), e.reason,
             _j(e.evidence), e.timestamp))

    # -- plans and brands --------------------------------------------------------------
    @handles(Plan.Defined)
    def plan_defined(self, curs, e):
        curs.execute(
            "INSERT INTO prog_plans (id, code, name, starts_on, ends_on, targets, brand_target, "
            "updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.code, e.name, e.starts_on, e.ends_on, Jsonb(e.targets),
             _j(e.brand_target), e.timestamp))
        self._plan_version(curs, e)

    @handles(Plan.Retargeted)
    def plan_retargeted(self, curs, e):
        curs.execute("UPDATE prog_plans SET targets = %s, brand_target = %s, updated_at = %s "
                     "WHERE id = %s", (Jsonb(e.targets), _j(e.brand_target), e.timestamp,
                                       e.originator_id))
        self._plan_version(curs, e)

    @staticmethod
    def _plan_version(curs, e):
        curs.execute("INSERT INTO prog_plan_versions (plan_id, version, targets, brand_target, "
                     "valid_from) VALUES (%s,%s,%s,%s,%s)",
                     (e.originator_id, e.originator_version, Jsonb(e.targets),
                      _j(e.brand_target), e.timestamp))

    @handles(Brand.Registered)
    def brand_registered(self, curs, e):
        curs.execute(
            "INSERT INTO prog_brands (id, name, kind, org_id, org_name, registered_at) "
            "VALUES (%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.name, e.kind, e.org_id, e.org_name, e.timestamp))

    @handles(Brand.Recognised)
    def brand_recognised(self, curs, e):
        # level/recognised_on: the highest recognition (its first date at that level)
        curs.execute(
            "UPDATE prog_brands SET recognitions = recognitions || %s, "
            "recognised_on = CASE WHEN level IS NULL OR array_position(ARRAY['school',"
            "'provincial','national'], %s) > array_position(ARRAY['school','provincial',"
            "'national'], level) THEN %s::date ELSE recognised_on END, "
            "level = CASE WHEN level IS NULL OR array_position(ARRAY['school','provincial',"
            "'national'], %s) > array_position(ARRAY['school','provincial','national'], level) "
            "THEN %s ELSE level END WHERE id = %s",
            (Jsonb([{"level": e.level, "on": e.on}]), e.level, e.on, e.level, e.level,
             e.originator_id))

    # -- the task book -----------------------------------------------------------------
    @handles(Task.Registered)
    def task_registered(self, curs, e):
        curs.execute(
            "INSERT INTO prog_tasks (id, number, section, title, lead_department, cooperating) "
            "VALUES (%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.number, e.section, e.title, e.lead_department,
             Jsonb(e.cooperating)))
        self._task_version(curs, e)

    @handles(Task.DepartmentsReassigned)
    def task_departments_reassigned(self, curs, e):
        curs.execute("UPDATE prog_tasks SET lead_department = %s, cooperating = %s WHERE id = %s",
                     (e.lead_department, Jsonb(e.cooperating), e.originator_id))
        self._task_version(curs, e)

    @staticmethod
    def _task_version(curs, e):
        curs.execute("INSERT INTO prog_task_versions (task_id, version, lead_department, "
                     "cooperating, actor, reason, valid_from) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                     (e.originator_id, e.originator_version, e.lead_department,
                      Jsonb(e.cooperating), _j(e.actor), e.reason, e.timestamp))

    @handles(Task.MilestoneSet)
    def milestone_set(self, curs, e):
        curs.execute(
            "INSERT INTO prog_milestones (task_id, milestone_id, title, year, due_on, status, "
            "updated_at) VALUES (%s,%s,%s,%s,%s,'open',%s) ON CONFLICT (task_id, milestone_id) "
            "DO UPDATE SET title = EXCLUDED.title, year = EXCLUDED.year, "
            "overdue_at = CASE WHEN prog_milestones.due_on = EXCLUDED.due_on "
            "THEN prog_milestones.overdue_at END, due_on = EXCLUDED.due_on, "
            "updated_at = EXCLUDED.updated_at",
            (e.originator_id, e.milestone_id, e.title, e.year, e.due_on, e.timestamp))
        curs.execute("INSERT INTO prog_milestone_versions (task_id, version, milestone_id, title, "
                     "year, due_on, valid_from) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                     (e.originator_id, e.originator_version, e.milestone_id, e.title, e.year,
                      e.due_on, e.timestamp))

    @handles(Task.ProgressReported)
    def progress_reported(self, curs, e):
        curs.execute(
            "INSERT INTO prog_task_reports (task_id, version, milestone_id, department, text, "
            "completed, on_date, actor, evidence, recorded_at) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.milestone_id, e.department, e.text,
             e.completed, e.on, _j(e.actor), _j(e.evidence), e.timestamp))
        if e.completed:
            curs.execute("UPDATE prog_milestones SET status = 'completed', completed_on = %s, "
                         "updated_at = %s WHERE task_id = %s AND milestone_id = %s",
                         (e.on, e.timestamp, e.originator_id, e.milestone_id))

    @handles(Task.MilestoneOverdue)
    def milestone_overdue(self, curs, e):
        curs.execute("UPDATE prog_milestones SET overdue_at = %s, updated_at = %s "
                     "WHERE task_id = %s AND milestone_id = %s",
                     (e.timestamp, e.timestamp, e.originator_id, e.milestone_id))
        curs.execute("INSERT INTO prog_milestone_flags (task_id, version, milestone_id, due_on, "
                     "flagged_at) VALUES (%s,%s,%s,%s,%s)",
                     (e.originator_id, e.originator_version, e.milestone_id, e.due_on,
                      e.timestamp))
