"""The member pioneer index (锋领指数, seed 三.4, 五.2): its scheme as data, the
pure computation with every point's records behind it, and the aggregates.

index = 0 when a 清零 (zeroing) condition holds; otherwise
        base + min(Σ positive, positive.cap) − min(Σ negative, negative.cap),
        kept within 0-100, rounded to 0.01.

Every item names a ``source``: a fact drawn from the organisational-life
records (``SOURCES``). Study time, likes, votes and reposts are not facts the
records hold, so no scheme can name them (the validator says so).
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from eventsourcing.domain import Aggregate, event

from shared.domain import derived_id, require
from shared.errors import ValidationError

SCHEMES_DIR = Path(__file__).parent / "schemes"
MEETINGS_3_1 = ("general_meeting", "committee_meeting", "group_meeting", "party_lecture")

# source -> (what it measures, how it is used: rate | count | value)
SOURCES = {
    "meetings.attendance_rate": ("三会一课 attended / listed (请假 excused unless the item says "
                                 "count_leave)", "rate"),
    "meetings.absent": ("三会一课 and 主题党日 missed without leave (缺席)", "count"),
    "theme_days.attended": ("主题党日 attended", "count"),
    "checkup.result": ("党性体检 result per check-up", "value"),
    "appraisal.grade": ("民主评议 grade of the year", "value"),
    "team.joined": ("项目攻坚团队 memberships", "count"),
    "course_project.completed": ("课程思政 demonstration projects completed", "count"),
    "course_project.undertaken": ("课程思政 demonstration projects undertaken", "count"),
    "pledge.fulfilled": ("亮诺践诺 pledges fulfilled", "count"),
    "pledge.unfulfilled": ("亮诺践诺 pledges not fulfilled", "count"),
    "violation.bottom_line": ("底线 violations", "count"),
    "violation.red_line": ("红线 violations", "count"),
}
NEVER_INPUTS = ("study", "like", "vote", "repost", "学习时长", "点赞", "投票", "转发")
CENT = Decimal("0.01")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _d(v) -> Decimal:
    return Decimal(str(v))


def _r(v: Decimal) -> float:
    return float(v.quantize(CENT, rounding=ROUND_HALF_UP))


# -- the scheme ----------------------------------------------------------------------
def validate_index_scheme(data: Any) -> dict:
    """Check a pioneer-index scheme; one ValidationError naming every problem."""
    errors: list[dict] = []

    def err(field, message):
        errors.append({"field": field, "message": message})

    if not isinstance(data, dict):
        raise ValidationError.single("definition", "must be a mapping")
    known = {"scheme_id", "title", "description", "base", "positive", "negative", "zeroing",
             "org_life"}
    for key in data:
        if key not in known:
            err(str(key), f"unknown key; known: {', '.join(sorted(known))}")
    if not isinstance(data.get("scheme_id"), str) or not data.get("scheme_id"):
        err("scheme_id", "required")
    if not isinstance(data.get("title"), str) or not data.get("title"):
        err("title", "required")
    base = data.get("base", 60)
    if not _num(base) or not 0 <= base <= 100:
        err("base", "a number from 0 to 100")
    for part in ("positive", "negative"):
        block = data.get(part)
        if not isinstance(block, dict):
            err(part, "required: {cap, items: [{code, name, source, points | values, max?}]}")
            continue
        if not _num(block.get("cap")) or block["cap"] < 0:
            err(f"{part}.cap", "a number ≥ 0")
        codes = set()
        for i, item in enumerate(block.get("items") or []):
            f = f"{part}.items[{i}]"
            if not isinstance(item, dict):
                err(f, "must be a mapping")
                continue
            if not item.get("code") or item["code"] in codes:
                err(f"{f}.code", "required and unique")
            codes.add(item.get("code"))
            if not item.get("name"):
                err(f"{f}.name", "required")
            _check_source(err, f, item)
    for i, cond in enumerate(data.get("zeroing") or []):
        f = f"zeroing[{i}]"
        if not isinstance(cond, dict) or not cond.get("code") or not cond.get("name"):
            err(f, "needs code and name")
            continue
        source = cond.get("source")
        if source not in SOURCES or SOURCES[source][1] == "rate":
            err(f"{f}.source", "a count or value source: " + ", ".join(
                s for s, (_, use) in SOURCES.items() if use != "rate"))
        elif SOURCES[source][1] == "value" and not isinstance(cond.get("values"), list):
            err(f"{f}.values", "the values that zero the index, e.g. [unqualified]")
    org_life = data.get("org_life") or {}
    required = org_life.get("required_per_year") if isinstance(org_life, dict) else None
    if not isinstance(required, dict) or not required or not all(
            _num(v) and v >= 0 for v in required.values()):
        err("org_life.required_per_year", "meetings each branch holds per year by kind, "
            "e.g. {general_meeting: 4, committee_meeting: 12, ...}")
    if errors:
        raise ValidationError(errors)
    out = json.loads(json.dumps(data))
    out.setdefault("base", 60)
    out.setdefault("zeroing", [])
    out.setdefault("description", "")
    return out


def _check_source(err, f: str, item: dict) -> None:
    source = item.get("source")
    if source not in SOURCES:
        never = isinstance(source, str) and any(w in source.lower() for w in NEVER_INPUTS)
        err(f"{f}.source", ("study time, likes, votes and reposts are never inputs of the "
                            "index; " if never else f"unknown source {source!r}; ")
            + "one of " + ", ".join(SOURCES))
        return
    use = SOURCES[source][1]
    if use == "value":
        values = item.get("values")
        if not isinstance(values, dict) or not values or not all(_num(v) and v >= 0
                                                                 for v in values.values()):
            err(f"{f}.values", "a mapping value → points (≥ 0), e.g. {excellent: 5}")
    elif not _num(item.get("points")) or item["points"] < 0:
        err(f"{f}.points", "a number ≥ 0 (per record; for a rate, at a rate of 1)")
    if "max" in item and (not _num(item["max"]) or item["max"] < 0):
        err(f"{f}.max", "a number ≥ 0: the most this item can give")


def default_index_scheme() -> dict:
    return validate_index_scheme(yaml.safe_load(
        (SCHEMES_DIR / "pioneer_index.yaml").read_text(encoding="utf-8")))


# -- the computation ----------------------------------------------------------------------
def _grouped(facts: dict) -> dict:
    """The facts sorted once into what the sources ask for."""
    g: dict = {"listed": [], "listed_all": [], "absent": [], "theme_attended": [],
               "records": {}}
    for m in facts.get("meetings", ()):
        status = m["status"]
        if m["kind"] in MEETINGS_3_1:
            g["listed_all"].append(m)
            if status != "leave":
                g["listed"].append(m)
        elif status == "attended":
            g["theme_attended"].append(m)
        if status == "absent":
            g["absent"].append(m)
    for r in facts.get("records", ()):
        g["records"].setdefault(r["kind"], []).append(r)
    return g


def _matches(source: str, g: dict, count_leave: bool = False) -> tuple:
    """(records behind the source, the number it yields, per-record values)."""
    if source == "meetings.attendance_rate":
        listed = g["listed_all"] if count_leave else g["listed"]
        attended = sum(1 for m in listed if m["status"] == "attended")
        return listed, (_d(attended) / _d(len(listed)) if listed else None), None
    if source == "meetings.absent":
        return g["absent"], len(g["absent"]), None
    if source == "theme_days.attended":
        return g["theme_attended"], len(g["theme_attended"]), None
    kind, _, what = source.partition(".")
    of_kind = g["records"].get(kind, [])
    if source == "checkup.result":
        return of_kind, None, [r["details"].get("result") for r in of_kind]
    if source == "appraisal.grade":
        return of_kind, None, [r["details"].get("grade") for r in of_kind]
    if kind == "team":
        return of_kind, len(of_kind), None
    if kind in ("course_project", "pledge"):
        hit = [r for r in of_kind if r["details"].get("status") == what]
        return hit, len(hit), None
    if kind == "violation":
        hit = [r for r in of_kind if r["details"].get("line") == what]
        return hit, len(hit), None
    raise ValueError(f"unknown source {source}")  # unreachable for a validated scheme


def _item_points(item: dict, g: dict) -> dict:
    source = item["source"]
    recs, number, values = _matches(source, g, item.get("count_leave", False))
    use = SOURCES[source][1]
    if not recs:  # nothing behind it: no points, no Decimal arithmetic
        return {"code": item["code"], "name": item["name"], "source": source, "points": 0.0,
                "how": "no records: 0", "records": []}
    if use == "rate":
        raw = _d(item["points"]) * number if number is not None else Decimal(0)
        behind = recs
        how = (f"{item['points']} × {sum(1 for m in recs if m['status'] == 'attended')}/"
               f"{len(recs)} attended" if recs else "no meetings listed: 0")
    elif use == "count":
        raw = _d(item["points"]) * number
        behind = recs
        how = f"{item['points']} × {number}"
    else:
        behind = [r for r, v in zip(recs, values) if v in item["values"]]
        raw = sum((_d(item["values"][v]) for v in values if v in item["values"]), Decimal(0))
        how = " + ".join(f"{v} {item['values'][v]}" for v in values if v in item["values"]) \
            or "no matching record: 0"
    cap = item.get("max")
    points = min(raw, _d(cap)) if cap is not None else raw
    if cap is not None and raw > points:
        how += f", at most {cap}"
    return {"code": item["code"], "name": item["name"], "source": source,
            "points": _r(points), "how": how, "records": behind}


def compute_index(scheme: dict, facts: dict) -> dict:
    """A member's index for a year from the facts: ``{"meetings": [{record_id,
    kind, on, status (attended | leave | absent), topic}], "records":
    [{record_id, kind, on, details, label}]}``. Pure; the breakdown names the
    records behind every point (the fact rows themselves)."""
    g = _grouped(facts)
    zeroed_by = []
    for cond in scheme["zeroing"]:
        recs, number, values = _matches(cond["source"], g)
        hit = [r for r, v in zip(recs, values) if v in cond["values"]] \
            if values is not None else recs
        if hit:
            zeroed_by.append({"code": cond["code"], "name": cond["name"], "records": hit})
    parts = {}
    for part in ("positive", "negative"):
        items = [_item_points(i, g) for i in scheme[part]["items"]]
        raw = sum((_d(i["points"]) for i in items), Decimal(0))
        applied = min(raw, _d(scheme[part]["cap"]))
        parts[part] = {"cap": scheme[part]["cap"], "raw": _r(raw), "applied": _r(applied),
                       "items": [i for i in items if i["points"] or i["records"]]}
    base = _d(scheme["base"])
    value = base + _d(parts["positive"]["applied"]) - _d(parts["negative"]["applied"])
    value = max(Decimal(0), min(Decimal(100), value))
    score = 0.0 if zeroed_by else _r(value)
    explanation = (f"{scheme['base']} + {parts['positive']['applied']} − "
                   f"{parts['negative']['applied']} = {_r(value)}")
    if zeroed_by:
        explanation += " → 0 (清零: " + ", ".join(z["name"] for z in zeroed_by) + ")"
    return {"score": score, "zeroed": bool(zeroed_by), "zeroed_by": zeroed_by,
            "base": scheme["base"], "positive": parts["positive"],
            "negative": parts["negative"], "explanation": explanation}


# -- aggregates --------------------------------------------------------------------------
class IndexScheme(Aggregate):
    """Every published version of the pioneer-index scheme (锋领指数 评价办法)."""

    id: UUID

    @staticmethod
    def id_for(scheme_id: str) -> UUID:
        return derived_id("pioneer-index-scheme", scheme_id)

    @event("Registered")
    def __init__(self, scheme_id: str, actor: dict):
        self.scheme_id = scheme_id
        self.versions: dict[int, dict] = {}

    @property
    def latest_version(self) -> int:
        return max(self.versions) if self.versions else 0

    def definition(self, version: int | None = None) -> dict:
        version = version or self.latest_version
        require(version in self.versions, "scheme_version", f"no version {version}")
        return self.versions[version]

    def publish(self, definition: dict, actor: dict, reason: str | None) -> int:
        if self.versions:
            require(definition != self.versions[self.latest_version], "definition",
                    f"identical to version {self.latest_version}; nothing to publish")
        self._published(version=self.latest_version + 1, definition=definition, actor=actor,
                        reason=reason)
        return self.latest_version

    @event("Published")
    def _published(self, version: int, definition: dict, actor: dict, reason: str | None):
        self.versions[version] = definition


class MemberYear(Aggregate):
    """A year of members' records (年度党员考评); its close publishes the indices."""

    id: UUID

    @staticmethod
    def id_for(year: int) -> UUID:
        return derived_id("member-year", year)

    @event("Closed")
    def __init__(self, year: int, scheme_id: str, scheme_version: int, members: int,
                 actor: dict, reason: str | None):
        self.year = year
        self.scheme_id = scheme_id
        self.scheme_version = scheme_version


