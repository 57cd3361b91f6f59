"""The creation programme (三级联创): candidacies (创建), plan targets (规划目标),
brands (品牌) and the task book (任务书). A sub-domain of evaluation: it shares
the service's store, its organisation directory and its read-model projector.

Who may do what (see docs/rpc.md):
* org_admin (组织部) nominates candidacies and moves them, defines plans and
  targets, registers and recognises brands, sets task-book milestones, and
  reports for 组织部 as a department;
* department_staff (职能部门, token ``org`` = a department code) report progress
  on the measures their department leads (and completes milestones) or
  cooperates on, and read their department's view;
* a college secretary reports the college's part of measures that 各二级学院
  cooperate on;
* every role reads candidacies, targets, brands and the task book.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal, Optional
from uuid import UUID

import yaml
from pydantic import Field

from shared.commands import (Command, Evidence, Key, Mapping, Moment, Name, Query, Reason,
                             RequiredEvidence,
                             RequiredReason, Version)
from shared.domain import derived_id
from shared.errors import Conflict, NotFound, ValidationError
from shared.identity import ORG_ADMIN, ROLES, Caller
from services.evaluation.programme.domain import (BRAND_KINDS, FINAL_STAGES, FIRST_TIER,
                                                  STAGE_ZH, STAGES,
                                                  TIER_ZH, TIERS, TITLE_CODES, TITLES, Brand,
                                                  Candidacy, Plan, Task, stage_label,
                                                  tier_rank)
from services.evaluation.programme.acceptance import AcceptanceOperations
from services.evaluation.programme.dashboard import DashboardQueries
from services.evaluation.ratings.trend import as_of_moment
from services.evaluation.programme.projections import ProgrammeReadModel
from services.evaluation.programme.projects.application import InnovationProjects
from services.evaluation.programme.schedule.application import ScheduleRules
from services.evaluation.programme.summaries import YearlySummaries
from services.evaluation.programme.taskbook import AsOf, SYSTEM_ACTOR, TaskBookOperations
from services.evaluation.programme.taskbook_sheets import TaskBookSheets

TASK_BOOK_FILE = Path(__file__).with_name("task_book.yaml")

# The seed's 2023 targets (一): the shipped default plan.
DEFAULT_PLAN = {
    "code": "2020-2023",
    "name": "党建“三级联创”实施意见 2020-2023 (seed 一)",
    "starts_on": "2020-06-12",
    "ends_on": "2023-12-31",
    "targets": [
        {"title": "demonstration_university", "tier": "national", "min": 1, "max": 1},
        {"title": "benchmark_college", "tier": "national", "min": 1, "max": 1},
        {"title": "model_branch", "tier": "national", "min": 1, "max": 1},
        {"title": "benchmark_college", "tier": "provincial", "min": 3, "max": 4},
        {"title": "model_branch", "tier": "provincial", "min": 3, "max": 4},
    ],
    "brand_target": {"min_tier": "provincial", "min": 10},
}

Tier = Literal[TIERS]  # type: ignore[valid-type]
StageName = Literal[STAGES]  # type: ignore[valid-type]
TitleCode = Literal[tuple(TITLE_CODES)]  # type: ignore[valid-type]
BrandKind = Literal[tuple(BRAND_KINDS)]  # type: ignore[valid-type]
Year = Annotated[int, Field(ge=1900, le=2200)]


def load_task_book(path: Path = TASK_BOOK_FILE) -> dict:
    """The shipped task book: sections and the 26 measures (departments by code)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- commands ------------------------------------------------------------------
class Nominate(Command):
    org_id: UUID
    tier: Tier
    on: Optional[dt.date] = None
    reason: RequiredReason
    evidence: Evidence = []
    ladder_waiver: Optional[Reason] = None


class Move(Command):
    candidacy_id: UUID
    to_stage: StageName
    on: Optional[dt.date] = None
    reason: RequiredReason
    evidence: Evidence = []
    held_until: Optional[dt.date] = None
    expected_version: Optional[Version] = None


class DefinePlan(Command):
    code: Key
    name: Optional[Name] = None
    starts_on: Optional[dt.date] = None
    ends_on: Optional[dt.date] = None
    targets: Annotated[list[Mapping], Field(max_length=60)]
    brand_target: Optional[Mapping] = None
    reason: Optional[Reason] = None


class RegisterBrand(Command):
    name: Name
    kind: BrandKind
    org_id: UUID
    reason: Optional[Reason] = None
    evidence: Evidence = []


