"""Innovation projects (党建创新项目, R7): commands and queries. A mixin of
``ProgrammeOperations`` (``self.app``: evaluation's application).

Who may do what (docs/rpc.md): an organisation applies for its own project
(its secretary: a branch secretary for the branch, a college secretary for the
college or any of its branches) or 组织部 applies on its behalf; only 组织部
(org_admin) approves, checks at mid-term, completes or stops a project; every
role reads them.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Optional
from uuid import UUID

from pydantic import Field

from shared.commands import (Command, Evidence, Name, Query, Reason, RequiredReason, Text,
                             Version, text_type)
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import BRANCH_SECRETARY, COLLEGE_SECRETARY, ORG_ADMIN, ROLES, Caller
from services.evaluation.programme.projects.domain import (COMPLETION_GRADES, MIDTERM_VERDICTS,
                                                           PROJECT_STAGE_ZH, PROJECT_STAGES,
                                                           InnovationProject, check_round)

RoundCode = text_type(9, 9)
ProjectStage = Literal[PROJECT_STAGES]  # type: ignore[valid-type]
MidtermVerdict = Literal[tuple(MIDTERM_VERDICTS)]  # type: ignore[valid-type]
CompletionGrade = Literal[tuple(COMPLETION_GRADES)]  # type: ignore[valid-type]
ResultText = text_type(500, 1)


class ApplyProject(Command):
    round: RoundCode
    org_id: UUID
    name: Name
    summary: Optional[Text] = None
    on: Optional[dt.date] = None
    reason: Optional[Reason] = None
    evidence: Evidence = []


class MoveProject(Command):
    project_id: UUID
    to_stage: ProjectStage
    on: Optional[dt.date] = None
    reason: RequiredReason
    evidence: Evidence = []
    midterm_verdict: Optional[MidtermVerdict] = None
    results: Annotated[list[ResultText], Field(max_length=50)] = []
    grade: Optional[CompletionGrade] = None
    expected_version: Optional[Version] = None


class ProjectRef(Query):
    project_id: UUID


class ProjectFilter(Query):
    round: Optional[RoundCode] = None
    org_id: Optional[UUID] = None
    college_id: Optional[UUID] = None
    stage: Optional[ProjectStage] = None


class InnovationProjects:

    def _may_apply_for(self, caller: Caller, org: dict) -> None:
        if caller.role == ORG_ADMIN:
            return
        if caller.role == BRANCH_SECRETARY and org["level"] == 3 \
                and caller.org == str(org["id"]):
            return
        if caller.role == COLLEGE_SECRETARY and caller.org in (
                str(org["id"]) if org["level"] == 2 else None, self._college_of(org)):
            return
        raise Forbidden("an organisation's secretary applies for its own innovation project "
                        "(a college secretary also for its branches), or 组织部 (org_admin)")

    def apply_innovation_project(self, caller: Caller, payload: dict) -> dict:
        """申报: an organisation applies for a project in a two-year round."""
        caller.require_role(ORG_ADMIN, COLLEGE_SECRETARY, BRANCH_SECRETARY)
        cmd = ApplyProject.parse(payload)
        round_code = check_round(cmd.round)[0]
        org = self._org(cmd.org_id)
        self._may_apply_for(caller, org)
        if org["status"] != "active":
            raise ValidationError.single("org_id", f"{org['name']} is {org['status']}")
        if self.app.exists(InnovationProject.id_for(round_code, org["id"])):
            raise ValidationError.single(
                "org_id", f"{org['name']} already has an innovation project in round "
                f"{round_code} (一总支一品牌、一支部一特色: one per organisation and round)")
        project = InnovationProject.apply(
            round_code, org, self._college_of(org), cmd.name, cmd.summary,
            (cmd.on or self.app.clock().date()).isoformat(), caller.as_actor(), cmd.reason,
            cmd.evidence)
        return self.app.commit(project,
                               result=lambda: self.get_innovation_project(caller, project.id))

    def move_innovation_project(self, caller: Caller, payload: dict) -> dict:
        """立项 / 不予立项, 中期检查 (with its verdict), 结项 (results and grade) or 终止."""
        caller.require_role(ORG_ADMIN)
        cmd = MoveProject.parse(payload)
        project = self.app.load(cmd.project_id, InnovationProject, "innovation project")
        if cmd.expected_version is not None and project.version != cmd.expected_version:
            raise Conflict(f"the innovation project {project.name} changed (version "
                           f"{project.version}, you read {cmd.expected_version}); reload")
        project.move(cmd.to_stage, (cmd.on or self.app.clock().date()).isoformat(),
                     caller.as_actor(), cmd.reason, cmd.evidence, cmd.midterm_verdict,
                     list(cmd.results), cmd.grade)
        return self.app.commit(project,
                               result=lambda: self.get_innovation_project(caller, project.id))

    @staticmethod
    def _project_row(r: dict) -> dict:
        return {"id": str(r["id"]), "round": r["round"], "org_id": str(r["org_id"]),
                "org_name": r["org_name"], "level": r["level"],
                "college_id": str(r["college_id"]) if r["college_id"] else None,
                "name": r["name"], "summary": r["summary"], "stage": r["stage"],
                "stage_zh": PROJECT_STAGE_ZH[r["stage"]], "applied_on": r["applied_on"].isoformat(),
                "stage_on": r["stage_on"].isoformat(), "midterm_verdict": r["midterm_verdict"],
                "midterm_verdict_zh": MIDTERM_VERDICTS.get(r["midterm_verdict"]),
                "results": r["results"], "grade": r["grade"],
                "grade_zh": COMPLETION_GRADES.get(r["grade"]), "version": r["version"]}

    def get_innovation_project(self, caller: Caller, project_id) -> dict:
        caller.require_role(*ROLES)
        project_id = ProjectRef.of(project_id=project_id).project_id
        row = self.app.query_one("SELECT * FROM prog_projects WHERE id = %s", (project_id,))
        if row is None:
            raise NotFound(f"innovation project {project_id} not found")
        result = self._project_row(row)
        result["moves"] = [
            {"from_stage": m["from_stage"], "to_stage": m["to_stage"],
             "on": m["on_date"].isoformat(), "actor": m["actor"], "reason": m["reason"],
             "evidence": m["evidence"] or [], "recorded_at": m["recorded_at"].isoformat()}
            for m in self.app.query("SELECT * FROM prog_project_moves WHERE project_id = %s "
                                    "ORDER BY version", (project_id,))]
        return result

    def list_innovation_projects(self, caller: Caller, round: str | None = None,
                                 org_id=None, college_id=None, stage: str | None = None
                                 ) -> dict:
        """Projects by round, organisation (its own), college (its own and its
        branches') and stage, with the count per stage."""
        caller.require_role(*ROLES)
        f = ProjectFilter.of(round=round, org_id=org_id, college_id=college_id, stage=stage)
        if f.round is not None:
            check_round(f.round)
        sql, params = "SELECT * FROM prog_projects WHERE true", []
        for column, value in (("round", f.round), ("org_id::text", f.org_id),
                              ("stage", f.stage)):
            if value is not None:
                sql += f" AND {column} = %s"
                params.append(str(value))
        if f.college_id is not None:
            sql += " AND (college_id::text = %s OR org_id::text = %s)"
            params += [str(f.college_id), str(f.college_id)]
        projects = [self._project_row(r) for r in self.app.query(
            sql + " ORDER BY round DESC, level, org_name", params)]
        by_stage = {s: {"stage_zh": PROJECT_STAGE_ZH[s], "count": 0} for s in PROJECT_STAGES}
        for p in projects:
            by_stage[p["stage"]]["count"] += 1
        return {"filters": {"round": f.round, "org_id": str(f.org_id) if f.org_id else None,
                            "college_id": str(f.college_id) if f.college_id else None,
                            "stage": f.stage},
                "by_stage": by_stage, "projects": projects}
