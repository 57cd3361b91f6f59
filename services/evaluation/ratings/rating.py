"""The star rating aggregate (星级), pure of I/O: an organisation's stars over
time, changed by cycle results, direct grading (直接定级), major problems
(重大问题), verified rectifications (整改) and backfilled past results."""
from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, require


class Rating(Aggregate):
    """An organisation's star rating (星级) and fortress index (堡垒指数) over time.

    ``underlying`` is what the last cycle result or direct grading set; while a
    major problem (重大问题) is open the effective stars are capped at the
    downgrade level; a verified rectification lifts the cap."""

    id: UUID

    @staticmethod
    def id_for(org_id) -> UUID:
        return derived_id("rating", org_id)

    @event("Opened")
    def __init__(self, org_id: str, org_name: str, level: int, actor: dict,
                 reason: str | None = None):
        self.org_id = org_id
        self.org_name = org_name
        self.level = level
        self.stars: int | None = None
        self.underlying: int | None = None
        self.score: float | None = None
        self.scheme_id: str | None = None
        self.scheme_version: int | None = None
        self.cycle_id: str | None = None
        self.problems: dict[str, dict] = {}  # problem_id -> {downgrade_to, status, ...}
        self.backfills: dict[str, dict] = {}  # effective date -> {stars, score, period, version}
        self.system_set = False  # a cycle, direct grading or problem changed the stars

    @classmethod
    def open_for(cls, org_id, org_name: str, level: int, actor: dict) -> "Rating":
        return cls(id=cls.id_for(org_id), org_id=str(org_id), org_name=org_name, level=level,
                   actor=actor)

    def _cap(self) -> int | None:
        caps = [p["downgrade_to"] for p in self.problems.values()
                if p["status"] != "verified" and p.get("kind", "major_problem") == "major_problem"]
        return min(caps) if caps else None

    def _effective(self, underlying: int | None) -> int | None:
        cap = self._cap()
        if cap is None:
            return underlying
        return cap if underlying is None else min(underlying, cap)

    def _record_change(self, new_stars: int | None, score, cause: str, cycle_id, scheme_id,
                       scheme_version, breakdown, today: dt.date, rectification_days: float,
                       actor: dict, reason, evidence) -> None:
        before = self.stars
        if score is None:  # a downgrade or restoration keeps the last score and scheme
            score, scheme_id, scheme_version = self.score, self.scheme_id, self.scheme_version
        self._changed(org_id=self.org_id, org_name=self.org_name, stars_before=before,
                      stars_after=new_stars, score=score, cause=cause, scheme_id=scheme_id,
                      scheme_version=scheme_version, cycle_id=cycle_id, breakdown=breakdown,
                      actor=actor, reason=reason, evidence=evidence)
        if new_stars is not None and new_stars <= 3 and (before is None or before >= 4):
            due = (today + dt.timedelta(days=rectification_days)).isoformat()
            self._fell(org_id=self.org_id, org_name=self.org_name, stars=new_stars,
                       previous_stars=before, rectification_due=due, actor=actor,
                       reason=reason, evidence=evidence)

    def apply_result(self, stars: int, score: float | None, cause: str, cycle_id, scheme_id,
                     scheme_version, breakdown, today: dt.date, rectification_days: float,
                     actor: dict, reason=None, evidence=None) -> None:
        """A cycle's final result or a direct grading sets the underlying stars."""
        self._underlying_set(stars=stars, actor=actor, reason=reason)
        self._record_change(self._effective(stars), score, cause, cycle_id, scheme_id,
                            scheme_version, breakdown, today, rectification_days, actor,
                            reason, evidence)
        self._oblige_rectification(cycle_id, today, rectification_days, actor)

    def _oblige_rectification(self, cycle_id, today: dt.date, rectification_days: float,
                              actor: dict) -> None:
        """★3 and below (三.4 "逐步消除三星及以下"): a rectification (整改) is owed,
        whether or not a major problem was recorded — planned, completed and
        verified like a major problem's, without capping the stars."""
        if self.stars is None or self.stars > 3:
            return
        if any(p.get("kind") == "low_stars" and p["status"] != "verified"
               for p in self.problems.values()):
            return  # one open obligation at a time
        problem_id = f"low-stars-{cycle_id or today.isoformat()}"
        if problem_id in self.problems:
            return
        due = (today + dt.timedelta(days=rectification_days)).isoformat()
        self._rectification_obliged(
            org_id=self.org_id, problem_id=problem_id, stars=self.stars,
            description=f"星级为★{self.stars}（三星及以下），须整改 rated ★{self.stars}: a "
                        "rectification is owed", rectification_due=due, actor=actor,
            reason="三星及以下党组织整改 (三.4)")

    @event("RectificationObliged")
    def _rectification_obliged(self, org_id: str, problem_id: str, stars: int,
                               description: str, rectification_due: str, actor: dict,
                               reason: str):
        self.problems[problem_id] = {"description": description, "downgrade_to": stars,
                                     "status": "open", "rectification_due": rectification_due,
                                     "plan": None, "kind": "low_stars"}

    @event("UnderlyingSet")
    def _underlying_set(self, stars: int, actor: dict, reason: str | None):
        self.underlying = stars

    @event("Changed")
    def _changed(self, org_id: str, org_name: str, stars_before: int | None,
                 stars_after: int | None, score: float | None, cause: str,
                 scheme_id: str | None, scheme_version: int | None, cycle_id: str | None,
                 breakdown: Any, actor: dict, reason: str | None, evidence: Any):
        self.stars = stars_after
        self.system_set = True  # a backfill never overrides what the system set since
        if score is not None:
            self.score = score
        if scheme_version is not None:
            self.scheme_id, self.scheme_version = scheme_id, scheme_version
        if cycle_id is not None:
            self.cycle_id = cycle_id

    @event("FellToThreeOrBelow")
    def _fell(self, org_id: str, org_name: str, stars: int, previous_stars: int | None,
              rectification_due: str | None, actor: dict, reason: str | None, evidence: Any):
        pass  # the fact itself is what notifications and R1 (六.1) need

    # -- backfill of past years (历史星级补录) --------------------------------------------
    def backfill(self, stars: int, score: float | None, period: str, effective_on: str,
                 actor: dict, reason: str, evidence: list | None = None) -> bool:
        """A past result taken from the records (e.g. a 2024 workbook), effective at
        ``effective_on`` rather than when it is recorded. Keyed by that date: the
        same result again changes nothing (False); a different one for the same
        date is refused. It becomes the current rating only while the system
        itself has set none and no later backfill exists."""
        require(isinstance(stars, int) and 1 <= stars <= 5, "stars", "1-5 stars")
        require(score is None or 0 <= score <= 100, "score", "0-100")
        require(bool(reason), "reason", "a backfill names its source")
        backfills = getattr(self, "backfills", {})
        known = backfills.get(effective_on)
        if known is not None:
            require(known["stars"] == stars and known["score"] == score, "effective_on",
                    f"a different rating (★{known['stars']}, {known['score']}) is on record "
                    f"for {effective_on} ({known['period']})")
            return False
        current = not getattr(self, "system_set", False) and \
            all(day < effective_on for day in backfills)
        self._backfilled(org_id=self.org_id, org_name=self.org_name, stars=stars, score=score,
                         period=period, effective_on=effective_on, current=current,
                         actor=actor, reason=reason, evidence=evidence)
        return True

    @event("Backfilled")
    def _backfilled(self, org_id: str, org_name: str, stars: int, score: float | None,
                    period: str, effective_on: str, current: bool, actor: dict, reason: str,
                    evidence: Any):
        if not hasattr(self, "backfills"):
            self.backfills = {}
        self.backfills[effective_on] = {"stars": stars, "score": score, "period": period,
                                        "version": self.version + 1}
        if current:
            self.underlying = stars
            self.stars = self._effective(stars)
            if score is not None:
                self.score = score

    # -- 重大问题 and 整改 ---------------------------------------------------------
    def record_major_problem(self, problem_id: str, description: str, downgrade_to: int,
                             rectification_days: float, today: dt.date, actor: dict,
                             reason: str, evidence: list) -> None:
        require(problem_id not in self.problems, "problem_id", "already recorded")
        require(bool(description), "description", "required")
        require(bool(reason), "reason", "a downgrade needs a reason")
        require(bool(evidence), "evidence", "a downgrade needs evidence")
        due = (today + dt.timedelta(days=rectification_days)).isoformat()
        self._problem_recorded(org_id=self.org_id, problem_id=problem_id,
                               description=description, downgrade_to=downgrade_to,
                               rectification_due=due, actor=actor, reason=reason,
                               evidence=evidence)
        new = self._effective(self.underlying)
        if new != self.stars:
            self._record_change(new, None, "major_problem", None, None, None,
                                {"problem_id": problem_id, "downgrade_to": downgrade_to},
                                today, rectification_days, actor, reason, evidence)

    @event("MajorProblemRecorded")
    def _problem_recorded(self, org_id: str, problem_id: str, description: str,
                          downgrade_to: int, rectification_due: str, actor: dict, reason: str,
                          evidence: Any):
        self.problems[problem_id] = {"description": description, "downgrade_to": downgrade_to,
                                     "status": "open", "rectification_due": rectification_due,
                                     "plan": None}

    def _problem(self, problem_id: str, *statuses: str) -> dict:
        problem = self.problems.get(problem_id)
        require(problem is not None, "problem_id", f"no major problem {problem_id} on record")
        require(problem["status"] in statuses, "problem_id",
                f"the rectification is {problem['status']}, expected {' or '.join(statuses)}")
        return problem

    def plan_rectification(self, problem_id: str, plan: str, due: str, actor: dict) -> None:
        self._problem(problem_id, "open", "planned")
        require(bool(plan), "plan", "a rectification (整改) plan needs its content")
        self._rectification_planned(org_id=self.org_id, problem_id=problem_id, plan=plan,
                                    due=due, actor=actor, reason=plan)

    @event("RectificationPlanned")
    def _rectification_planned(self, org_id: str, problem_id: str, plan: str, due: str,
                               actor: dict, reason: str):
        self.problems[problem_id].update(status="planned", plan=plan)

    def complete_rectification(self, problem_id: str, actor: dict, reason: str,
                               evidence: list) -> None:
        self._problem(problem_id, "planned")
        require(bool(evidence), "evidence", "a completed rectification needs evidence")
        self._rectification_completed(org_id=self.org_id, problem_id=problem_id, actor=actor,
                                      reason=reason, evidence=evidence)

    @event("RectificationCompleted")
    def _rectification_completed(self, org_id: str, problem_id: str, actor: dict,
                                 reason: str | None, evidence: Any):
        self.problems[problem_id]["status"] = "completed"

    def verify_rectification(self, problem_id: str, today: dt.date, rectification_days: float,
                             actor: dict, reason: str, evidence: list | None) -> None:
        """组织部 verifies the rectification: the cap lifts, the rating is restored."""
        self._problem(problem_id, "completed")
        require(bool(reason), "reason", "a verification needs its reasons")
        self._rectification_verified(org_id=self.org_id, problem_id=problem_id,
                                     stars_before=self.stars, actor=actor, reason=reason,
                                     evidence=evidence)
        restored = self._effective(self.underlying)
        if restored != self.stars:
            self._record_change(restored, None, "rectification_verified", None, None, None,
                                {"problem_id": problem_id}, today, rectification_days, actor,
                                reason, evidence)

    @event("RectificationVerified")
    def _rectification_verified(self, org_id: str, problem_id: str, stars_before: int | None,
                                actor: dict, reason: str, evidence: Any):
        self.problems[problem_id]["status"] = "verified"