class RecogniseBrand(Command):
    brand_id: UUID
    level: Tier
    on: dt.date
    reason: Optional[Reason] = None
    evidence: RequiredEvidence


# -- queries -------------------------------------------------------------------
class CandidacyRef(Query):
    candidacy_id: UUID


class CandidacyFilter(Query):
    title: Optional[TitleCode] = None
    tier: Optional[Tier] = None
    stage: Optional[StageName] = None
    org_id: Optional[UUID] = None
    college_id: Optional[UUID] = None


class ShortfallQuery(Query):
    org_id: UUID
    year: Year


class PlanRef(Query):
    plan_code: Optional[Key] = None


class ProgressQuery(PlanRef):
    as_of: Optional[Moment] = None


class BrandRef(Query):
    brand_id: UUID


class BrandFilter(Query):
    org_id: Optional[UUID] = None
    kind: Optional[BrandKind] = None


class ProgrammeOperations(AcceptanceOperations, InnovationProjects, ScheduleRules,
                          YearlySummaries, TaskBookOperations, TaskBookSheets,
                          DashboardQueries):
    """The programme's commands and queries over evaluation's application
    (``app``: its store, directory, clock and projector)."""

    def __init__(self, app):
        self.app = app
        self.read_model = ProgrammeReadModel()
        self.task_book = load_task_book()
        self._dashboards: dict = {}  # scope -> (read-model position and date, answer)

    # -- shipped data ------------------------------------------------------------
    def install_defaults(self) -> None:
        """The seed's 2020-2023 plan and its 26 measures, once (idempotent)."""
        pending = []
        if not self.app.exists(Plan.id_for(DEFAULT_PLAN["code"])):
            pending.append(Plan.define(actor=SYSTEM_ACTOR, reason="shipped default (seed 一)",
                                       **DEFAULT_PLAN))
        sections = self.task_book["sections"]
        for m in self.task_book["measures"]:
            if not self.app.exists(Task.id_for(m["number"])):
                section = m["number"].split(".")[0]
                pending.append(Task.register(
                    m["number"], f"{section}、{sections[section]}", m["title"], m["lead"],
                    m["cooperating"], SYSTEM_ACTOR, "shipped task book (seed 二-六)"))
        if pending:
            try:
                self.app.commit(*pending)
            except Conflict:
                pass  # another instance installed them at the same moment

    # -- helpers -------------------------------------------------------------------
    def _today(self) -> str:
        return self.app.clock().date().isoformat()

    def _org(self, org_id, field: str = "org_id") -> dict:
        row = self.app.directory.org(org_id)
        if row is None:
            raise NotFound(f"{field}: organisation {org_id} is not known to evaluation")
        return row

    def _college_of(self, row: dict) -> str | None:
        if row["level"] == 2:
            return str(row["id"])
        if row["level"] == 3 and row.get("parent_id"):
            return str(row["parent_id"])
        return None

    # -- candidacies (创建) ----------------------------------------------------------
    def nominate_candidacy(self, caller: Caller, payload: dict) -> dict:
        """Nominate an organisation for its level's title at a tier (enters 培育)."""
        caller.require_role(ORG_ADMIN)
        cmd = Nominate.parse(payload)
        org = self._org(cmd.org_id)
        if org["status"] != "active":
            raise ValidationError.single("org_id", f"{org['name']} is {org['status']}")
        rows = self.app.query("SELECT id, tier, stage, held_from, held_until, attempt FROM "
                              "prog_candidacies WHERE org_id = %s", (str(cmd.org_id),))
        on = (cmd.on or self.app.clock().date()).isoformat()
        at_tier = [r for r in rows if r["tier"] == cmd.tier]
        for r in at_tier:
            if r["stage"] not in ("passed", "failed"):
                raise ValidationError.single(
                    "tier", f"{org['name']} is already a candidate at {TIER_ZH[cmd.tier]} "
                    f"({stage_label(r['stage'])}, candidacy {r['id']})")
            if r["stage"] == "passed" and (r["held_until"] is None
                                           or r["held_until"].isoformat() > on):
                raise ValidationError.single(
                    "tier", f"{org['name']} holds the title at {TIER_ZH[cmd.tier]} "
                    f"(since {r['held_from']}); nominate it at the next tier")
        ladder = self._ladder(org, cmd, rows)
        candidacy = Candidacy.nominate(org, cmd.tier, len(at_tier) + 1, on,
                                       self._college_of(org), ladder, caller.as_actor(),
                                       cmd.reason, cmd.evidence)
        return self.app.commit(candidacy, result=lambda: self.get_candidacy(caller, candidacy.id))

    def _ladder(self, org: dict, cmd: Nominate, rows: list[dict]) -> dict | None:
        """梯次培育: above the title's first tier, a 达标 at the tier below (or a
        waiver with its reason, e.g. a title won before the system existed)."""
        level = int(org["level"])
        if level not in FIRST_TIER or tier_rank(cmd.tier) <= tier_rank(FIRST_TIER[level]):
            if cmd.ladder_waiver:
                raise ValidationError.single("ladder_waiver", f"{TIER_ZH[cmd.tier]} is the "
                                             "first tier of this title: nothing to waive")
            return None
        below = TIERS[tier_rank(cmd.tier) - 1]
        passed = [r for r in rows if r["tier"] == below and r["stage"] == "passed"]
        if passed:
            return {"passed_candidacy_id": str(passed[-1]["id"]), "tier": below}
        if cmd.ladder_waiver:
            return {"waiver": cmd.ladder_waiver, "tier": below}
        raise ValidationError.single(
            "tier", f"梯次培育: {org['name']} has not passed (达标) at {TIER_ZH[below]} ({below}); "
            "nominate it there first, or give ladder_waiver with the reason")

    def move_candidacy(self, caller: Caller, payload: dict) -> dict:
        """Move a candidacy to its next stage (dated, with reason and evidence)."""
        caller.require_role(ORG_ADMIN)
        cmd = Move.parse(payload)
        candidacy = self.app.load(cmd.candidacy_id, Candidacy, "candidacy")
        if cmd.expected_version is not None and candidacy.version != cmd.expected_version:
            raise Conflict(f"the candidacy of {candidacy.org_name} changed (version "
                           f"{candidacy.version}, you read {cmd.expected_version}); reload")
        if candidacy.stage == "acceptance_review" and cmd.to_stage in FINAL_STAGES \
                and candidacy.tier == "school":
            raise ValidationError.single(
                "to_stage", f"校级 (school) 验收 of {candidacy.org_name} is 组织部's own: it is "
                "scored against the title's standard with score_acceptance, whose result "
                "decides 达标 or 未达标 (a 省级 or 全国 outcome is recorded here with the "
                "deciding body's document)")
        on = (cmd.on or self.app.clock().date()).isoformat()
        candidacy.move(cmd.to_stage, on, caller.as_actor(), cmd.reason, cmd.evidence,
                       held_until=cmd.held_until.isoformat() if cmd.held_until else None)
        return self.app.commit(candidacy,
                               result=lambda: self.get_candidacy(caller, candidacy.id))

    def _candidacy_row(self, r: dict) -> dict:
        level = r["level"]
        return {"id": str(r["id"]), "org_id": str(r["org_id"]), "org_name": r["org_name"],
                "level": level, "college_id": str(r["college_id"]) if r["college_id"] else None,
                "title": r["title"], "title_zh": TITLES[level][1], "standard": TITLES[level][2],
                "tier": r["tier"], "tier_zh": TIER_ZH[r["tier"]], "attempt": r["attempt"],
                "stage": r["stage"], "stage_zh": STAGE_ZH[r["stage"]],
                "nominated_on": r["nominated_on"].isoformat(),
                "stage_on": r["stage_on"].isoformat(),
                "held_from": r["held_from"].isoformat() if r["held_from"] else None,
                "held_until": r["held_until"].isoformat() if r["held_until"] else None,
                "ladder": r["ladder"], "version": r["version"]}

    def get_candidacy(self, caller: Caller, candidacy_id) -> dict:
        caller.require_role(*ROLES)
        candidacy_id = CandidacyRef.of(candidacy_id=candidacy_id).candidacy_id
        row = self.app.query_one("SELECT * FROM prog_candidacies WHERE id = %s", (candidacy_id,))
        if row is None:
            raise NotFound(f"candidacy {candidacy_id} not found")
        result = self._candidacy_row(row)
        result["moves"] = [
            {"from_stage": m["from_stage"], "to_stage": m["to_stage"],
             "on": m["on_date"].isoformat(), "actor": m["actor"], "reason": m["reason"],
             "evidence": m["evidence"] or [], "recorded_at": m["recorded_at"].isoformat()}
            for m in self.app.query("SELECT * FROM prog_candidacy_moves WHERE candidacy_id = %s "
                                    "ORDER BY version", (candidacy_id,))]
        return result

    def list_candidacies(self, caller: Caller, title: str | None = None,
                         tier: str | None = None, stage: str | None = None,
                         org_id: str | None = None, college_id: str | None = None) -> list[dict]:
        caller.require_role(*ROLES)
        f = CandidacyFilter.of(title=title, tier=tier, stage=stage, org_id=org_id,
                               college_id=college_id)
        sql, params = "SELECT * FROM prog_candidacies WHERE true", []
        for column, value in (("title", f.title), ("tier", f.tier), ("stage", f.stage),
                              ("org_id::text", f.org_id), ("college_id::text", f.college_id)):
            if value is not None:
                sql += f" AND {column} = %s"
                params.append(str(value))
        return [self._candidacy_row(r) for r in self.app.query(
            sql + " ORDER BY level, title, tier, org_name, attempt", params)]

    def creation_shortfall(self, caller: Caller, org_id, year) -> dict:
        """创建未达标 for an organisation in a year (R1 reads it): true when one of
        its candidacies was judged 未达标 at an acceptance dated in that year (a
        scored 验收 that failed the rule of acceptance.yaml, or a 省级/全国
        body's decision recorded with its document)."""
        caller.require_role(*ROLES)
        q = ShortfallQuery.of(org_id=org_id, year=year)
        org_id, year = q.org_id, q.year
        rows = self.app.query(
            "SELECT c.id, c.title, c.tier, c.level, m.on_date, m.reason, m.evidence, "
            "a.score, a.scheme_id, a.scheme_version, a.findings "
            "FROM prog_candidacy_moves m JOIN prog_candidacies c ON c.id = m.candidacy_id "
            "LEFT JOIN prog_acceptances a ON a.candidacy_id = m.candidacy_id "
            "AND a.outcome = 'failed' AND a.version = m.version - 1 "
            "WHERE m.org_id::text = %s AND m.to_stage = 'failed' "
            "AND extract(year FROM m.on_date) = %s ORDER BY m.on_date",
            (str(org_id), year))
        return {"org_id": str(org_id), "year": year, "shortfall": bool(rows),
                "candidacies": [{"candidacy_id": str(r["id"]), "title": r["title"],
                                 "title_zh": TITLES[r["level"]][1], "tier": r["tier"],
                                 "failed_on": r["on_date"].isoformat(), "reason": r["reason"],
                                 "evidence": r["evidence"] or [],
                                 # the scored acceptance behind it (None: recorded from
                                 # a deciding body's document, 省级/全国)
                                 "acceptance": None if r["score"] is None else {
                                     "score": r["score"], "scheme_id": r["scheme_id"],
                                     "scheme_version": r["scheme_version"],
                                     "unmet": [f["detail"] for f in r["findings"]
                                               if not f["met"]]}} for r in rows]}

    # -- plans and brands ------------------------------------------------------------
    def define_plan(self, caller: Caller, payload: dict) -> dict:
        """A new plan period with its targets, or new targets for an existing one."""
        caller.require_role(ORG_ADMIN)
        cmd = DefinePlan.parse(payload)
        plan_id = Plan.id_for(cmd.code)
        if self.app.exists(plan_id):
            plan = self.app.load(plan_id, Plan, "plan")
            plan.retarget(cmd.targets, cmd.brand_target, caller.as_actor(), cmd.reason)
        else:
            missing = [f for f in ("name", "starts_on", "ends_on") if getattr(cmd, f) is None]
            if missing:
                raise ValidationError([{"field": f, "message": "required for a new plan"}
                                       for f in missing])
            plan = Plan.define(cmd.code, cmd.name, cmd.starts_on, cmd.ends_on, cmd.targets,
                               cmd.brand_target, caller.as_actor(), cmd.reason)
        return self.app.commit(plan, result=lambda: self.programme_progress(caller, cmd.code))

    def list_plans(self, caller: Caller) -> list[dict]:
        caller.require_role(*ROLES)
        return [self._plan_row(r) for r in self.app.query(
            "SELECT * FROM prog_plans ORDER BY starts_on DESC")]

    @staticmethod
    def _plan_row(r: dict) -> dict:
        return {"code": r["code"], "name": r["name"], "starts_on": r["starts_on"].isoformat(),
                "ends_on": r["ends_on"].isoformat(), "targets": r["targets"],
                "brand_target": r["brand_target"]}

    def programme_progress(self, caller: Caller, plan_code: str | None = None,
                           as_of: str | None = None, moment: dt.datetime | None = None) -> dict:
        """Achieved against target per title and tier, with the candidacies behind
        each number and their stage; brands at or above the brand target's level.
        A title counts as achieved when its candidacy passed (达标) at exactly that
        tier within the plan period.

        As of a date or moment (``as_of``): the plan's targets as recorded by
        then (``prog_plan_versions``), each candidacy at its latest move dated on
        or before the day (as the dashboard's candidacies), brands registered by
        then with their recognitions dated on or before the day."""
        caller.require_role(*ROLES)
        q = ProgressQuery.of(plan_code=plan_code, as_of=as_of)
        plan_code = q.plan_code
        if moment is None and q.as_of is not None:
            moment = as_of_moment(q.as_of)
        plan = self._plan(plan_code, moment)
        starts, ends = plan["starts_on"].isoformat(), plan["ends_on"].isoformat()
        source, params = "prog_candidacies", [starts, ends]
        if moment is not None:
            # each candidacy at its latest move on or before the day; held from
            # the day it passed
            source = ("(SELECT c.id, c.org_id, c.org_name, c.title, c.tier, c.attempt, "
                      "m.to_stage AS stage, m.on_date AS stage_on, CASE WHEN m.to_stage = "
                      "'passed' THEN m.on_date END AS held_from FROM prog_candidacies c "
                      "JOIN LATERAL (SELECT to_stage, on_date FROM prog_candidacy_moves "
                      "WHERE candidacy_id = c.id AND on_date <= %s ORDER BY on_date DESC, "
                      "version DESC LIMIT 1) m ON true) AS c")
            params.insert(0, moment.date())
        # the candidacies behind each number, grouped and built as JSON by PostgreSQL
        by_target = {(r["title"], r["tier"]): r["behind"] for r in self.app.query(
            "SELECT title, tier, json_agg(json_build_object('id', id, 'org_id', org_id, "
            "'org_name', org_name, 'stage', stage, 'stage_on', stage_on, "
            "'counted', stage = 'passed') ORDER BY org_name, attempt) AS behind "
            f"FROM {source} WHERE stage NOT IN ('failed', 'passed') "
            "OR (stage = 'passed' AND held_from BETWEEN %s AND %s) GROUP BY title, tier",
            params)}
        targets = []
        for t in plan["targets"]:
            behind = by_target.get((t["title"], t["tier"]), [])
            for c in behind:
                c["stage_zh"] = STAGE_ZH[c["stage"]]
            achieved = sum(1 for c in behind if c["counted"])
            level = TITLE_CODES[t["title"]]
            targets.append({
                "title": t["title"], "title_zh": TITLES[level][1], "tier": t["tier"],
                "tier_zh": TIER_ZH[t["tier"]], "target_min": t["min"], "target_max": t["max"],
                "achieved": achieved, "met": achieved >= t["min"],
                "pursuing": len(behind) - achieved, "candidacies": behind})
        result = {"plan": self._plan_row(plan), "targets": targets, "brands": None,
                  "as_of": moment.isoformat() if moment is not None else None}
        if plan["brand_target"]:
            bt = plan["brand_target"]
            floor = tier_rank(bt["min_tier"])
            day = moment.date().isoformat() if moment is not None else None
            brands = []
            rows = self.app.query("SELECT * FROM prog_brands ORDER BY name") if moment is None \
                else self.app.query("SELECT * FROM prog_brands WHERE registered_at <= %s "
                                    "ORDER BY name", (moment,))
            for b in rows:
                firsts = [r["on"] for r in b["recognitions"] if tier_rank(r["level"]) >= floor
                          and (day is None or r["on"] <= day)]
                first = min(firsts) if firsts else None
                if first is not None and starts <= first <= ends:
                    held = [r for r in b["recognitions"] if day is None or r["on"] <= day]
                    level = max((r["level"] for r in held), key=tier_rank)
                    brands.append({"id": str(b["id"]), "name": b["name"], "kind": b["kind"],
                                   "org_name": b["org_name"], "level": level,
                                   "recognised_on": first})
            result["brands"] = {"min_tier": bt["min_tier"], "target_min": bt["min"],
                                "achieved": len(brands), "met": len(brands) >= bt["min"],
                                "brands": brands}
        return result

    def _moment(self, as_of: str) -> dt.datetime:
        """``as_of`` as a moment: a timestamp, or a date meaning the end of that day (UTC)."""
        return as_of_moment(AsOf.of(as_of=as_of).as_of)

    def _plan(self, plan_code: str | None, moment: dt.datetime | None = None) -> dict:
        """The plan by code or the current one (the latest begun), with its targets
        as recorded by ``moment`` when given (NotFound if not recorded by then)."""
        if moment is None:
            if plan_code is None:
                row = self.app.query_one("SELECT * FROM prog_plans WHERE starts_on <= %s "
                                         "ORDER BY starts_on DESC LIMIT 1", (self._today(),))
            else:
                row = self.app.query_one("SELECT * FROM prog_plans WHERE code = %s",
                                         (plan_code,))
        else:
            row = self.app.query_one(
                "SELECT p.id, p.code, p.name, p.starts_on, p.ends_on, v.targets, v.brand_target "
                "FROM prog_plans p JOIN LATERAL (SELECT targets, brand_target FROM "
                "prog_plan_versions WHERE plan_id = p.id AND valid_from <= %s ORDER BY version "
                "DESC LIMIT 1) v ON true WHERE " + ("p.code = %s" if plan_code is not None
                                                     else "p.starts_on <= %s")
                + " ORDER BY p.starts_on DESC LIMIT 1",
                (moment, plan_code if plan_code is not None else moment.date()))
        if row is None:
            raise NotFound(f"plan {plan_code or '(current)'} not found"
                           + (f" as of {moment.isoformat()}" if moment is not None else ""))
        return row

    def register_brand(self, caller: Caller, payload: dict) -> dict:
        """Register a brand: 一总支一品牌 (a college's), 一支部一特色 (a branch's) or
        a school-wide Party-building / ideological-work brand."""
        caller.require_role(ORG_ADMIN)
        cmd = RegisterBrand.parse(payload)
        org = self._org(cmd.org_id)
        brand_id = derived_id("programme-brand", cmd.org_id, cmd.name)
        if self.app.exists(brand_id):
            raise Conflict(f"{org['name']} already has a brand named {cmd.name!r}")
        brand = Brand.register(brand_id, cmd.name, cmd.kind, org, caller.as_actor(),
                               cmd.reason, cmd.evidence)
        return self.app.commit(brand, result=lambda: self.get_brand(caller, brand.id))

    def recognise_brand(self, caller: Caller, payload: dict) -> dict:
        """Record a brand's recognition (认定) at a level on a date."""
        caller.require_role(ORG_ADMIN)
        cmd = RecogniseBrand.parse(payload)
        brand = self.app.load(cmd.brand_id, Brand, "brand")
        brand.recognise(cmd.level, cmd.on, caller.as_actor(), cmd.reason, cmd.evidence)
        return self.app.commit(brand, result=lambda: self.get_brand(caller, brand.id))

    @staticmethod
    def _brand_row(r: dict) -> dict:
        return {"id": str(r["id"]), "name": r["name"], "kind": r["kind"],
                "kind_zh": BRAND_KINDS[r["kind"]], "org_id": str(r["org_id"]),
                "org_name": r["org_name"], "level": r["level"],
                "level_zh": TIER_ZH.get(r["level"]) if r["level"] else None,
                "recognised_on": r["recognised_on"].isoformat() if r["recognised_on"] else None,
                "recognitions": r["recognitions"]}

    def get_brand(self, caller: Caller, brand_id) -> dict:
        caller.require_role(*ROLES)
        row = self.app.query_one("SELECT * FROM prog_brands WHERE id = %s",
                                 (BrandRef.of(brand_id=brand_id).brand_id,))
        if row is None:
            raise NotFound(f"brand {brand_id} not found")
        return self._brand_row(row)

    def list_brands(self, caller: Caller, org_id: str | None = None,
                    kind: str | None = None) -> list[dict]:
        caller.require_role(*ROLES)
        f = BrandFilter.of(org_id=org_id, kind=kind)
        org_id, kind = f.org_id, f.kind
        sql, params = "SELECT * FROM prog_brands WHERE true", []
        if org_id is not None:
            sql += " AND org_id::text = %s"
            params.append(str(org_id))
        if kind is not None:
            sql += " AND kind = %s"
            params.append(kind)
        return [self._brand_row(r) for r in self.app.query(sql + " ORDER BY name", params)]
