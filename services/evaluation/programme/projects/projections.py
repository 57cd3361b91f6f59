"""Read models of innovation projects (党建创新项目), rebuildable from zero:
``prog_projects`` (one row per project and round) and ``prog_project_moves``."""
from __future__ import annotations

from psycopg.types.json import Jsonb

from shared.projection import handles
from services.evaluation.programme.projects.domain import InnovationProject

DDL = (
    """CREATE TABLE IF NOT EXISTS prog_projects (
        id uuid PRIMARY KEY, round text NOT NULL, org_id uuid NOT NULL, org_name text NOT NULL,
        level int NOT NULL, college_id uuid, name text NOT NULL, summary text,
        stage text NOT NULL, applied_on date NOT NULL, stage_on date NOT NULL,
        midterm_verdict text, results jsonb NOT NULL DEFAULT '[]', grade text,
        version int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS prog_projects_round ON prog_projects (round, stage)",
    """CREATE TABLE IF NOT EXISTS prog_project_moves (
        project_id uuid NOT NULL, version int NOT NULL, org_id uuid NOT NULL,
        from_stage text, to_stage text NOT NULL, on_date date NOT NULL, actor jsonb,
        reason text, evidence jsonb, recorded_at timestamptz NOT NULL,
        PRIMARY KEY (project_id, version))""",
)
TABLES = ("prog_projects", "prog_project_moves")


class ProjectsReadModel:
    """Handlers mixed into the programme's read model (one projector position)."""

    @handles(InnovationProject.Applied)
    def project_applied(self, curs, e):
        curs.execute(
            "INSERT INTO prog_projects (id, round, org_id, org_name, level, college_id, name, "
            "summary, stage, applied_on, stage_on, version) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,'applied',%s,%s,%s)",
            (e.originator_id, e.round, e.org_id, e.org_name, e.level, e.college_id, e.name,
             e.summary, e.on, e.on, e.originator_version))
        curs.execute(
            "INSERT INTO prog_project_moves (project_id, version, org_id, from_stage, to_stage, "
            "on_date, actor, reason, evidence, recorded_at) "
            "VALUES (%s,%s,%s,NULL,'applied',%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.org_id, e.on, Jsonb(e.actor), e.reason,
             Jsonb(e.evidence or []), e.timestamp))

    @handles(InnovationProject.Moved)
    def project_moved(self, curs, e):
        curs.execute(
            "UPDATE prog_projects SET stage = %s, stage_on = %s, "
            "midterm_verdict = COALESCE(%s, midterm_verdict), "
            "results = CASE WHEN %s = 'completed' THEN %s ELSE results END, "
            "grade = CASE WHEN %s = 'completed' THEN %s ELSE grade END, version = %s "
            "WHERE id = %s",
            (e.to_stage, e.on, e.midterm_verdict, e.to_stage, Jsonb(e.results), e.to_stage,
             e.grade, e.originator_version, e.originator_id))
        curs.execute(
            "INSERT INTO prog_project_moves (project_id, version, org_id, from_stage, to_stage, "
            "on_date, actor, reason, evidence, recorded_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (e.originator_id, e.originator_version, e.org_id, e.from_stage, e.to_stage, e.on,
             Jsonb(e.actor), e.reason, Jsonb(e.evidence or []), e.timestamp))
