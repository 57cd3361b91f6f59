"""Indicator schemes (评价指标体系) as data, and the pure scoring under them.

A scheme is a plain dict (loaded from YAML or JSON, see docs/schemes.md):
dimensions → indicators (max score, weight, evidence required, entered or
derived), bonus (加分) and deduction (减分) items with caps, vetoes
(一票否决), the composite formula, star bands and quota caps. Nothing about a
scheme is a code constant: the shipped defaults live in ``schemes/*.yaml``.

``validate_scheme`` reports every error at once; ``score`` computes the
fortress index (堡垒指数) with its breakdown; ``apply_quotas`` ranks a group of
organisations against the quota caps and explains every demotion.
No I/O here except reading the shipped default files.
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable

import yaml

from shared.commands import check_document
from shared.errors import ValidationError

SCHEMES_DIR = Path(__file__).parent / "schemes"
LEVELS = {1: "学校党委 university committee", 2: "二级学院党组织 college", 3: "党支部 branch"}
SCORING_METHODS = ("entered", "derived")
# Where bonus (加分) and deduction (减分) items apply: inside the base part before
# the weighting (default), or added to the weighted composite.
ADJUSTMENTS = ("inside_base", "after_weighting")
RATED_LEVELS = (2, 3)  # star ratings are for grassroots organisations (levels 2 and 3)
QUOTA_SCOPES = ("college", "school")
TIE_RULES = ("demote_all", "admit_all")
HUNDRED = Decimal(100)
CENT = Decimal("0.01")

# Records a derived indicator may name as its source. The records themselves
# arrive with later issues; until a provider is registered for a source, the
# reviewer enters the value and the breakdown says so (no invented numbers).
DERIVED_SOURCES = {
    "org_life.three_meetings_one_lesson_attendance": "三会一课 attendance rate (0-1)",
    "org_life.theme_party_day_count": "主题党日 held this period / required (0-1)",
    "members.double_leader_secretary": "secretary is a 双带头人 (0 or 1)",
    "members.pioneer_index_average": "members' average 锋领指数 (0-1 of 100)",
    "tasks.progress": "task-book (任务书) measures on schedule (0-1)",
    "teams.teacher_participation": "party-member teachers in a 项目攻坚团队 (0-1)",
    "org_life.meetings_held": "三会一课 and 主题党日 held / required per year (0-1)",
    "ratings.branch_stars": "a college's branches at ★4 and above (0-1)",
}
# source -> callable(org_id, cycle) -> fraction 0..1, or {"fraction", "records",
# "explanation"} naming the records behind it, or None (no records: entered).
# Filled by evaluation's members package from the organisational-life records.
# ``cycle`` is {"cycle_id", "period"} and may carry "asked": a dict the caller
# keeps for one scoring, where providers keep what they looked up (the
# organisation, asked once for all the derived indicators of one submission).
DERIVATION_PROVIDERS: dict[str, Callable[[str, dict], float | dict | None]] = {}


def register_derivation(source: str, provider: Callable[[str, dict], float | None]) -> None:
    """Plug in the records behind a derived indicator (used by later issues)."""
    if source not in DERIVED_SOURCES:
        raise ValueError(f"unknown derived source {source!r}")
    DERIVATION_PROVIDERS[source] = provider


# -- loading and validation ---------------------------------------------------
MAX_DAYS = 3650  # windows and rectification periods: at most ten years


def parse_scheme_text(text: str, fmt: str = "yaml") -> dict:
    """YAML or JSON text -> dict, or a ValidationError naming ``definition``."""
    if fmt not in ("yaml", "json"):
        raise ValidationError.single("format", "one of yaml, json")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationError.single("definition", f"not valid {fmt.upper()}: {exc}")
    except RecursionError:
        raise ValidationError.single("definition", "nested too deeply") from None
    if not isinstance(data, dict):
        raise ValidationError.single("definition", "must be a mapping at the top level")
    return data


def _num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _code(value) -> bool:
    return isinstance(value, str) and value.strip() != "" and len(value) <= 80


def validate_scheme(data: Any) -> dict:
    """Check a scheme and return it normalised; raise one ValidationError
    listing every problem (field path + message)."""
    errors: list[dict] = []

    def err(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    if not isinstance(data, dict):
        raise ValidationError.single("definition", "must be a mapping")
    # No NUL, control or bidi character, NaN, non-JSON value or alias bomb
    # gets into a stored definition (the events and read models keep it as JSON).
    check_document(data, "definition")
    known_top = {"scheme_id", "title", "level", "standard", "description", "composite",
                 "appraisal", "dimensions", "indicators", "bonus", "deductions", "vetoes",
                 "bands", "quotas", "publicity_days", "appeal_days", "major_problem"}
    for key in data:
        if key not in known_top:
            err(str(key), f"unknown key; known: {', '.join(sorted(known_top))}")
    if not _code(data.get("scheme_id")):
        err("scheme_id", "required: a short code such as model_branch")
    if not isinstance(data.get("title"), str) or not data.get("title", "").strip():
        err("title", "required: the scheme's name, e.g. 样板支部 七个有力")
    level = data.get("level")
    if level not in LEVELS:
        err("level", "must be 1 (university), 2 (college) or 3 (branch)")

    # composite: (base − deductions) × base% + appraisal × appraisal% + bonus
    comp = data.get("composite") or {}
    if not isinstance(comp, dict):
        err("composite", "must be a mapping {base: 70, appraisal: 30}")
        comp = {}
    base_w, appr_w = comp.get("base", 100), comp.get("appraisal", 0)
    if comp.get("adjustments", "inside_base") not in ADJUSTMENTS:
        err("composite.adjustments", "where bonus and deduction items apply: "
            + " or ".join(ADJUSTMENTS))
    if not _num(base_w) or not _num(appr_w) or base_w < 0 or appr_w < 0:
        err("composite", "base and appraisal are percentages (numbers ≥ 0)")
    elif abs(base_w + appr_w - 100) > 1e-9:
        err("composite", f"base + appraisal must add up to 100, not {base_w + appr_w}")

    dims = data.get("dimensions")
    dim_codes: dict[str, dict] = {}
    if not isinstance(dims, list) or not dims:
        err("dimensions", "required: a list of dimensions (code, name, weight)")
        dims = []
    for i, d in enumerate(dims):
        f = f"dimensions[{i}]"
        if not isinstance(d, dict):
            err(f, "must be a mapping")
            continue
        if not _code(d.get("code")):
            err(f"{f}.code", "required")
        elif d["code"] in dim_codes:
            err(f"{f}.code", f"duplicate dimension {d['code']!r}")
        else:
            dim_codes[d["code"]] = d
        if not isinstance(d.get("name"), str) or not d.get("name"):
            err(f"{f}.name", "required")
        if not _num(d.get("weight")) or d["weight"] <= 0:
            err(f"{f}.weight", "a positive number (share of the base score, all add up to 100)")
    dim_weights = [d.get("weight") for d in dims if isinstance(d, dict) and _num(d.get("weight"))]
    if dims and len(dim_weights) == len(dims) and abs(sum(dim_weights) - 100) > 1e-9:
        err("dimensions", f"dimension weights must add up to 100, not {sum(dim_weights)}")

    inds = data.get("indicators")
    if not isinstance(inds, list) or not inds:
        err("indicators", "required: a list of indicators")
        inds = []
    ind_codes: set[str] = set()
    per_dim: dict[str, list] = {}
    for i, ind in enumerate(inds):
        f = f"indicators[{i}]"
        if not isinstance(ind, dict):
            err(f, "must be a mapping")
            continue
        if not _code(ind.get("code")):
            err(f"{f}.code", "required")
        elif ind["code"] in ind_codes:
            err(f"{f}.code", f"duplicate indicator {ind['code']!r}")
        else:
            ind_codes.add(ind["code"])
        if not isinstance(ind.get("name"), str) or not ind.get("name"):
            err(f"{f}.name", "required")
        dim = ind.get("dimension")
        if dim not in dim_codes:
            err(f"{f}.dimension", f"unknown dimension {dim!r}; known: {', '.join(dim_codes)}")
        if not _num(ind.get("max_score")) or ind["max_score"] <= 0:
            err(f"{f}.max_score", "a positive number")
        if not _num(ind.get("weight")) or ind["weight"] <= 0:
            err(f"{f}.weight", "a positive number (share of its dimension, all add up to 100)")
        elif dim in dim_codes:
            per_dim.setdefault(dim, []).append(ind["weight"])
        evidence = ind.get("evidence", [])
        if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
            err(f"{f}.evidence", "a list of the evidence required (text)")
        method = ind.get("scoring", "entered")
        if method not in SCORING_METHODS:
            err(f"{f}.scoring", f"one of {', '.join(SCORING_METHODS)}")
        if method == "derived":
            if ind.get("source") not in DERIVED_SOURCES:
                err(f"{f}.source", "a derived indicator names its source, one of "
                    + ", ".join(DERIVED_SOURCES))
        elif "source" in ind:
            err(f"{f}.source", "only a derived indicator has a source")
    for code in dim_codes:
        weights = per_dim.get(code, [])
        if not weights:
            err("indicators", f"dimension {code!r} has no indicators")
        elif abs(sum(weights) - 100) > 1e-9:
            err("indicators", f"weights of the indicators of dimension {code!r} must add up "
                f"to 100, not {sum(weights)}")

    for kind in ("bonus", "deductions"):
        block = data.get(kind)
        if block is None:
            continue
        if not isinstance(block, dict):
            err(kind, "must be a mapping {cap, items}")
            continue
        if not _num(block.get("cap")) or block["cap"] < 0:
            err(f"{kind}.cap", "a number ≥ 0 (the most these items can add up to)")
        seen = set()
        for i, item in enumerate(block.get("items") or []):
            f = f"{kind}.items[{i}]"
            if not isinstance(item, dict) or not _code(item.get("code")):
                err(f"{f}.code", "required")
                continue
            if item["code"] in seen:
                err(f"{f}.code", f"duplicate item {item['code']!r}")
            seen.add(item["code"])
            if not isinstance(item.get("name"), str) or not item.get("name"):
                err(f"{f}.name", "required")
            if not _num(item.get("points")) or item["points"] <= 0:
                err(f"{f}.points", "a positive number")

    vetoes = data.get("vetoes")
    if vetoes is not None:
        if not isinstance(vetoes, dict):
            err("vetoes", "must be a mapping {max_stars, items}")
        else:
            if vetoes.get("max_stars", 2) not in (1, 2):
                err("vetoes.max_stars", "a veto (一票否决) forbids ★3 and above: 1 or 2")
            for i, item in enumerate(vetoes.get("items") or []):
                if not isinstance(item, dict) or not _code(item.get("code")) \
                        or not item.get("name"):
                    err(f"vetoes.items[{i}]", "needs code and name")

    bands = data.get("bands")
    if level not in RATED_LEVELS:
        for key in ("bands", "quotas", "vetoes"):
            if data.get(key):
                err(key, "star ratings are for grassroots organisations (levels 2 and 3); "
                    "the university committee pursues its title (示范高校), not stars")
        bands = []
    elif not isinstance(bands, list) or not bands:
        err("bands", "required: star bands [{stars, min, max}]")
        bands = []
    ranges = []
    for i, b in enumerate(bands):
        f = f"bands[{i}]"
        if not isinstance(b, dict):
            err(f, "must be a mapping")
            continue
        ok = True
        if b.get("stars") not in (1, 2, 3, 4, 5):
            err(f"{f}.stars", "1 to 5")
            ok = False
        for key in ("min", "max"):
            if not _num(b.get(key)) or not 0 <= b[key] <= 100:
                err(f"{f}.{key}", "a score from 0 to 100")
                ok = False
        if ok and b["min"] >= b["max"]:
            err(f"{f}", "min must be below max")
            ok = False
        if ok:
            ranges.append((b["min"], b["max"], b["stars"], i))
    ranges.sort()
    stars_seen = [r[2] for r in ranges]
    if len(set(stars_seen)) != len(stars_seen):
        err("bands", "each star count appears in one band only")
    for (lo1, hi1, s1, i1), (lo2, hi2, s2, i2) in zip(ranges, ranges[1:]):
        if lo2 < hi1:
            err("bands", f"bands[{i1}] ({lo1}-{hi1}) and bands[{i2}] ({lo2}-{hi2}) overlap")
        elif lo2 > hi1:
            err("bands", f"no band covers scores from {hi1} to {lo2}")
        if s2 <= s1:
            err("bands", f"bands[{i2}] has a higher range but not more stars than bands[{i1}]")
    if ranges and (ranges[0][0] != 0 or ranges[-1][1] != 100):
        err("bands", "the bands must cover every score from 0 to 100")

    quotas = data.get("quotas") or []
    if not isinstance(quotas, list):
        err("quotas", "a list of quota caps")
        quotas = []
    for i, q in enumerate(quotas):
        f = f"quotas[{i}]"
        if not isinstance(q, dict):
            err(f, "must be a mapping")
            continue
        if q.get("min_stars") not in (2, 3, 4, 5):
            err(f"{f}.min_stars", "2 to 5: the cap applies to organisations at this many stars or more")
        if not _num(q.get("max_share")) or not 0 <= q["max_share"] <= 100:
            err(f"{f}.max_share", "a percentage 0-100")
        if q.get("scope", "school") not in QUOTA_SCOPES:
            err(f"{f}.scope", f"one of {', '.join(QUOTA_SCOPES)}")
        elif q.get("scope") == "college" and level != 3:
            err(f"{f}.scope", "a per-college quota applies to branches (level 3) only")
        if q.get("ties", "demote_all") not in TIE_RULES:
            err(f"{f}.ties", f"one of {', '.join(TIE_RULES)}")

    for key, default in (("publicity_days", 7), ("appeal_days", 10)):
        value = data.get(key, default)
        if not _num(value) or not 0 < value <= MAX_DAYS:
            err(key, f"a positive number of days, at most {MAX_DAYS}")
    mp = data.get("major_problem") or {}
    if not isinstance(mp, dict):
        err("major_problem", "a mapping {downgrade_to, rectification_days}")
    else:
        if mp.get("downgrade_to", 2) not in (1, 2, 3):
            err("major_problem.downgrade_to", "1 to 3 stars")
        days = mp.get("rectification_days", 90)
        if not _num(days) or not 0 < days <= MAX_DAYS:
            err("major_problem.rectification_days",
                f"a positive number of days, at most {MAX_DAYS}")

    if errors:
        raise ValidationError(errors)
    return normalise(data)


def normalise(data: dict) -> dict:
    """Fill the documented defaults so every stored version is explicit."""
    out = json.loads(json.dumps(data))  # a deep copy that is certainly JSON
    out.setdefault("standard", "")
    out.setdefault("description", "")
    out["composite"] = {"base": (data.get("composite") or {}).get("base", 100),
                        "appraisal": (data.get("composite") or {}).get("appraisal", 0),
                        "adjustments": (data.get("composite") or {}).get("adjustments",
                                                                         "inside_base")}
    out.setdefault("bands", [])
    out.setdefault("appraisal", {"name": "评议 member and mass evaluation"})
    for ind in out["indicators"]:
        ind.setdefault("evidence", [])
        ind.setdefault("scoring", "entered")
    for kind in ("bonus", "deductions"):
        out[kind] = {"cap": (out.get(kind) or {}).get("cap", 0),
                     "items": list((out.get(kind) or {}).get("items") or [])}
    out["vetoes"] = {"max_stars": (out.get("vetoes") or {}).get("max_stars", 2),
                     "items": list((out.get("vetoes") or {}).get("items") or [])}
    out["bands"] = sorted(out["bands"], key=lambda b: -b["stars"])
    out["quotas"] = [{"min_stars": q["min_stars"], "max_share": q["max_share"],
                      "scope": q.get("scope", "school"), "ties": q.get("ties", "demote_all")}
                     for q in out.get("quotas") or []]
    out.setdefault("publicity_days", 7)
    out.setdefault("appeal_days", 10)
    out["major_problem"] = {"downgrade_to": (out.get("major_problem") or {}).get("downgrade_to", 2),
                            "rectification_days": (out.get("major_problem") or {}).get(
                                "rectification_days", 90)}
    return out


def default_schemes() -> list[dict]:
    """The shipped defaults (levels 1-3), validated."""
    return [validate_scheme(yaml.safe_load(path.read_text(encoding="utf-8")))
            for path in sorted(SCHEMES_DIR.glob("*.yaml"))]


# -- scoring ------------------------------------------------------------------
def _d(value) -> Decimal:
    return Decimal(str(value))


def _round(value: Decimal) -> float:
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def stars_for(scheme: dict, score: float) -> int:
    """The band a score falls in: min inclusive, max exclusive (100 belongs to the top)."""
    for band in scheme["bands"]:
        if band["min"] <= score < band["max"] or (score == 100 and band["max"] == 100):
            return band["stars"]
    raise ValueError(f"no band for score {score}")  # unreachable for a validated scheme


def check_entries(scheme: dict, payload: dict, field_prefix: str = "",
                  require_all: bool = True, derived: dict | None = None) -> list[dict]:
    """Every problem with submitted scores (unknown codes, out of range, missing
    scores, missing evidence, a score for an indicator derived from records) as
    ``{"field", "message"}`` entries. ``derived``: indicator code -> the
    explanation of its value from records (None: any registered provider)."""
    errors = []
    p = field_prefix
    indicators = {i["code"]: i for i in scheme["indicators"]}
    scores = payload.get("scores") or {}
    evidence = payload.get("evidence") or {}
    for code, value in scores.items():
        ind = indicators.get(code)
        if ind is None:
            errors.append({"field": f"{p}scores.{code}", "message": "unknown indicator"})
        elif not _num(value) or not 0 <= value <= ind["max_score"]:
            errors.append({"field": f"{p}scores.{code}",
                           "message": f"a number from 0 to {ind['max_score']}"})
    for code, ind in indicators.items():
        provided = code in scores
        if derived is None:
            derivable = ind["scoring"] == "derived" and ind.get("source") in DERIVATION_PROVIDERS
        else:
            derivable = code in derived
            if provided and derivable:
                errors.append({"field": f"{p}scores.{code}", "message":
                               f"derived from records ({ind['source']}: {derived[code]}); "
                               "a derived value cannot be entered"})
        if require_all and not provided and not derivable:
            errors.append({"field": f"{p}scores.{code}",
                           "message": f"missing: {ind['name']} (0-{ind['max_score']})"})
        if provided and ind["evidence"] and scores.get(code) and not evidence.get(code):
            errors.append({"field": f"{p}evidence.{code}",
                           "message": "evidence required: " + "; ".join(ind["evidence"])})
    for code in evidence:
        if code not in indicators:
            errors.append({"field": f"{p}evidence.{code}", "message": "unknown indicator"})
    for kind, block in (("bonus", scheme["bonus"]), ("deductions", scheme["deductions"]),
                        ("vetoes", scheme["vetoes"])):
        known = {i["code"] for i in block["items"]}
        for i, code in enumerate(payload.get(kind) or []):
            if code not in known:
                errors.append({"field": f"{p}{kind}[{i}]",
                               "message": f"unknown item {code!r}; known: {', '.join(sorted(known))}"})
    appraisal = payload.get("appraisal")
    if scheme["composite"]["appraisal"] > 0:
        if appraisal is None and require_all:
            errors.append({"field": f"{p}appraisal",
                           "message": "the 评议 (member and mass evaluation) score 0-100 is required"})
        elif appraisal is not None and (not _num(appraisal) or not 0 <= appraisal <= 100):
            errors.append({"field": f"{p}appraisal", "message": "a number from 0 to 100"})
    elif appraisal is not None:
        errors.append({"field": f"{p}appraisal", "message": "this scheme has no 评议 part"})
    return errors


def score(scheme: dict, payload: dict, derive: Callable[[dict], float | None] | None = None
          ) -> dict:
    """The fortress index (堡垒指数) and band stars with the full breakdown.

    composite (adjustments inside_base, the default)
              = (base + min(Σ bonus, cap) − min(Σ deductions, cap)) × base%
                + appraisal × appraisal%;
    composite (after_weighting)
              = base × base% + appraisal × appraisal% + bonus − deductions;
    kept within 0-100;
    base = Σ over dimensions of weight × Σ over its indicators of
           indicator weight% × score / max_score.
    A veto caps the stars at ``vetoes.max_stars`` whatever the score.
    """
    scores = payload.get("scores") or {}
    dims = []
    base = Decimal(0)
    for dim in scheme["dimensions"]:
        dim_total = Decimal(0)
        items = []
        for ind in (i for i in scheme["indicators"] if i["dimension"] == dim["code"]):
            source = "entered"
            value = scores.get(ind["code"])
            behind = None
            if value is None and ind["scoring"] == "derived" and derive is not None:
                fraction = derive(ind)
                if isinstance(fraction, dict):
                    behind = {k: v for k, v in fraction.items() if k != "fraction"}
                    fraction = fraction["fraction"]
                if fraction is not None:
                    value = _round(_d(fraction) * _d(ind["max_score"]))
                    source = f"derived from {ind['source']}"
            if value is None:
                value, source = 0, "missing (counted as 0)"
            frac = _d(value) / _d(ind["max_score"])
            part = _d(dim["weight"]) * _d(ind["weight"]) / HUNDRED * frac
            dim_total += part
            items.append({"code": ind["code"], "name": ind["name"], "score": value,
                          "max_score": ind["max_score"], "weight": ind["weight"],
                          "points": _round(part), "source": source})
            if behind is not None:
                items[-1]["derivation"] = behind
        base += dim_total
        dims.append({"code": dim["code"], "name": dim["name"], "weight": dim["weight"],
                     "points": _round(dim_total), "indicators": items})

    def capped(kind):
        block = scheme[kind]
        points = {i["code"]: i["points"] for i in block["items"]}
        chosen = list(dict.fromkeys(payload.get(kind) or []))
        raw = sum((_d(points[c]) for c in chosen), Decimal(0))
        return chosen, raw, min(raw, _d(block["cap"]))

    bonus_items, bonus_raw, bonus = capped("bonus")
    ded_items, ded_raw, deductions = capped("deductions")
    comp = scheme["composite"]
    appraisal = _d(payload.get("appraisal") or 0) if comp["appraisal"] else Decimal(0)
    inside = comp.get("adjustments", "inside_base") == "inside_base"
    if inside:
        composite = ((base + bonus - deductions) * _d(comp["base"]) / HUNDRED
                     + appraisal * _d(comp["appraisal"]) / HUNDRED)
        formula = (f"({_round(base)} + {_round(bonus)} − {_round(deductions)}) × "
                   f"{comp['base']}% + {float(appraisal)} × {comp['appraisal']}%")
    else:
        composite = (base * _d(comp["base"]) / HUNDRED
                     + appraisal * _d(comp["appraisal"]) / HUNDRED + bonus - deductions)
        formula = (f"{_round(base)} × {comp['base']}% + {float(appraisal)} × "
                   f"{comp['appraisal']}% + {_round(bonus)} − {_round(deductions)}")
    composite = max(Decimal(0), min(HUNDRED, composite))
    final = _round(composite)
    vetoes = list(dict.fromkeys(payload.get("vetoes") or []))
    if not scheme["bands"]:  # level 1: a score against the title's standard, no stars
        band_stars = stars = None
    else:
        band_stars = stars_for(scheme, final)
        stars = min(band_stars, scheme["vetoes"]["max_stars"]) if vetoes else band_stars
    return {
        "score": final, "band_stars": band_stars, "stars": stars,
        "base": _round(base), "dimensions": dims,
        "deductions": {"items": ded_items, "raw": _round(ded_raw), "applied": _round(deductions),
                       "cap": scheme["deductions"]["cap"]},
        "bonus": {"items": bonus_items, "raw": _round(bonus_raw), "applied": _round(bonus),
                  "cap": scheme["bonus"]["cap"]},
        "appraisal": float(appraisal) if comp["appraisal"] else None,
        "composite": dict(comp),
        "vetoes": vetoes,
        "explanation": (
            f"{formula} = {final}" + (f" → ★{band_stars}" if band_stars else "")
            + (f"; veto {', '.join(vetoes)} caps it at ★{stars}"
                                if vetoes and stars != band_stars else
                                f"; veto {', '.join(vetoes)}" if vetoes else "")),
    }


def apply_quotas(scheme: dict, candidates: list[dict], group_sizes: dict[str, int],
                 taken: dict[tuple[str, int], int] | None = None) -> dict[str, dict]:
    """Cap the stars of a group of organisations by the scheme's quotas.

    ``candidates``: ``{"org_id", "score", "stars", "group"}`` (group = the
    college id for a per-college quota; every candidate competes school-wide
    too). ``group_sizes``: organisations in each group in the cycle (the key
    ``"school"`` for all of them). ``taken``: slots at ``(group, min_stars)``
    already used by earlier approvals (they keep their stars).

    Over the cap, organisations are ranked by score; those below the cut go
    one star down. Ties at the cut follow the quota's ``ties`` rule:
    ``demote_all`` (the cap is never exceeded) or ``admit_all``.
    Returns ``org_id -> {"stars", "notes": [...]}``.
    """
    taken = dict(taken or {})
    result = {c["org_id"]: {"stars": c["stars"], "notes": []} for c in candidates}
    for quota in sorted(scheme["quotas"], key=lambda q: -q["min_stars"]):
        level = quota["min_stars"]
        groups: dict[str, list] = {}
        for c in candidates:
            key = c["group"] if quota["scope"] == "college" else "school"
            groups.setdefault(key, []).append(c)
        for key, members in groups.items():
            size = group_sizes.get(key, len(members))
            cap = int((_d(quota["max_share"]) * size / HUNDRED).to_integral_value(rounding="ROUND_FLOOR"))
            free = max(cap - taken.get((key, level), 0), 0)
            eligible = sorted((c for c in members if result[c["org_id"]]["stars"] >= level),
                              key=lambda c: (-c["score"], c["org_id"]))
            if len(eligible) <= free:
                taken[(key, level)] = taken.get((key, level), 0) + len(eligible)
                continue
            cut_score = eligible[free - 1]["score"] if free > 0 else None
            tied = [e for e in eligible if cut_score is not None and e["score"] == cut_score]
            # A tie matters only when it straddles the cut (some inside, some out).
            straddles = len(tied) > 1 and eligible[free]["score"] == cut_score
            admitted = []
            for rank, c in enumerate(eligible):
                inside = rank < free
                tied_at_cut = straddles and c["score"] == cut_score
                if tied_at_cut:
                    if quota["ties"] == "admit_all":
                        inside = True
                        note = (f"tied at {cut_score} with {len(tied)} at the ★{level} cut "
                                f"({cap} of {size} in {key}); ties admitted (admit_all)")
                    else:
                        inside = False
                        note = (f"tied at {cut_score} with {len(tied)} at the ★{level} cut "
                                f"({cap} of {size} in {key}); the cap is never exceeded, so "
                                f"all tied go to ★{level - 1} (demote_all)")
                    result[c["org_id"]]["notes"].append(note)
                if inside:
                    admitted.append(c)
                    continue
                result[c["org_id"]]["stars"] = level - 1
                if not tied_at_cut:
                    result[c["org_id"]]["notes"].append(
                        f"ranked {rank + 1} of {len(eligible)} at ★{level}+ with {c['score']}; "
                        f"quota {quota['max_share']}% of {size} in {key} = {cap} "
                        f"({free} free): ★{level - 1}")
            taken[(key, level)] = taken.get((key, level), 0) + len(admitted)
    return result
