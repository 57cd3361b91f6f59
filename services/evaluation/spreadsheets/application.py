"""Evaluation spreadsheets: the backfill of past ratings (import), and the lists
组织部 prints or files: a cycle's 公示名单, its results with each organisation's
breakdown per dimension, the star distribution per college, and an
organisation's rating history for auditors (exports).

Each export writes what a query of this module (or of the application)
returns, so what is printed is what the service answers.
"""
from __future__ import annotations

import datetime as dt

from shared.commands import OrgRef
from shared.errors import NotFound, ValidationError
from shared.identity import AUDITOR, COLLEGE_SECRETARY, ORG_ADMIN, ROLES
from shared.imports import ImportContext, Importer, ImportKind, Plan, add_domain_error
from shared.spreadsheets import (ENVELOPE_HEADERS, Table, envelope_rows, read_sheet, template,
                                 write_printable, write_tables, xlsx_file)
from services.evaluation.programme.domain import STAGE_ZH as STAGE_ZH_PROGRAMME
from services.evaluation.programme.domain import STAGES, TIERS
from services.evaluation.ratings.commands import CycleRef
from services.evaluation.ratings.domain import STAGE_ZH, Assessment, Rating
from services.evaluation.spreadsheets.sheets import FIELD_COLUMNS, NOTES, RATINGS, STAR, TITLE

PUBLISHED = ("publicity", "final", "appeal")


def stars_text(stars: int | None) -> str:
    return STAR * stars if stars else "未评 unrated"