class PioneerIndex(Aggregate):
    """One member's 锋领指数 for one year: published at the year's close, then
    revised only by an event naming its cause."""

    id: UUID

    @staticmethod
    def id_for(member_id, year: int) -> UUID:
        return derived_id("pioneer-index", member_id, year)

    @event("Published")
    def __init__(self, member_id: str, member_name: str | None, year: int,
                 branch_id: str | None, college_id: str | None, score: float, zeroed: bool,
                 zeroed_by: list, breakdown: dict, scheme_id: str, scheme_version: int,
                 actor: dict, reason: str | None):
        self.member_id = member_id
        self.member_name = member_name
        self.year = year
        self.branch_id = branch_id
        self.college_id = college_id
        self.score = score
        self.zeroed = zeroed
        self.breakdown = breakdown
        self.scheme_id = scheme_id
        self.scheme_version = scheme_version
        self.revisions = 0
        self.last_cause = None

    def revise(self, result: dict, branch_id, college_id, cause: dict, actor: dict,
               reason: str | None) -> bool:
        """A later record changed the index: a new event naming that record."""
        if result["score"] == self.score and result == self.breakdown:
            return False
        self._revised(score=result["score"], previous_score=self.score,
                      zeroed=result["zeroed"], was_zeroed=self.zeroed,
                      zeroed_by=result["zeroed_by"], breakdown=result, branch_id=branch_id,
                      college_id=college_id, member_id=self.member_id,
                      member_name=self.member_name, year=self.year,
                      cause=cause, actor=actor, reason=reason)
        return True

    @event("Revised")
    def _revised(self, score: float, previous_score: float, zeroed: bool, was_zeroed: bool,
                 zeroed_by: list, breakdown: dict, branch_id, college_id, member_id: str,
                 member_name: str | None, year: int, cause: dict, actor: dict,
                 reason: str | None):
        self.score = score
        self.zeroed = zeroed
        self.breakdown = breakdown
        self.branch_id = branch_id
        self.college_id = college_id
        self.revisions += 1
        self.last_cause = cause
