"""Party-building innovation projects (党建创新项目, R7; seed 六.2, 五.3), pure of I/O.

"每两年立项确定一批党建创新项目，进行试点探索，滚动培育推广": projects are
approved in two-year rounds (``2024-2025``), one per organisation and round
(一总支一品牌 for a college, 一支部一特色 for a branch, or the committee's own),
and move 申报 → 立项 | 不予立项, 立项 → 中期检查 → 结项 with results, or 终止
(stopped) from 立项 or 中期检查. Every move is dated, with actor, reason and
evidence; an illegal one is refused naming the stage the project is in.
"""
from __future__ import annotations

import re
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, parse_date, require
from services.evaluation.programme.domain import clean_text

PROJECT_STAGES = ("applied", "approved", "rejected", "midterm_checked", "completed",
                  "terminated")
PROJECT_STAGE_ZH = {"applied": "申报", "approved": "立项", "rejected": "不予立项",
                    "midterm_checked": "中期检查", "completed": "结项", "terminated": "终止"}
PROJECT_MOVES = {
    "applied": ("approved", "rejected"),
    "approved": ("midterm_checked", "terminated"),
    "midterm_checked": ("completed", "terminated"),
    "rejected": (),
    "completed": (),
    "terminated": (),
}
PROJECT_FINAL = ("rejected", "completed", "terminated")
# 中期检查 verdicts; a 不合格 mid-term is recorded, then the project is stopped (终止)
# or continues after rectification: 组织部 decides with the next move.
MIDTERM_VERDICTS = {"good": "良好", "pass": "合格", "rectify": "限期整改", "fail": "不合格"}
COMPLETION_GRADES = {"excellent": "优秀", "good": "良好", "pass": "合格", "fail": "不合格"}
ROUND = re.compile(r"^(\d{4})-(\d{4})$")


def project_stage_label(stage: str) -> str:
    return f"{PROJECT_STAGE_ZH[stage]} {stage}"


def check_round(code) -> tuple[str, int, int]:
    """A two-year round: ``YYYY-YYYY`` with consecutive years (每两年立项)."""
    match = ROUND.match(str(code or ""))
    require(match is not None, "round", "a two-year round such as 2024-2025")
    first, second = int(match.group(1)), int(match.group(2))
    require(second == first + 1, "round", "a round is two consecutive years (每两年立项), "
            f"e.g. {first}-{first + 1}")
    require(1900 <= first <= 2200, "round", "a year from 1900 to 2200")
    return f"{first}-{second}", first, second


class InnovationProject(Aggregate):
    """One organisation's Party-building innovation project (党建创新项目) in a round."""

    id: UUID

    @staticmethod
    def id_for(round_code: str, org_id) -> UUID:
        """One project per organisation and round: a second application clashes."""
        return derived_id("innovation-project", round_code, org_id)

    @event("Applied")
    def __init__(self, round: str, org_id: str, org_name: str, level: int,
                 college_id: str | None, name: str, summary: str | None, on: str,
                 actor: dict, reason: str | None, evidence: list):
        self.round = round
        self.org_id = org_id
        self.org_name = org_name
        self.level = level
        self.college_id = college_id
        self.name = name
        self.stage = "applied"
        self.stage_on = on
        self.results: list[str] = []
        self.grade: str | None = None
        self.midterm_verdict: str | None = None

    @classmethod
    def apply(cls, round_code, org: dict, college_id, name, summary, on, actor, reason,
              evidence) -> "InnovationProject":
        round_code, first, second = check_round(round_code)
        on = parse_date(on, "on")
        require(int(on[:4]) in (first - 1, first), "on",
                f"applications to round {round_code} are made in {first - 1} or {first}")
        return cls(id=cls.id_for(round_code, org["id"]), round=round_code,
                   org_id=str(org["id"]), org_name=org["name"], level=int(org["level"]),
                   college_id=str(college_id) if college_id else None,
                   name=clean_text(name, "name", limit=200),
                   summary=clean_text(summary, "summary", required=False, limit=4000), on=on,
                   actor=actor, reason=clean_text(reason, "reason", required=False),
                   evidence=list(evidence or []))

    @property
    def open(self) -> bool:
        return self.stage not in PROJECT_FINAL

    def move(self, to_stage: str, on, actor: dict, reason, evidence,
             midterm_verdict: str | None = None, results: list | None = None,
             grade: str | None = None) -> None:
        """The next step of the project; any other is refused naming its stage.
        A 中期检查 records its verdict; a 结项 its results (成果) and grade."""
        require(to_stage in PROJECT_STAGES, "to_stage", "one of " + ", ".join(
            f"{s} ({PROJECT_STAGE_ZH[s]})" for s in PROJECT_STAGES))
        allowed = PROJECT_MOVES[self.stage]
        if to_stage not in allowed:
            after = " or ".join(project_stage_label(s) for s in allowed) or \
                "nothing (it is final)"
            require(False, "to_stage",
                    f"the innovation project {self.name} of {self.org_name} is at "
                    f"{project_stage_label(self.stage)}: it cannot move to "
                    f"{project_stage_label(to_stage)}; next: {after}")
        on = parse_date(on, "on")
        require(on >= self.stage_on, "on", f"before the last move ({self.stage_on})")
        reason = clean_text(reason, "reason")
        if to_stage == "midterm_checked":
            require(midterm_verdict in MIDTERM_VERDICTS, "midterm_verdict",
                    "the 中期检查 verdict: one of " + ", ".join(
                        f"{k} ({v})" for k, v in MIDTERM_VERDICTS.items()))
        else:
            require(midterm_verdict is None, "midterm_verdict", "only a 中期检查 has a verdict")
        if to_stage == "completed":
            results = [clean_text(r, f"results[{i}]", limit=500)
                       for i, r in enumerate(results or [])]
            require(bool(results), "results", "结项 lists the project's results (成果: cases, "
                    "brands, reports)")
            require(grade in COMPLETION_GRADES, "grade", "the 结项 grade: one of " + ", ".join(
                f"{k} ({v})" for k, v in COMPLETION_GRADES.items()))
            require(bool(evidence), "evidence", "结项 needs its evidence (结项材料)")
        else:
            require(not results, "results", "only a 结项 (completed) move lists results")
            require(grade is None, "grade", "only a 结项 (completed) move has a grade")
        if to_stage in ("approved", "rejected", "midterm_checked"):
            require(bool(evidence), "evidence", f"{PROJECT_STAGE_ZH[to_stage]} needs its "
                    "document (立项文件, 评审意见 or 中期检查报告)")
        self._moved(org_id=self.org_id, round=self.round, from_stage=self.stage,
                    to_stage=to_stage, on=on, midterm_verdict=midterm_verdict,
                    results=list(results or []), grade=grade, actor=actor, reason=reason,
                    evidence=list(evidence or []))

    @event("Moved")
    def _moved(self, org_id: str, round: str, from_stage: str, to_stage: str, on: str,
               midterm_verdict: str | None, results: list, grade: str | None, actor: dict,
               reason: str, evidence: list):
        self.stage = to_stage
        self.stage_on = on
        if midterm_verdict is not None:
            self.midterm_verdict = midterm_verdict
        if to_stage == "completed":
            self.results = list(results)
            self.grade = grade