class EvaluationSpreadsheets:
    def __init__(self, app):
        self.app = app
        # task-book milestones (任务书时间节点) are the programme's: services/evaluation/programme
        self.importer = Importer(app, {"ratings": self._plan_ratings,
                                       "task_milestones": app.programme.plan_milestones})

    # -- import: past years' ratings ----------------------------------------------
    def preview(self, caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        return self.importer.preview(caller, payload)

    def apply(self, caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        return self.importer.apply(caller, payload)

    def template(self, caller, kind: str) -> dict:
        caller.require_role(ORG_ADMIN)
        kind = ImportKind.of(kind=kind).kind
        if kind == "task_milestones":
            return self.app.programme.milestone_template()
        if kind != "ratings":
            raise ValidationError.single("kind", f"unknown import {kind!r}; one of "
                                         + ", ".join(self.importer.planners))
        return xlsx_file("历史星级导入模板 ratings-template.xlsx", template(TITLE, RATINGS, NOTES))

    def _plan_ratings(self, ctx: ImportContext) -> Plan:
        sheet = read_sheet(ctx.data, RATINGS, TITLE)
        errors, plan = sheet.errors, Plan.of(sheet)
        orgs = self.app.query(
            "SELECT o.id, o.name, o.level, o.status, p.name AS parent_name FROM dir_orgs o "
            "LEFT JOIN dir_orgs p ON p.id = o.parent_id ORDER BY o.status = 'active' DESC")
        by_name: dict[tuple[str, str], dict] = {}
        for o in orgs:
            by_name.setdefault(((o["parent_name"] or "").casefold(), o["name"].casefold()), o)
        # when the system itself last set each organisation's stars: backfills are earlier
        system_set = {str(r["org_id"]): r["at"] for r in self.app.query(
            "SELECT org_id, max(valid_from) AS at FROM eval_rating_history "
            "WHERE cause <> 'backfill' GROUP BY org_id")}
        ratings: dict[str, Rating] = {}
        seen: dict[tuple[str, str], int] = {}
        for row in sheet.rows:
            v = row.values
            org = by_name.get((v["parent"].casefold(), v["org"].casefold()))
            if org is None:
                errors.add(row.number, "组织名称", v["org"],
                           f"unknown organisation (组织不存在) under {v['parent']}")
                continue
            if org["level"] not in (2, 3):
                errors.add(row.number, "组织名称", v["org"],
                           "star ratings are for colleges and branches (levels 2 and 3)")
                continue
            day = v["effective_on"].isoformat()
            key = (str(org["id"]), day)
            if key in seen:
                errors.add(row.number, "生效日期", day,
                           f"duplicate row (重复): same organisation and date as row {seen[key]}")
                continue
            seen[key] = row.number
            last = system_set.get(str(org["id"]))
            if last is not None and day >= last.date().isoformat():
                errors.add(row.number, "生效日期", day,
                           f"not before the rating the system set on {last.date().isoformat()}:"
                           " a backfill is of earlier results")
                continue
            rating = ratings.get(str(org["id"]))
            if rating is None:
                rating = self._rating(org, ctx)
                ratings[str(org["id"])] = rating
            try:
                created = rating.backfill(
                    v["stars"], float(v["score"]) if v["score"] is not None else None,
                    v["period"], day, ctx.actor, ctx.row_reason(row.number),
                    [v["evidence"]] if v["evidence"] else None)
            except ValidationError as exc:
                add_domain_error(errors, row.number, exc, FIELD_COLUMNS,
                                 {"stars": v["stars"], "score": v["score"],
                                  "effective_on": day})
                continue
            if created:
                plan.created["历史星级 rating"] += 1
            else:
                plan.unchanged += 1
        plan.aggregates = [r for r in ratings.values() if r.pending_events]
        return plan

    def _rating(self, org: dict, ctx: ImportContext) -> Rating:
        rating_id = Rating.id_for(org["id"])
        if self.app.exists(rating_id):
            return self.app.load(rating_id, Rating, "rating")
        return Rating(id=rating_id, org_id=str(org["id"]), org_name=org["name"],
                      level=org["level"], actor=ctx.actor,
                      reason=f"导入 import {ctx.import_id} «{ctx.file_name}»")

    # -- queries behind the exports -------------------------------------------------
    def _cycle(self, cycle_id):
        return self.app._cycle(CycleRef.of(cycle_id=cycle_id).cycle_id)

    def publicity_list(self, caller, cycle_id) -> dict:
        """公示名单: the organisations of a cycle whose result is published, with
        stars, score and each one's publicity window (every role may read it)."""
        caller.require_role(*ROLES)
        cycle = self._cycle(cycle_id)
        rows = self.app.query(
            "SELECT a.org_id, a.org_name, a.level, a.stars, a.score, a.publicity_ends_at, "
            "a.stage, p.name AS college_name FROM eval_assessments a "
            "LEFT JOIN dir_orgs p ON p.id = a.college_id "
            "WHERE a.cycle_id = %s AND a.stage = ANY(%s) ORDER BY p.name NULLS FIRST, a.stars DESC, "
            "a.score DESC, a.org_name", (str(cycle.id), list(PUBLISHED)))
        days = dt.timedelta(days=cycle.publicity_days)
        out = []
        for r in rows:
            ends = r["publicity_ends_at"]
            out.append({"org_id": str(r["org_id"]), "org_name": r["org_name"],
                        "college_name": r["college_name"], "stars": r["stars"],
                        "score": r["score"], "stage": r["stage"],
                        "publicity_from": (ends - days).isoformat() if ends else None,
                        "publicity_until": ends.isoformat() if ends else None})
        return {"cycle_id": str(cycle.id), "name": cycle.name, "period": cycle.period,
                "publicity_days": cycle.publicity_days, "organizations": out}

    def cycle_results(self, caller, cycle_id) -> dict:
        """A cycle's results with each organisation's points per dimension (from
        the latest stage scored: review, else self-assessment)."""
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY)
        cycle = self._cycle(cycle_id)
        definition = self.app._definition(cycle)
        dimensions = [{"code": d["code"], "name": d["name"], "weight": d["weight"]}
                      for d in definition["dimensions"]]
        sql = ("SELECT a.org_id, p.name AS college_name FROM eval_assessments a "
               "LEFT JOIN dir_orgs p ON p.id = a.college_id WHERE a.cycle_id = %s")
        params: list = [str(cycle.id)]
        if caller.role == COLLEGE_SECRETARY:
            sql += " AND (a.college_id = %s OR a.org_id = %s)"
            params += [caller.org, caller.org]
        out = []
        for r in self.app.query(sql + " ORDER BY p.name NULLS FIRST, a.org_name", params):
            a = self.app.load(Assessment.id_for(cycle.id, r["org_id"]), Assessment,
                              "assessment")
            result = a.results.get("review") or a.results.get("self_assessment") or {}
            points = {d["code"]: d["points"] for d in result.get("dimensions", [])}
            out.append({
                "org_id": a.org_id, "org_name": a.org_name, "college_name": r["college_name"],
                "stage": a.stage,
                "self_score": (a.results.get("self_assessment") or {}).get("score"),
                "review_score": (a.results.get("review") or {}).get("score"),
                "score": a.score, "stars": a.stars,
                "dimensions": {d["code"]: points.get(d["code"]) for d in dimensions},
                "deductions": (result.get("deductions") or {}).get("applied"),
                "bonus": (result.get("bonus") or {}).get("applied"),
                "vetoes": result.get("vetoes") or [],
                "notes": "; ".join(a.quota_notes) or None})
        return {"cycle_id": str(cycle.id), "name": cycle.name, "period": cycle.period,
                "scheme_id": cycle.scheme_id, "scheme_version": cycle.scheme_version,
                "dimensions": dimensions, "organizations": out}

    # -- exports ---------------------------------------------------------------------
    def export_publicity_list(self, caller, cycle_id) -> dict:
        data = self.publicity_list(caller, cycle_id)
        if not data["organizations"]:
            raise NotFound(f"{data['name']}: no result is published (公示) yet")
        starts = [o["publicity_from"] for o in data["organizations"] if o["publicity_from"]]
        ends = [o["publicity_until"] for o in data["organizations"] if o["publicity_until"]]
        window = f"{_day(min(starts))} 至 {_day(max(ends))}" if starts else "—"
        rows = [[i, o["college_name"] or "—", o["org_name"], stars_text(o["stars"]), o["stars"],
                 o["score"], f"{_day(o['publicity_from'])} 至 {_day(o['publicity_until'])}"]
                for i, o in enumerate(data["organizations"], start=1)]
        table = Table(
            name="公示名单", title=[f"{data['name']} 星级评定结果公示名单",
                                  f"考评期间 period: {data['period']}　公示期 publicity: {window}"],
            headers=["序号", "上级组织", "组织名称", "星级", "星数", "得分", "公示期"],
            rows=rows, widths=[6, 24, 30, 12, 6, 8, 26])
        footer = ["公示期内如有异议，请向党委组织部反映。Objections to 组织部 within the window.",
                  f"党委组织部　{dt.date.today().isoformat()}"]
        return xlsx_file(f"公示名单-{data['period']}.xlsx", write_printable(table, footer))

    def export_cycle_results(self, caller, cycle_id) -> dict:
        data = self.cycle_results(caller, cycle_id)
        dims = data["dimensions"]
        headers = (["上级组织", "组织名称", "阶段 stage", "自评分 self", "审核分 review",
                    "最终得分 final", "星级 stars"]
                   + [f"{d['name']} ({d['weight']})" for d in dims]
                   + ["减分 deductions", "加分 bonus", "一票否决 vetoes", "说明 notes"])
        rows = ([o["college_name"], o["org_name"], STAGE_ZH.get(o["stage"], o["stage"]),
                 o["self_score"], o["review_score"], o["score"], o["stars"]]
                + [o["dimensions"][d["code"]] for d in dims]
                + [o["deductions"], o["bonus"], "、".join(o["vetoes"]) or None, o["notes"]]
                for o in data["organizations"])
        return xlsx_file(f"考评结果-{data['period']}.xlsx", write_tables([Table(
            name="考评结果", headers=headers, rows=rows,
            title=[f"{data['name']} 考评结果 results ({data['period']}, 评价指标体系 "
                   f"{data['scheme_id']} v{data['scheme_version']})"],
            widths=[24, 30, 14, 10, 10, 10, 8] + [14] * len(dims) + [10, 10, 16, 40])]))

    def export_star_distribution(self, caller, college_id=None) -> dict:
        """Per college: counts by stars, with the organisations behind each number."""
        data = self.app.star_distribution(caller, college_id)
        colleges = data["branches"]["colleges"]
        summary = [[c["college_name"], c["organizations"], c["rated"],
                    *[len(c["by_stars"][str(s)]) for s in (5, 4, 3, 2, 1)], len(c["unrated"]),
                    c["four_or_above"]["count"], c["four_or_above"]["share"],
                    c["three_or_below"]["count"]] for c in colleges]
        school = data["branches"]["school"]
        summary.append(["全校 school", school["organizations"], school["rated"],
                        *[len(school["by_stars"][str(s)]) for s in (5, 4, 3, 2, 1)],
                        len(school["unrated"]), school["four_or_above"]["count"],
                        school["four_or_above"]["share"], school["three_or_below"]["count"]])
        behind = [[c["college_name"], o["org_name"], stars_text(o["stars"]), o["stars"],
                   o["score"]]
                  for c in colleges
                  for s in ("5", "4", "3", "2", "1", None)
                  for o in (c["by_stars"][s] if s else c["unrated"])]
        return xlsx_file("星级分布 star-distribution.xlsx", write_tables([
            Table(name="分布 distribution", title=["党支部星级分布 branches' stars per college"],
                  headers=["学院 college", "支部数 branches", "已评 rated", "★5", "★4", "★3",
                           "★2", "★1", "未评 unrated", "四星以上 ★4+", "四星以上占比 share",
                           "三星及以下 ★3-"], rows=summary,
                  widths=[26, 10, 8, 6, 6, 6, 6, 6, 10, 10, 12, 12]),
            Table(name="支部 organisations", title=["每个数字背后的支部 the branches behind each number"],
                  headers=["学院 college", "组织名称", "星级", "星数", "得分"], rows=behind,
                  widths=[26, 30, 12, 6, 8])]))

    def export_programme_dashboard(self, caller, college_id=None) -> dict:
        """The school dashboard (三级联创 总览, ``programme_dashboard``) as .xlsx: per
        college, the candidacies by title, tier and stage, with the organisations
        behind each number; for the school, the targets against achievements and
        the task book's status and overdue milestones."""
        data = self.app.programme.programme_dashboard(caller, college_id, listed=True)
        rows, behind = dashboard_rows(data)
        tables = [
            Table(name="按学院 by college",
                  title=["三级联创 总览 programme dashboard: candidacies per college "
                         f"(as of {data['as_of']})"],
                  headers=DASHBOARD_HEADERS, rows=rows,
                  widths=[26, 18, 8] + [8] * len(STAGES) + [8]),
            Table(name="组织 organisations", title=["每个数字背后的组织 the organisations "
                                                  "behind each number"],
                  headers=["学院 college", "称号 title", "层级 tier", "阶段 stage", "组织名称",
                           "阶段日期 since", "创建 candidacy"],
                  rows=behind, widths=[26, 18, 8, 10, 30, 12, 38])]
        if data["targets"] is not None:
            targets = data["targets"]["targets"]
            tables.append(Table(
                name="目标 targets", title=["创建目标与完成情况 targets against achievements"],
                headers=["称号 title", "层级 tier", "目标下限 min", "目标上限 max",
                         "已达标 achieved", "达成 met", "创建中 pursuing"],
                rows=[[t["title_zh"], t["tier_zh"], t["target_min"], t["target_max"],
                       t["achieved"], "是" if t["met"] else "否", t["pursuing"]]
                      for t in targets], widths=[18, 8, 10, 10, 10, 8, 10]))
        if data["task_book"] is not None:
            book = data["task_book"]
            tables.append(Table(
                name="任务书 task book",
                title=[f"任务书 task book: {book['measures']} measures; overdue milestones"],
                headers=["编号 number", "任务 measure", "牵头部门 lead", "节点 milestone",
                         "应完成 due"],
                rows=[[o["number"], o["title"], o["lead_department"], o["milestone"],
                       o["due_on"]] for o in book["overdue"]], widths=[10, 40, 18, 40, 12]))
        scope = "" if college_id is None else f"-{college_id}"
        return xlsx_file(f"三级联创总览 programme-dashboard{scope}.xlsx", write_tables(tables))

    def export_rating_history(self, caller, org_id) -> dict:
        """An organisation's rating (星级) events, one a row: for auditors (纪委办)."""
        caller.require_role(ORG_ADMIN, AUDITOR)
        org = self.app._org(OrgRef.of(org_id=org_id).org_id)
        rating_id = Rating.id_for(org["id"])
        if not self.app.exists(rating_id):
            raise NotFound(f"{org['name']} has no rating on record")
        envelopes = self.app.history(rating_id, "rating")
        history = self.app.rating_history(caller, org["id"])
        return xlsx_file(f"星级历史-{org['name']}.xlsx", write_tables([
            Table(name="星级 ratings", title=[f"{org['name']} 星级历史 rating history"],
                  headers=["生效 in effect from", "至 until", "记录 recorded at", "星级 stars",
                           "得分 score", "原因 cause", "操作人 actor", "说明 reason"],
                  rows=[[h["valid_from"], h["valid_to"], h["recorded_at"], h["stars_after"],
                         h["score"], h["cause"], (h["actor"] or {}).get("sub"), h["reason"]]
                        for h in history], widths=[28, 28, 28, 8, 8, 18, 18, 60]),
            Table(name="事件 events", title=[f"{org['name']} 星级事件 every rating event"],
                  headers=ENVELOPE_HEADERS, rows=envelope_rows(envelopes),
                  widths=[8, 28, 30, 14, 20, 18, 50, 30, 80])]))


DASHBOARD_HEADERS = ["学院 college", "称号 title", "层级 tier",
                     *[STAGE_ZH_PROGRAMME[s] for s in STAGES], "合计 total"]
SCHOOL_LEVEL = "学校 school"


def dashboard_rows(data: dict) -> tuple[list[list], list[list]]:
    """The dashboard's candidacy cells per college: one row per college, title and
    tier (with a count per stage), and one row per organisation behind a count."""
    counts: dict[tuple, dict[str, int]] = {}
    behind = []
    for title in data["candidacies"]:
        for tier in title["tiers"]:
            for stage in tier["stages"]:
                for o in stage["organizations"]:
                    college = o.get("college_name") or SCHOOL_LEVEL
                    key = (college, title["level"], title["title_zh"], TIERS.index(tier["tier"]),
                           tier["tier_zh"])
                    cell = counts.setdefault(key, dict.fromkeys(STAGES, 0))
                    cell[stage["stage"]] += 1
                    behind.append([college, title["title_zh"], tier["tier_zh"],
                                   stage["stage_zh"], o["org_name"], o["stage_on"],
                                   o["candidacy_id"]])
    rows = [[college, title_zh, tier_zh, *[cell[s] for s in STAGES], sum(cell.values())]
            for (college, _level, title_zh, _tier, tier_zh), cell in sorted(counts.items())]
    behind.sort(key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
    return rows, behind


def _day(moment: str | None) -> str:
    return moment[:10] if moment else "—"

