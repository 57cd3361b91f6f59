"""Evaluation (考评): schemes, cycles, fortress index and star ratings (issue 3).

Who may do what (see docs/rpc.md):
* org_admin (组织部) publishes schemes, opens cycles, approves (审定), extends
  deadlines, grades directly (直接定级), decides appeals, verifies rectifications;
* a branch secretary submits its own branch's self-assessment (自评) and appeals;
* a college secretary reviews (审核) its own branches and submits its own
  college's self-assessment;
* members lodge objections (异议) in their own organisation during publicity;
* org_admin or an auditor (纪委办) records a major problem (重大问题); auditors
  read everything.

Organisations come from the service's own ``OrgDirectory`` (organizations'
events); new ones join open cycles of their level and dissolved or merged ones
drop out through a directory listener.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Literal, Optional
from uuid import UUID, uuid4

from pydantic import Field

from shared.imports import ImportFile
from shared.commands import (CollegeFilter, Command, Days, Document, Evidence, Ids, Key,
                             Mapping, Moment, Name, OrgRef, Query, Reason, RequiredEvidence,
                             RequiredReason, RequiredText, Text, Version, text_type)
from shared.audit import AuditQueries
from shared.config import DatabaseSettings
from shared.domain import parse_moment
from shared.directory import DirectoryOperations, OrgDirectory
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.history import AuditedHistory
from shared.identity import (AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, MEMBER, OPS,
                             ORG_ADMIN, ROLES, Caller)
from shared.parking import ParkingOperations
from shared.projection import Projector
from shared.published_log import PublishedLogQueries
from shared.store import EventSourcedApplication
from services.evaluation.audit.application import (AssessmentsAsOf, DistributionQuery,
                                                   RatingHistory)
from services.evaluation.domain import (STAGE_ZH, STAGES, Assessment, Cycle, Rating, Scheme,
                                        stage_due)
from services.evaluation.linkage.application import Linkage
from services.evaluation.linkage.projections import LinkageReadModel
from services.evaluation.members.application import MembersIndex
from services.evaluation.members.derived import Derivations
from services.evaluation.members.projections import IndexReadModel
from services.evaluation.programme.application import ProgrammeOperations
from services.evaluation.projections import EvaluationReadModel
from services.evaluation.spreadsheets.application import EvaluationSpreadsheets
from services.evaluation.schemes import (DERIVATION_PROVIDERS, RATED_LEVELS, apply_quotas, check_entries,
                                         default_schemes, parse_scheme_text, score,
                                         validate_scheme)

log = logging.getLogger(__name__)

SYSTEM_ACTOR = {"sub": "system", "role": "system"}
Stage = Literal[STAGES]  # type: ignore[valid-type]
Period = text_type(40, 1)
ProblemId = text_type(80, 1)
# Indicator, bonus, deduction and veto codes of a scheme; at most this many per map or list.
CODES_MAX = 200
Codes = Annotated[list[Key], Field(max_length=CODES_MAX)]


# -- commands ----------------------------------------------------------------
class PublishScheme(Command):
    definition: Optional[Mapping] = None
    text: Optional[Document] = None
    format: Literal["yaml", "json"] = "yaml"
    dry_run: bool = False
    reason: Optional[Reason] = None


class OpenCycle(Command):
    name: Name
    level: int = Field(ge=1, le=3)
    period: Period
    deadlines: Annotated[dict[Key, Moment], Field(max_length=10)]
    org_ids: Optional[Ids()] = None
    college_id: Optional[UUID] = None
    scheme_id: Optional[Key] = None
    publicity_days: Optional[Days] = None
    appeal_days: Optional[Days] = None
    auto_add: bool = True
    reason: Optional[Reason] = None


class CycleOrg(Command):
    cycle_id: UUID
    org_id: UUID
    reason: Optional[Reason] = None


class SubmitEntries(Command):
    cycle_id: UUID
    org_id: UUID
    scores: Annotated[dict[Key, float], Field(max_length=CODES_MAX)] = Field(
        default_factory=dict)
    evidence: Annotated[dict[Key, Evidence], Field(max_length=CODES_MAX)] = Field(
        default_factory=dict)
    bonus: Codes = Field(default_factory=list)
    deductions: Codes = Field(default_factory=list)
    vetoes: Codes = Field(default_factory=list)
    appraisal: Optional[float] = None
    comments: Optional[Text] = None
    expected_version: Optional[Version] = None


class ReturnAssessment(Command):
    cycle_id: UUID
    org_id: UUID
    comments: RequiredText
    expected_version: Optional[Version] = None


class Approve(Command):
    cycle_id: UUID
    org_ids: Ids(min_length=1)
    reason: Optional[Reason] = None


class ClosePublicity(Command):
    cycle_id: UUID
    org_ids: Ids(min_length=1)
    reason: Optional[Reason] = None


class ExtendDeadline(Command):
    cycle_id: UUID
    org_id: UUID
    stage: Stage
    until: Moment
    reason: RequiredReason


class GradeDirectly(Command):
    cycle_id: UUID
    org_id: UUID
    stars: int = Field(ge=1, le=5)
    reason: RequiredReason
    evidence: RequiredEvidence


class Lodge(Command):
    cycle_id: UUID
    org_id: UUID
    text: RequiredText


class DecideAppeal(Command):
    cycle_id: UUID
    org_id: UUID
    decision: Literal["upheld", "dismissed"]
    reason: RequiredReason


class RecordMajorProblem(Command):
    org_id: UUID
    description: RequiredText
    reason: RequiredReason
    evidence: RequiredEvidence
    problem_id: Optional[ProblemId] = None


class PlanRectification(Command):
    org_id: UUID
    problem_id: ProblemId
    plan: RequiredText
    due: dt.date


class CompleteRectification(Command):
    org_id: UUID
    problem_id: ProblemId
    evidence: RequiredEvidence
    reason: Optional[Reason] = None


class VerifyRectification(Command):
    org_id: UUID
    problem_id: ProblemId
    reason: RequiredReason
    evidence: Optional[Evidence] = None


# -- queries -----------------------------------------------------------------
class SchemeRef(Query):
    scheme_id: Key
    version: Optional[Version] = None


class CycleRef(Query):
    cycle_id: UUID


class AssessmentRef(Query):
    cycle_id: UUID
    org_id: UUID


class RatingQuery(Query):
    org_id: UUID
    as_of: Optional[Moment] = None
    replay: bool = False


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class EvaluationApplication(AssessmentsAsOf, RatingHistory, AuditedHistory, AuditQueries,
                            ParkingOperations, DirectoryOperations, PublishedLogQueries,
                            EventSourcedApplication):
    name = "evaluation"
    # Models the API description cannot find by reading the code (shared.api):
    # the import entrypoints hand the payload through to shared.imports.
    API_MODELS = {"preview_import": ImportFile, "apply_import": ImportFile}
    # Ratings and assessments are read as of any moment: snapshots keep a
    # replay short however many events an organisation has accumulated.
    snapshotting_intervals = {Rating: 100, Assessment: 100, Scheme: 20}

    def __init__(self, settings: DatabaseSettings, clock=utcnow):
        super().__init__(settings)
        self.clock = clock
        self.directory = OrgDirectory(self, service="evaluation")
        self.directory.listeners.append(self._on_org_event)
        self.members = MembersIndex(self)  # 锋领指数 from organisational-life records (issue 8)
        DERIVATION_PROVIDERS.update(Derivations(self).providers())
        self.read_model = EvaluationReadModel()
        self.programme = ProgrammeOperations(self)  # 三级联创: services/evaluation/programme
        self.linkage = Linkage(self)  # R1-R4 linkage rules (issue 8)
        Projector(self, [self.read_model, self.programme.read_model, IndexReadModel(),
                         LinkageReadModel()],
                  service="evaluation")
        self.spreadsheets = EvaluationSpreadsheets(self)  # backfill import, printed lists
        self._install_default_schemes()
        self.programme.install_defaults()
        self.members.install_default_scheme()

    # -- helpers -------------------------------------------------------------
    def _install_default_schemes(self) -> None:
        """Publish the shipped defaults once (version 1 of each)."""
        for definition in default_schemes():
            scheme_uuid = Scheme.id_for(definition["scheme_id"])
            if self.exists(scheme_uuid):
                continue
            scheme = Scheme.register(definition["scheme_id"], definition["level"], SYSTEM_ACTOR)
            scheme.publish(definition, SYSTEM_ACTOR, "shipped default (seed 二-四)")
            try:
                self.commit(scheme)
            except Conflict:
                pass  # another instance installed it at the same moment

    def _org(self, org_id, field: str = "org_id") -> dict:
        row = self.directory.org(org_id)
        if row is None:
            raise NotFound(f"{field}: organisation {org_id} is not known to evaluation "
                           "(not created, or its event has not arrived yet)")
        return row

    def _scheme_for(self, scheme_id: str | None, level: int) -> Scheme:
        if scheme_id is None:
            rows = self.query("SELECT DISTINCT scheme_id FROM eval_schemes WHERE level = %s "
                              "ORDER BY scheme_id", (level,))
            if len(rows) != 1:
                raise ValidationError.single(
                    "scheme_id", f"{len(rows)} schemes exist for level {level}: name one of "
                    + ", ".join(r["scheme_id"] for r in rows))
            scheme_id = rows[0]["scheme_id"]
        scheme_uuid = Scheme.id_for(scheme_id)
        if not self.exists(scheme_uuid):
            raise ValidationError.single("scheme_id", f"no scheme {scheme_id!r}")
        return self.load(scheme_uuid, Scheme, "scheme")

    def _cycle(self, cycle_id) -> Cycle:
        return self.load(cycle_id, Cycle, "cycle")

    def _assessment(self, cycle: Cycle, org_id, expected_version: int | None = None
                    ) -> Assessment:
        if not cycle.includes(org_id):
            raise NotFound(f"organisation {org_id} is not in cycle {cycle.name}")
        a = self.load(Assessment.id_for(cycle.id, org_id), Assessment, "assessment")
        if expected_version is not None and a.version != expected_version:
            raise Conflict(f"the assessment of {a.org_name} changed (version {a.version}, "
                           f"you read {expected_version}); reload and try again")
        return a

    def _definition(self, cycle: Cycle) -> dict:
        return self._scheme_for(cycle.scheme_id, cycle.level).definition(cycle.scheme_version)

    def _rating(self, org_id, org_name: str, level: int) -> Rating:
        rating_id = Rating.id_for(org_id)
        if self.exists(rating_id):
            return self.load(rating_id, Rating, "rating")
        return Rating.open_for(org_id, org_name, level, SYSTEM_ACTOR)

    # -- scope ---------------------------------------------------------------
    def _is_secretary_of(self, caller: Caller, a: Assessment) -> bool:
        if a.level == 3:
            return caller.role == BRANCH_SECRETARY and caller.org == a.org_id
        if a.level == 2:
            return caller.role == COLLEGE_SECRETARY and caller.org == a.org_id
        return caller.role == ORG_ADMIN  # the committee's own self-check

    def _may_submit(self, caller: Caller, a: Assessment) -> None:
        if not self._is_secretary_of(caller, a):
            who = {3: "the branch's secretary (branch_secretary of this branch)",
                   2: "the college's secretary (college_secretary of this college)",
                   1: "组织部 (org_admin)"}[a.level]
            raise Forbidden(f"only {who} submits the self-assessment (自评) of {a.org_name}")

    def _may_review(self, caller: Caller, a: Assessment) -> None:
        if caller.role == ORG_ADMIN:
            return
        if a.level == 3 and caller.role == COLLEGE_SECRETARY and caller.org == a.college_id:
            return
        raise Forbidden("a college secretary reviews (审核) its own college's branches only; "
                        "colleges and the committee are reviewed by 组织部 (org_admin)")

    def _may_read_assessment(self, caller: Caller, a: Assessment) -> None:
        if caller.role in (ORG_ADMIN, AUDITOR):
            return
        if self._is_secretary_of(caller, a):
            return
        if caller.role == COLLEGE_SECRETARY and caller.org == a.college_id:
            return
        if caller.role == MEMBER and a.stage in ("publicity", "final", "appeal") \
                and self._member_belongs(caller.sub, a):
            return
        raise Forbidden(f"role '{caller.role}' may not read the assessment of {a.org_name}")

    def _member_belongs(self, member_id: str, a: Assessment) -> bool:
        row = self.query_one("SELECT branch_id FROM dir_members WHERE id::text = %s AND active",
                             (member_id,))
        if row is None or row["branch_id"] is None:
            return False
        branch = str(row["branch_id"])
        if a.level == 3:
            return branch == a.org_id
        if a.level == 2:
            return self.directory.college_of(branch) == a.org_id
        return True

    # -- schemes -------------------------------------------------------------
    def publish_scheme(self, caller: Caller, payload: dict) -> dict:
        """Load a scheme from a file's text (YAML/JSON) or a mapping; every error at once."""
        caller.require_role(ORG_ADMIN)
        cmd = PublishScheme.parse(payload)
        if (cmd.definition is None) == (cmd.text is None):
            raise ValidationError.single("definition", "give either definition or text")
        data = cmd.definition if cmd.definition is not None else \
            parse_scheme_text(cmd.text, cmd.format)
        definition = validate_scheme(data)
        if cmd.dry_run:
            return {"valid": True, "scheme_id": definition["scheme_id"],
                    "level": definition["level"], "published": False}
        scheme_uuid = Scheme.id_for(definition["scheme_id"])
        if self.exists(scheme_uuid):
            scheme = self.load(scheme_uuid, Scheme, "scheme")
        else:
            scheme = Scheme.register(definition["scheme_id"], definition["level"],
                                     caller.as_actor())
        version = scheme.publish(definition, caller.as_actor(), cmd.reason)
        return self.commit(scheme, result=lambda: self.get_scheme(caller, definition["scheme_id"], version))

    def get_scheme(self, caller: Caller, scheme_id: str, version: int | None = None) -> dict:
        caller.require_role(*ROLES)
        query = SchemeRef.of(scheme_id=scheme_id, version=version)
        scheme_id, version = query.scheme_id, query.version
        if version is None:
            row = self.query_one("SELECT * FROM eval_schemes WHERE scheme_id = %s "
                                 "ORDER BY version DESC LIMIT 1", (scheme_id,))
        else:
            row = self.query_one("SELECT * FROM eval_schemes WHERE scheme_id = %s AND "
                                 "version = %s", (scheme_id, int(version)))
        if row is None:
            raise NotFound(f"scheme {scheme_id} version {version or 'latest'} not found")
        return {"scheme_id": row["scheme_id"], "version": row["version"], "level": row["level"],
                "title": row["title"], "published_at": row["published_at"].isoformat(),
                "published_by": row["actor"], "definition": row["definition"]}

    def list_schemes(self, caller: Caller) -> list[dict]:
        caller.require_role(*ROLES)
        return [{"scheme_id": r["scheme_id"], "level": r["level"], "title": r["title"],
                 "latest_version": r["version"], "published_at": r["published_at"].isoformat()}
                for r in self.query(
                    "SELECT DISTINCT ON (scheme_id) * FROM eval_schemes "
                    "ORDER BY scheme_id, version DESC")]

    # -- cycles --------------------------------------------------------------
    def open_cycle(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = OpenCycle.parse(payload)
        if cmd.level not in RATED_LEVELS:
            raise ValidationError.single(
                "level", "star ratings are for grassroots organisations (levels 2 and 3); the "
                "university committee pursues its title (示范高校), not stars")
        scheme = self._scheme_for(cmd.scheme_id, cmd.level)
        if scheme.level != cmd.level:
            raise ValidationError.single("scheme_id", f"scheme {scheme.scheme_id} is for "
                                         f"level {scheme.level}, not {cmd.level}")
        definition = scheme.definition()
        if cmd.college_id is not None:
            college = self._org(cmd.college_id, "college_id")
            if college["level"] != 2 or cmd.level != 3:
                raise ValidationError.single("college_id", "limits a branch (level 3) cycle to "
                                             "the branches of one college (level 2)")
        orgs = self._cycle_orgs(cmd)
        now = self.clock()
        cycle = Cycle.open(
            uuid4(), cmd.name, cmd.level, cmd.period, [o["id"] for o in orgs], cmd.deadlines,
            scheme.scheme_id, scheme.latest_version,
            cmd.publicity_days if cmd.publicity_days is not None else definition["publicity_days"],
            cmd.appeal_days if cmd.appeal_days is not None else definition["appeal_days"],
            cmd.auto_add, cmd.college_id, now, caller.as_actor(), cmd.reason)
        assessments = [Assessment.start(cycle.id, o["id"], o["name"], o["level"],
                                        self._college_of_row(o), caller.as_actor())
                       for o in orgs]
        return self.commit(cycle, *assessments, result=lambda: self.get_cycle(caller, cycle.id))

    def _college_of_row(self, row: dict) -> str | None:
        if row["level"] == 2:
            return str(row["id"])
        if row["level"] == 3:
            return str(row["parent_id"])
        return None

    def _cycle_orgs(self, cmd: OpenCycle) -> list[dict]:
        if cmd.org_ids is None:
            sql = "SELECT * FROM dir_orgs WHERE level = %s AND status = 'active'"
            params: list = [cmd.level]
            if cmd.college_id is not None:
                sql += " AND parent_id = %s"
                params.append(str(cmd.college_id))
            rows = self.query(sql + " ORDER BY name", params)
            if not rows:
                raise ValidationError.single("org_ids", f"no active level-{cmd.level} "
                                             "organisations to evaluate")
            return rows
        errors, rows = [], []
        for i, org_id in enumerate(cmd.org_ids):
            row = self.directory.org(org_id)
            if row is None:
                errors.append({"field": f"org_ids[{i}]", "message": f"unknown organisation {org_id}"})
            elif row["status"] != "active":
                errors.append({"field": f"org_ids[{i}]", "message": f"{row['name']} is {row['status']}"})
            elif row["level"] != cmd.level:
                errors.append({"field": f"org_ids[{i}]",
                               "message": f"{row['name']} is level {row['level']}, not {cmd.level}"})
            elif cmd.college_id is not None and str(row["parent_id"]) != str(cmd.college_id):
                errors.append({"field": f"org_ids[{i}]",
                               "message": f"{row['name']} is not a branch of college_id"})
            else:
                rows.append(row)
        if errors:
            raise ValidationError(errors)
        return rows

    def add_cycle_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = CycleOrg.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        org = self._org(cmd.org_id)
        if org["status"] != "active" or org["level"] != cycle.level:
            raise ValidationError.single("org_id", f"{org['name']} is {org['status']}, level "
                                         f"{org['level']}; the cycle is for level {cycle.level}")
        self._add_to_cycle(cycle, org, caller.as_actor(), cmd.reason)
        return self.get_cycle(caller, cycle.id)

    def _add_to_cycle(self, cycle: Cycle, org: dict, actor: dict, reason) -> None:
        added = cycle.add_organization(org["id"], org["name"], actor, reason)
        assessment_id = Assessment.id_for(cycle.id, org["id"])
        if not added and self.exists(assessment_id):
            return  # already in (a redelivered event, or added by hand)
        pending = [cycle]
        if not self.exists(assessment_id):
            pending.append(Assessment.start(cycle.id, org["id"], org["name"], org["level"],
                                            self._college_of_row(org), actor, reason))
        self.commit(*pending)

    def drop_cycle_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = CycleOrg.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        if not cycle.includes(cmd.org_id):
            raise ValidationError.single("org_id", "is not in this cycle")
        self._drop_from_cycle(cycle, str(cmd.org_id), caller.as_actor(), cmd.reason)
        return self.get_cycle(caller, cycle.id)

    def _drop_from_cycle(self, cycle: Cycle, org_id: str, actor: dict, reason) -> None:
        a = self.load(Assessment.id_for(cycle.id, org_id), Assessment, "assessment")
        if not a.drop(actor, reason):
            raise ValidationError.single("org_id", f"{a.org_name} has a final result in this "
                                         "cycle; it stays on record")
        cycle.drop_organization(org_id, actor, reason)
        self.commit(cycle, a)

    def _on_org_event(self, curs, envelope: dict) -> None:
        """Directory listener: new organisations join open cycles of their level
        (auto_add); dissolved or merged ones drop out. Idempotent, so a
        redelivered event changes nothing twice."""
        kind = envelope["type"]
        if kind == "organization_created":
            data = envelope["data"]
            if data["level"] not in (2, 3):
                return
            curs.execute(
                "SELECT id FROM eval_cycles WHERE level = %s AND auto_add "
                "AND (deadlines->>'approval')::timestamptz > now() "
                "AND (college_id IS NULL OR college_id = %s)",
                (data["level"], data["parent_id"]))
            org = {"id": envelope["originator_id"], "name": data["name"],
                   "level": data["level"], "parent_id": data["parent_id"]}
            for row in curs.fetchall():
                cycle = self._cycle(row["id"])
                self._add_to_cycle(cycle, org, envelope.get("actor") or SYSTEM_ACTOR,
                                   "新建组织 created after the cycle opened")
        elif kind in ("organization_dissolved", "organization_merged"):
            curs.execute("SELECT cycle_id FROM eval_assessments WHERE org_id = %s "
                         "AND stage NOT IN ('final', 'dropped', 'appeal')",
                         (envelope["originator_id"],))
            for row in curs.fetchall():
                cycle = self._cycle(row["cycle_id"])
                if cycle.includes(envelope["originator_id"]):
                    self._drop_from_cycle(cycle, envelope["originator_id"],
                                          envelope.get("actor") or SYSTEM_ACTOR,
                                          f"组织撤销 {kind.split('_')[1]}")

    def get_cycle(self, caller: Caller, cycle_id) -> dict:
        caller.require_role(*ROLES)
        cycle_id = CycleRef.of(cycle_id=cycle_id).cycle_id
        cycle = self._cycle(cycle_id)
        return {"id": str(cycle.id), "name": cycle.name, "level": cycle.level,
                "period": cycle.period, "scheme_id": cycle.scheme_id,
                "scheme_version": cycle.scheme_version, "deadlines": cycle.deadlines,
                "publicity_days": cycle.publicity_days, "appeal_days": cycle.appeal_days,
                "auto_add": cycle.auto_add, "college_id": cycle.college_id,
                "org_ids": [o for o in cycle.org_ids if o not in cycle.dropped],
                "dropped": list(cycle.dropped), "version": cycle.version,
                "opened_at": cycle.created_on.isoformat()}

    def list_cycles(self, caller: Caller) -> list[dict]:
        caller.require_role(*ROLES)
        return [{"id": str(r["id"]), "name": r["name"], "level": r["level"],
                 "period": r["period"], "scheme_id": r["scheme_id"],
                 "scheme_version": r["scheme_version"], "opened_at": r["opened_at"].isoformat()}
                for r in self.query("SELECT * FROM eval_cycles ORDER BY opened_at DESC")]

    # -- the workflow ----------------------------------------------------------
    def _derive(self, a: Assessment, cycle: Cycle):
        """The derived indicators' values from records, asked once per submission."""
        answers: dict = {}

        def derive(indicator: dict):
            if indicator["code"] not in answers:
                provider = DERIVATION_PROVIDERS.get(indicator.get("source"))
                answers[indicator["code"]] = provider(
                    a.org_id, {"cycle_id": str(cycle.id), "period": cycle.period}) \
                    if provider else None
            return answers[indicator["code"]]
        return derive

    def _entries(self, cmd: SubmitEntries, definition: dict, field_prefix: str = "",
                 derive=None) -> dict:
        entries = {"scores": dict(cmd.scores), "evidence": {k: list(v) for k, v in
                                                            cmd.evidence.items()},
                   "bonus": list(cmd.bonus), "deductions": list(cmd.deductions),
                   "vetoes": list(cmd.vetoes), "appraisal": cmd.appraisal}
        derived = None
        if derive is not None:
            derived = {}
            for ind in definition["indicators"]:
                if ind["scoring"] == "derived":
                    value = derive(ind)
                    if value is not None:
                        derived[ind["code"]] = value["explanation"] \
                            if isinstance(value, dict) else "from records"
        errors = check_entries(definition, entries, field_prefix, derived=derived)
        if errors:
            raise ValidationError(errors)
        return entries

    def _submit(self, caller: Caller, payload: dict, stage: str) -> dict:
        cmd = SubmitEntries.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id, cmd.expected_version)
        if stage == "self_assessment":
            self._may_submit(caller, a)
        else:
            self._may_review(caller, a)
        definition = self._definition(cycle)
        derive = self._derive(a, cycle)
        entries = self._entries(cmd, definition, derive=derive)
        result = score(definition, entries, derive)
        a.submit(stage, entries, result, cycle, self.clock(), caller.as_actor(), cmd.comments,
                 entries["evidence"])
        return self.commit(a, result=lambda: self._assessment_out(a, cycle))

    def submit_self_assessment(self, caller: Caller, payload: dict) -> dict:
        """自评: the organisation's secretary submits scores, evidence, comments."""
        return self._submit(caller, payload, "self_assessment")

    def submit_review(self, caller: Caller, payload: dict) -> dict:
        """审核: the level above scores it (self-assessment scores are kept beside)."""
        return self._submit(caller, payload, "review")

    def _change(self, cmd, act, expected_version: int | None = None) -> dict:
        """Load the assessment named by ``cmd``, let ``act`` check and change it,
        save (a concurrent change is a Conflict) and return it."""
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id, expected_version)
        act(a)
        return self.commit(a, result=lambda: self._assessment_out(a, cycle))

    def return_assessment(self, caller: Caller, payload: dict) -> dict:
        cmd = ReturnAssessment.parse(payload)

        def act(a: Assessment):
            if a.stage == "review":
                self._may_review(caller, a)
            else:
                caller.require_role(ORG_ADMIN)
            a.return_(cmd.comments, caller.as_actor())
        return self._change(cmd, act, cmd.expected_version)

    def extend_deadline(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = ExtendDeadline.parse(payload)
        until = parse_moment(cmd.until, "until")
        return self._change(cmd, lambda a: a.extend(cmd.stage, until, self.clock(),
                                                     caller.as_actor(), cmd.reason))

    def approve(self, caller: Caller, payload: dict) -> dict:
        """审定 a batch: final score = the review's; stars from the bands, vetoes,
        then the quota caps ranked over the batch (slots used by earlier
        approvals in the same group count); a direct grading overrides."""
        caller.require_role(ORG_ADMIN)
        cmd = Approve.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        definition = self._definition(cycle)
        batch = []
        errors = []
        for i, org_id in enumerate(dict.fromkeys(cmd.org_ids)):
            try:
                a = self._assessment(cycle, org_id)
            except NotFound as exc:
                errors.append({"field": f"org_ids[{i}]", "message": str(exc)})
                continue
            if a.stage != "approval":
                errors.append({"field": f"org_ids[{i}]",
                               "message": f"{a.org_name} is at {STAGE_ZH[a.stage]}"})
            batch.append(a)
        if errors:
            raise ValidationError(errors)
        candidates = [{"org_id": a.org_id, "score": a.reviewed["score"],
                       "stars": a.reviewed["stars"], "group": a.college_id or "school"}
                      for a in batch if a.direct_grade is None]
        outcome = apply_quotas(definition, candidates, *self._quota_groups(cycle, definition))
        now = self.clock()
        for a in batch:
            verdict = outcome.get(a.org_id, {"stars": a.reviewed["stars"], "notes": []})
            a.approve(a.reviewed["score"], verdict["stars"], verdict["notes"], cycle, now,
                      caller.as_actor(), cmd.reason)
        return self.commit(*batch, result=lambda: {"approved": [self._assessment_out(a, cycle) for a in batch]})

    def _quota_groups(self, cycle: Cycle, definition: dict) -> tuple[dict, dict]:
        sizes = {"school": 0}
        for r in self.query("SELECT coalesce(college_id::text, 'school') AS g, count(*) AS n "
                            "FROM eval_assessments WHERE cycle_id = %s AND stage <> 'dropped' "
                            "GROUP BY 1", (str(cycle.id),)):
            sizes[r["g"]] = sizes.get(r["g"], 0) + r["n"]
            if r["g"] != "school":
                sizes["school"] += r["n"]
        taken = {}
        for quota in definition["quotas"]:
            for r in self.query(
                    "SELECT coalesce(college_id::text, 'school') AS g, count(*) AS n "
                    "FROM eval_assessments WHERE cycle_id = %s AND direct_stars IS NULL AND "
                    "stage IN ('publicity', 'final', 'appeal') AND stars >= %s GROUP BY 1",
                    (str(cycle.id), quota["min_stars"])):
                key = r["g"] if quota["scope"] == "college" else "school"
                taken[(key, quota["min_stars"])] = taken.get((key, quota["min_stars"]), 0) + r["n"]
        return sizes, taken

    def close_publicity(self, caller: Caller, payload: dict) -> dict:
        """公示 over: results become final and each organisation's rating changes."""
        caller.require_role(ORG_ADMIN)
        cmd = ClosePublicity.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        definition = self._definition(cycle)
        now = self.clock()
        changed = []
        for org_id in dict.fromkeys(cmd.org_ids):
            changed += self._finalise(cycle, definition, org_id, now, caller.as_actor(),
                                      cmd.reason)
        return self.commit(*changed, result=lambda: {"final": [self._assessment_out(a, cycle) for a in changed[::2]]})

    def _finalise(self, cycle: Cycle, definition: dict, org_id, now: dt.datetime,
                  actor: dict, reason) -> list:
        """Close one organisation's publicity and apply its result to its rating
        (both saved together by the caller)."""
        a = self._assessment(cycle, org_id)
        a.close_publicity(now, cycle, actor, reason)
        rating = self._rating(a.org_id, a.org_name, a.level)
        cause = "direct_grading" if a.direct_grade else "cycle"
        rating.apply_result(a.stars, a.score, cause, str(cycle.id), cycle.scheme_id,
                            cycle.scheme_version, self._result_breakdown(a), now.date(),
                            definition["major_problem"]["rectification_days"], actor,
                            reason=a.result_reason(f"{cycle.name} 考评结果"),
                            evidence=a.result_evidence())
        return [a, rating]

    def close_expired_publicity(self, limit: int = 200) -> int:
        """Timer: results whose 公示 window has ended become final without anyone
        having to click (actor: system). Each organisation is saved on its own,
        so one that another instance closed first (Conflict) does not hold up
        the rest."""
        now = self.clock()
        closed = 0
        rows = self.query("SELECT cycle_id, org_id FROM eval_assessments WHERE stage = "
                          "'publicity' AND publicity_ends_at <= %s ORDER BY cycle_id LIMIT %s",
                          (now, limit))
        cycles: dict = {}
        for row in rows:
            if row["cycle_id"] not in cycles:
                cycle = self._cycle(row["cycle_id"])
                cycles[row["cycle_id"]] = (cycle, self._definition(cycle))
            cycle, definition = cycles[row["cycle_id"]]
            try:
                self.commit(*self._finalise(cycle, definition, row["org_id"], now, SYSTEM_ACTOR,
                                            "公示期满 publicity window ended"))
                closed += 1
            except (Conflict, ValidationError) as exc:
                log.info("publicity of %s not closed: %s", row["org_id"], exc)
        return closed

    def _result_breakdown(self, a: Assessment) -> dict:
        return {**(a.reviewed or {}), "stars": a.stars, "quota_notes": a.quota_notes,
                "self_assessment": {k: (a.results.get("self_assessment") or {}).get(k)
                                    for k in ("score", "stars")},
                "direct_grade": a.direct_grade}

    def grade_directly(self, caller: Caller, payload: dict) -> dict:
        """直接定级: org_admin sets the stars, only with a reason and evidence."""
        caller.require_role(ORG_ADMIN)
        cmd = GradeDirectly.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id)
        a.grade_directly(cmd.stars, caller.as_actor(), cmd.reason, list(cmd.evidence))
        pending = [a]
        if a.stage == "final":
            definition = self._definition(cycle)
            rating = self._rating(a.org_id, a.org_name, a.level)
            rating.apply_result(cmd.stars, a.score, "direct_grading", str(cycle.id),
                                cycle.scheme_id, cycle.scheme_version, self._result_breakdown(a),
                                self.clock().date(),
                                definition["major_problem"]["rectification_days"],
                                caller.as_actor(), cmd.reason, list(cmd.evidence))
            pending.append(rating)
        return self.commit(*pending, result=lambda: self._assessment_out(a, cycle))

    def lodge_objection(self, caller: Caller, payload: dict) -> dict:
        """异议: a member of the organisation objects during publicity."""
        caller.require_role(MEMBER)
        cmd = Lodge.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        a = self._assessment(cycle, cmd.org_id)
        if not self._member_belongs(caller.sub, a):
            raise Forbidden(f"members lodge objections in their own organisation only; "
                            f"you are not a member of {a.org_name}")
        a.lodge_objection(cmd.text, self.clock(), caller.as_actor())
        return self.commit(a, result=lambda: {
            "cycle_id": str(cycle.id), "org_id": a.org_id, "objections": len(a.objections),
            "publicity_ends_at": a.publicity_ends_at})

    def lodge_appeal(self, caller: Caller, payload: dict) -> dict:
        """申诉: the organisation's secretary appeals within the window after final."""
        cmd = Lodge.parse(payload)

        def act(a: Assessment):
            if not self._is_secretary_of(caller, a):
                raise Forbidden(f"only the secretary of {a.org_name} may appeal its result")
            a.lodge_appeal(cmd.text, self.clock(), caller.as_actor())
        return self._change(cmd, act)

    def decide_appeal(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = DecideAppeal.parse(payload)
        return self._change(cmd, lambda a: a.decide_appeal(cmd.decision, caller.as_actor(),
                                                           cmd.reason))

    # -- reading the workflow ------------------------------------------------------
    def _assessment_out(self, a: Assessment, cycle: Cycle) -> dict:
        due = a.due(a.stage, cycle)
        return {"cycle_id": str(cycle.id), "org_id": a.org_id, "org_name": a.org_name,
                "level": a.level, "college_id": a.college_id, "stage": a.stage,
                "stage_zh": STAGE_ZH[a.stage], "version": a.version,
                "due": due.isoformat() if due else None,
                "self_assessment": {"entries": a.entries.get("self_assessment"),
                                    "result": a.results.get("self_assessment")},
                "review": {"entries": a.entries.get("review"), "result": a.results.get("review")},
                "score": a.score, "stars": a.stars, "quota_notes": a.quota_notes,
                "direct_grade": a.direct_grade,
                "extensions": a.extensions, "returns": a.returns,
                "objections": a.objections, "publicity_ends_at": a.publicity_ends_at,
                "final_at": a.final_at, "appeal_until": a.appeal_until, "appeal": a.appeal,
                "scheme_id": cycle.scheme_id, "scheme_version": cycle.scheme_version}

    def get_assessment(self, caller: Caller, cycle_id, org_id) -> dict:
        query = AssessmentRef.of(cycle_id=cycle_id, org_id=org_id)
        cycle_id, org_id = query.cycle_id, str(query.org_id)
        cycle = self._cycle(cycle_id)
        a = self._assessment(cycle, org_id)
        self._may_read_assessment(caller, a)
        return self._assessment_out(a, cycle)

    def progress_board(self, caller: Caller, cycle_id) -> dict:
        """Which organisation is at which stage, and who is overdue."""
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY, BRANCH_SECRETARY)
        cycle = self._cycle(CycleRef.of(cycle_id=cycle_id).cycle_id)
        sql = "SELECT * FROM eval_assessments WHERE cycle_id = %s"
        params: list = [str(cycle.id)]
        if caller.role == COLLEGE_SECRETARY:
            sql += " AND (college_id = %s OR org_id = %s)"
            params += [caller.org, caller.org]
        elif caller.role == BRANCH_SECRETARY:
            sql += " AND org_id = %s"
            params.append(caller.org)
        now = self.clock()
        rows, by_stage, overdue = [], {}, []
        for r in self.query(sql + " ORDER BY org_name", params):
            due = stage_due(r["stage"], cycle.deadlines, r["extensions"], r["returned_from"],
                            r["reopened"])
            late = due is not None and now > due
            row = {"org_id": str(r["org_id"]), "org_name": r["org_name"],
                   "college_id": str(r["college_id"]) if r["college_id"] else None,
                   "stage": r["stage"], "stage_zh": STAGE_ZH[r["stage"]],
                   "due": due.isoformat() if due else None, "overdue": late,
                   "self_score": r["self_score"], "review_score": r["review_score"],
                   "score": r["score"], "stars": r["stars"], "returns": r["returns"],
                   "objections": r["objections"], "extensions": r["extensions"],
                   "version": r["version"]}
            rows.append(row)
            by_stage.setdefault(r["stage"], []).append(row["org_id"])
            if late:
                overdue.append({"org_id": row["org_id"], "org_name": row["org_name"],
                                "stage": r["stage"], "due": row["due"]})
        return {"cycle_id": str(cycle.id), "name": cycle.name, "deadlines": cycle.deadlines,
                "as_of": now.isoformat(), "organizations": rows,
                "by_stage": {s: {"count": len(v), "org_ids": v} for s, v in by_stage.items()},
                "overdue": overdue}

    # -- ratings -----------------------------------------------------------------
    def _definition_for_rating(self, rating: Rating) -> dict:
        scheme = self._scheme_for(rating.scheme_id, rating.level)
        return scheme.definition(rating.scheme_version if rating.scheme_id else None)

    def record_major_problem(self, caller: Caller, payload: dict) -> dict:
        """重大问题: downgrade at once to the level the scheme sets."""
        caller.require_role(ORG_ADMIN)  # 纪委办 (auditor) reports; 组织部 records
        cmd = RecordMajorProblem.parse(payload)
        org = self._org(cmd.org_id)
        if org["level"] not in (2, 3):
            raise ValidationError.single("org_id", "star ratings are for colleges and branches")
        rating = self._rating(org["id"], org["name"], org["level"])
        definition = self._definition_for_rating(rating)
        mp = definition["major_problem"]
        rating.record_major_problem(cmd.problem_id or uuid4().hex[:12], cmd.description,
                                    mp["downgrade_to"], mp["rectification_days"],
                                    self.clock().date(), caller.as_actor(), cmd.reason,
                                    list(cmd.evidence))
        return self.commit(rating, result=lambda: self.get_rating(caller, org["id"]))

    def _rating_for_change(self, caller: Caller, org_id, secretary_may: bool) -> Rating:
        org = self._org(org_id)
        allowed = caller.role == ORG_ADMIN or (secretary_may and (
            (caller.role == BRANCH_SECRETARY and caller.org == str(org["id"])) or
            (caller.role == COLLEGE_SECRETARY and caller.org in
             (str(org["id"]), self.directory.college_of(org["id"])))))
        if not allowed:
            raise Forbidden("the organisation's secretary (or 组织部) plans and completes a "
                            "rectification; 组织部 (org_admin) verifies it")
        rating_id = Rating.id_for(org["id"])
        if not self.exists(rating_id):
            raise NotFound(f"{org['name']} has no rating and no major problem on record")
        return self.load(rating_id, Rating, "rating")

    def plan_rectification(self, caller: Caller, payload: dict) -> dict:
        cmd = PlanRectification.parse(payload)
        rating = self._rating_for_change(caller, cmd.org_id, True)
        rating.plan_rectification(cmd.problem_id, cmd.plan, cmd.due.isoformat(),
                                  caller.as_actor())
        return self.commit(rating, result=lambda: self.get_rating(caller, cmd.org_id))

    def complete_rectification(self, caller: Caller, payload: dict) -> dict:
        cmd = CompleteRectification.parse(payload)
        rating = self._rating_for_change(caller, cmd.org_id, True)
        rating.complete_rectification(cmd.problem_id, caller.as_actor(), cmd.reason,
                                      list(cmd.evidence))
        return self.commit(rating, result=lambda: self.get_rating(caller, cmd.org_id))

    def verify_rectification(self, caller: Caller, payload: dict) -> dict:
        cmd = VerifyRectification.parse(payload)
        rating = self._rating_for_change(caller, cmd.org_id, False)
        definition = self._definition_for_rating(rating)
        rating.verify_rectification(cmd.problem_id, self.clock().date(),
                                    definition["major_problem"]["rectification_days"],
                                    caller.as_actor(), cmd.reason,
                                    list(cmd.evidence) if cmd.evidence else None)
        return self.commit(rating, result=lambda: self.get_rating(caller, cmd.org_id))

    def get_rating(self, caller: Caller, org_id, as_of: str | None = None,
                   replay: bool = False) -> dict:
        """Current rating with its breakdown, or the rating as of a timestamp.

        Ratings are published results (公示): every role may read them.
        ``replay`` (org_admin, auditor) rebuilds the as-of state from the
        event store itself (snapshot + later events) and reports whether it
        matches the read model."""
        caller.require_role(*ROLES)
        query = RatingQuery.of(org_id=org_id, as_of=as_of, replay=replay)
        org_uuid, as_of, replay = query.org_id, query.as_of, query.replay
        if as_of is None:
            r = self.query_one("SELECT * FROM eval_ratings WHERE org_id = %s", (str(org_uuid),))
            if r is None:
                self._org(org_uuid)  # NotFound for an unknown organisation
                return {"org_id": str(org_uuid), "stars": None, "score": None,
                        "rated": False, "problems": []}
            problems = self.query("SELECT * FROM eval_problems WHERE org_id = %s "
                                  "ORDER BY recorded_at", (str(org_uuid),))
            return {"org_id": str(r["org_id"]), "org_name": r["org_name"], "level": r["level"],
                    "rated": r["stars"] is not None, "stars": r["stars"],
                    "underlying_stars": r["underlying"], "score": r["score"],
                    "cause": r["cause"], "scheme_id": r["scheme_id"],
                    "scheme_version": r["scheme_version"],
                    "cycle_id": str(r["cycle_id"]) if r["cycle_id"] else None,
                    "breakdown": r["breakdown"], "updated_at": r["updated_at"].isoformat(),
                    "version": r["version"],
                    "problems": [{"problem_id": p["problem_id"], "kind": p["kind"],
                                  "description": p["description"],
                                  "downgrade_to": p["downgrade_to"], "status": p["status"],
                                  "rectification_due": p["rectification_due"].isoformat()
                                  if p["rectification_due"] else None, "plan": p["plan"]}
                                 for p in problems]}
        moment = parse_moment(as_of, "as_of")
        h = self.query_one(
            "SELECT * FROM eval_rating_history WHERE org_id = %s AND valid_from <= %s "
            "ORDER BY valid_from DESC, version DESC LIMIT 1", (str(org_uuid), moment))
        out = {"org_id": str(org_uuid), "as_of": moment.isoformat(),
               "rated": h is not None and h["stars_after"] is not None,
               "stars": h["stars_after"] if h else None, "score": h["score"] if h else None,
               "cause": h["cause"] if h else None,
               "scheme_id": h["scheme_id"] if h else None,
               "scheme_version": h["scheme_version"] if h else None,
               "cycle_id": str(h["cycle_id"]) if h and h["cycle_id"] else None,
               "since": h["valid_from"].isoformat() if h else None,  # in effect from
               "recorded_at": _iso(h["recorded_at"] or h["valid_from"]) if h else None,
               "version": h["version"] if h else None}
        if replay:
            caller.require_role(ORG_ADMIN, AUDITOR)
            if h is not None:
                state = self.repository.get(Rating.id_for(org_uuid), version=h["version"])
                stars = state.stars if h["cause"] != "backfill" else \
                    state.backfills[h["valid_from"].date().isoformat()]["stars"]
                out["replayed"] = {"stars": stars, "score": state.score,
                                   "version": state.version, "matches": stars == h["stars_after"]}
        return out

    def rating_history(self, caller: Caller, org_id) -> list[dict]:
        caller.require_role(*ROLES)
        org_id = OrgRef.of(org_id=org_id).org_id
        return [{"version": h["version"], "stars_before": h["stars_before"],
                 "stars_after": h["stars_after"], "score": h["score"], "cause": h["cause"],
                 "scheme_id": h["scheme_id"], "scheme_version": h["scheme_version"],
                 "cycle_id": str(h["cycle_id"]) if h["cycle_id"] else None,
                 "actor": h["actor"], "reason": h["reason"], "evidence": h["evidence"],
                 "valid_from": h["valid_from"].isoformat(), "valid_to": _iso(h["valid_to"]),
                 "recorded_at": _iso(h["recorded_at"] or h["valid_from"])}
                for h in self.query("SELECT * FROM eval_rating_history WHERE org_id = %s "
                                    "ORDER BY valid_from, version", (str(org_id),))]

    def star_distribution(self, caller: Caller, college_id: str | None = None,
                          as_of: str | None = None) -> dict:
        """Per college and school-wide: share at ★4+ and the organisations at ★3
        and below (the seed's goal is to eliminate them), each number with the
        organisations behind it; with ``as_of``, the stars each had then
        (``eval_rating_history``) over today's organisations."""
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        q = DistributionQuery.of(college_id=college_id, as_of=as_of)
        college_id, as_of = q.college_id, q.as_of
        ratings, rating_params = "eval_ratings", []
        if as_of:
            ratings = ("(SELECT org_id, stars_after AS stars, score FROM eval_rating_history "
                       "WHERE valid_from <= %s AND (valid_to IS NULL OR valid_to > %s))")
            moment = parse_moment(as_of, "as_of")
            rating_params = [moment, moment]
        if caller.role == COLLEGE_SECRETARY:
            if college_id is not None and str(college_id) != caller.org:
                raise Forbidden("a college secretary reads its own college's distribution")
            college_id = caller.org
        sql = ("SELECT o.id, o.name, o.level, o.parent_id, p.name AS college_name, "
               "r.stars, r.score FROM dir_orgs o LEFT JOIN dir_orgs p ON p.id = o.parent_id "
               f"LEFT JOIN {ratings} r ON r.org_id = o.id "
               "WHERE o.status = 'active' AND o.level = 3")
        params = list(rating_params)
        if college_id is not None:
            sql += " AND o.parent_id = %s"
            params.append(str(college_id))
        branches = self.query(sql + " ORDER BY p.name, o.name", params)
        colleges: dict[str, list] = {}
        names: dict[str, str] = {}
        for b in branches:
            key = str(b["parent_id"])
            colleges.setdefault(key, []).append(b)
            names[key] = b["college_name"]
        result = {"branches": {"school": _distribution(branches),
                               "colleges": [{"college_id": k, "college_name": names[k],
                                             **_distribution(v)} for k, v in colleges.items()]}}
        if college_id is None:
            result["colleges"] = _distribution(self.query(
                "SELECT o.id, o.name, o.level, r.stars, r.score FROM dir_orgs o "
                f"LEFT JOIN {ratings} r ON r.org_id = o.id "
                "WHERE o.status = 'active' AND o.level = 2 ORDER BY o.name", rating_params))
        if as_of:
            result["as_of"] = parse_moment(as_of, "as_of").isoformat()
        return result

    # -- operations ----------------------------------------------------------------
    def consumer_status(self, caller: Caller) -> dict:
        """What this service has applied of other services' events (for ops)."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        return {"org_directory": self.directory.status(),
                "read_models": {"parked": self.projector.parking.summary()}}

    def business_gauges(self) -> list[dict]:
        stars = self.query("SELECT coalesce(stars::text, 'unrated') AS s, level, count(*) AS n "
                           "FROM eval_ratings GROUP BY 1, 2")
        stages = self.query("SELECT stage, count(*) AS n FROM eval_assessments GROUP BY 1")
        problems = self.query("SELECT status, count(*) AS n FROM eval_problems "
                              "WHERE status <> 'verified' AND kind = 'major_problem' "
                              "GROUP BY 1")
        now = self.clock()
        overdue: dict[str, int] = {}
        for r in self.query(
                "SELECT a.stage, a.extensions, a.returned_from, a.reopened, c.deadlines "
                "FROM eval_assessments a JOIN eval_cycles c ON c.id = a.cycle_id "
                "WHERE a.stage IN ('self_assessment', 'review', 'approval')"):
            due = stage_due(r["stage"], r["deadlines"], r["extensions"], r["returned_from"],
                            r["reopened"])
            if due is not None and now > due:
                overdue[r["stage"]] = overdue.get(r["stage"], 0) + 1
        return [
            {"name": "lianchuang_open_appeals", "help": "Appeals (申诉) lodged and not yet decided",
             "labels": [], "samples": [((), sum(r["n"] for r in stages if r["stage"] == "appeal"))]},
            {"name": "lianchuang_overdue_assessments",
             "help": "Assessments past their stage deadline (逾期), by stage",
             "labels": ["stage"], "samples": [((k,), v) for k, v in overdue.items()]},
            {"name": "lianchuang_open_major_problems",
             "help": "Major problems (重大问题) whose rectification (整改) is not yet verified",
             "labels": ["status"], "samples": [((r["status"],), r["n"]) for r in problems]},
            {"name": "lianchuang_ratings", "help": "Organisations by star rating and level",
             "labels": ["stars", "level"],
             "samples": [((r["s"], str(r["level"])), r["n"]) for r in stars]},
            {"name": "lianchuang_assessments", "help": "Assessments by workflow stage",
             "labels": ["stage"], "samples": [((r["stage"],), r["n"]) for r in stages]},
        ]


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _ref(row: dict) -> dict:
    return {"org_id": str(row["id"]), "org_name": row["name"], "stars": row["stars"],
            "score": row["score"]}


def _distribution(rows: list[dict]) -> dict:
    rated = [r for r in rows if r["stars"] is not None]
    high = [_ref(r) for r in rated if r["stars"] >= 4]
    low = [_ref(r) for r in rated if r["stars"] <= 3]
    return {"organizations": len(rows), "rated": len(rated),
            "by_stars": {str(s): [_ref(r) for r in rated if r["stars"] == s]
                         for s in (5, 4, 3, 2, 1)},
            "four_or_above": {"count": len(high),
                              "share": round(len(high) / len(rated), 4) if rated else 0.0,
                              "organizations": high},
            "three_or_below": {"count": len(low), "organizations": low},
            "unrated": [_ref(r) for r in rows if r["stars"] is None]}
