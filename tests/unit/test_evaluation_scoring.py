"""Schemes (评价指标体系) and pure scoring, with the arithmetic written out."""
import copy
import json

import pytest

from services.evaluation.schemes import (apply_quotas, check_entries, default_schemes,
                                         parse_scheme_text, score, stars_for, validate_scheme)
from shared.errors import ValidationError

TINY = {
    "scheme_id": "tiny", "title": "小方案 tiny", "level": 3,
    "composite": {"base": 70, "appraisal": 30},
    "dimensions": [{"code": "A", "name": "甲", "weight": 60},
                   {"code": "B", "name": "乙", "weight": 40}],
    "indicators": [
        {"code": "a1", "dimension": "A", "name": "a1", "max_score": 10, "weight": 50},
        {"code": "a2", "dimension": "A", "name": "a2", "max_score": 20, "weight": 50,
         "evidence": ["会议记录"]},
        {"code": "b1", "dimension": "B", "name": "b1", "max_score": 5, "weight": 100},
    ],
    "bonus": {"cap": 3, "items": [{"code": "x", "name": "加分x", "points": 2},
                                  {"code": "y", "name": "加分y", "points": 2}]},
    "deductions": {"cap": 5, "items": [{"code": "d1", "name": "减分1", "points": 3},
                                       {"code": "d2", "name": "减分2", "points": 4}]},
    "vetoes": {"max_stars": 2, "items": [{"code": "v", "name": "一票否决"}]},
    "bands": [{"stars": 5, "min": 90, "max": 100}, {"stars": 4, "min": 80, "max": 90},
              {"stars": 3, "min": 70, "max": 80}, {"stars": 2, "min": 60, "max": 70},
              {"stars": 1, "min": 0, "max": 60}],
    "quotas": [{"min_stars": 5, "max_share": 30, "scope": "college", "ties": "demote_all"}],
}


@pytest.fixture
def tiny():
    return validate_scheme(copy.deepcopy(TINY))


def test_shipped_defaults_cover_the_three_standards():
    by_level = {s["level"]: s for s in default_schemes()}
    assert set(by_level) == {1, 2, 3}
    assert [d["name"][:4] for d in by_level[3]["dimensions"]] == [
        "教育党员", "管理党员", "监督党员", "组织师生", "宣传师生", "凝聚师生", "服务师生"]
    assert len(by_level[2]["dimensions"]) == 5 and len(by_level[1]["dimensions"]) == 6
    for level in (2, 3):
        assert [(b["stars"], b["min"]) for b in by_level[level]["bands"]] == [
            (5, 90), (4, 80), (3, 70), (2, 60), (1, 0)]
    # star ratings are for grassroots organisations: the committee's scheme has no stars
    assert by_level[1]["bands"] == [] and by_level[1]["quotas"] == []
    # the college's 30% appraisal part is a 民主测评 of the mass/member kind, not 述职评议
    assert by_level[2]["appraisal"]["name"].startswith("民主测评")


def test_a_level_one_scheme_has_no_stars(tiny):
    bad = dict(copy.deepcopy(TINY), level=1)
    bad.pop("quotas")
    with pytest.raises(ValidationError) as e:
        validate_scheme(bad)
    assert set(e.value.fields) == {"bands", "vetoes"}
    fine = {k: v for k, v in bad.items() if k not in ("bands", "vetoes")}
    r = score(validate_scheme(fine), {"scores": {"a1": 10, "a2": 20, "b1": 5}, "appraisal": 90})
    assert (r["score"], r["stars"], r["band_stars"]) == (97.0, None, None)
    assert "★" not in r["explanation"]


@pytest.mark.parametrize("adjustments, expected", [
    # (80 + 4 − 2) × 70% + 90 × 30% = 57.4 + 27 = 84.4
    ("inside_base", 84.4),
    # 80 × 70% + 90 × 30% + 4 − 2 = 56 + 27 + 2 = 85
    ("after_weighting", 85.0)])
def test_where_bonus_and_deductions_apply_is_scheme_data(adjustments, expected):
    data = copy.deepcopy(TINY)
    data["composite"]["adjustments"] = adjustments
    data["bonus"]["cap"] = 5
    data["deductions"]["items"].append({"code": "d3", "name": "减分3", "points": 2})
    scheme = validate_scheme(data)
    # A = 60 × (10/10 × 50% + 20/20 × 50%) = 60; B = 40 × 2.5/5 = 20 → base 80
    r = score(scheme, {"scores": {"a1": 10, "a2": 20, "b1": 2.5}, "appraisal": 90,
                       "bonus": ["x", "y"], "deductions": ["d3"]})
    assert r["base"] == 80.0 and r["score"] == expected
    data["composite"]["adjustments"] = "somewhere"
    with pytest.raises(ValidationError) as e:
        validate_scheme(data)
    assert e.value.fields == ["composite.adjustments"]


def test_bonus_and_deduction_caps_hand_computed(tiny):
    payload = {"scores": {"a1": 8, "a2": 15, "b1": 4}, "evidence": {"a2": ["minutes-1"]},
               "bonus": ["x", "y"], "deductions": ["d1", "d2"], "appraisal": 90}
    assert check_entries(tiny, payload) == []
    r = score(tiny, payload)
    # A = 60 × (50% × 8/10 + 50% × 15/20) = 60 × (0.4 + 0.375) = 46.5
    # B = 40 × (100% × 4/5) = 32            → base = 78.5
    assert [d["points"] for d in r["dimensions"]] == [46.5, 32.0]
    assert r["base"] == 78.5
    # deductions 3 + 4 = 7, capped at 5; bonus 2 + 2 = 4, capped at 3
    assert (r["deductions"]["raw"], r["deductions"]["applied"]) == (7.0, 5.0)
    assert (r["bonus"]["raw"], r["bonus"]["applied"]) == (4.0, 3.0)
    # inside the base part (default): (78.5 + 3 − 5) × 70% + 90 × 30% = 53.55 + 27
    # = 80.55 → ★4 (80 ≤ s < 90)
    assert r["score"] == 80.55
    assert r["stars"] == r["band_stars"] == 4


def test_veto_caps_stars_whatever_the_score(tiny):
    payload = {"scores": {"a1": 10, "a2": 20, "b1": 5}, "evidence": {"a2": ["m"]},
               "appraisal": 100, "vetoes": ["v"]}
    r = score(tiny, payload)
    # base = 60 + 40 = 100; 100 × 70% + 100 × 30% = 100 → band ★5, veto → ★2
    assert (r["score"], r["band_stars"], r["stars"]) == (100.0, 5, 2)
    assert "veto v caps it at ★2" in r["explanation"]


def test_composite_is_kept_within_0_and_100(tiny):
    r = score(tiny, {"scores": {"a1": 10, "a2": 20, "b1": 5}, "appraisal": 100,
                     "bonus": ["x"]})
    assert r["score"] == 100.0  # 100 + 2 bonus would be 102
    r = score(tiny, {"scores": {"a1": 0, "a2": 0, "b1": 0}, "appraisal": 0,
                     "deductions": ["d1"]})
    assert r["score"] == 0.0  # (0 − 3) × 70% = −2.1, kept at 0
    assert r["stars"] == 1


def test_band_edges(tiny):
    assert [stars_for(tiny, s) for s in (100, 90, 89.99, 80, 70, 69.99, 60, 59.99, 0)] == \
        [5, 5, 4, 4, 3, 2, 2, 1, 1]


def test_quota_cap_with_ties_demote_all(tiny):
    # One college of 10 branches: ★5 at most 30% × 10 = 3.
    # Scores at ★5: 98, 95, 93, 93, 91 → the 3rd slot is tied between two at 93.
    cands = [{"org_id": o, "score": s, "stars": 5, "group": "c1"}
             for o, s in (("p", 98), ("q", 95), ("r", 93), ("s", 93), ("t", 91))]
    out = apply_quotas(tiny, cands, {"c1": 10, "school": 10})
    # p, q keep ★5; r and s tie at the cut: demote_all never exceeds the cap → both ★4;
    # t ranked 5th → ★4.  Only 2 of the 3 slots are used.
    assert {o: v["stars"] for o, v in out.items()} == {"p": 5, "q": 5, "r": 4, "s": 4, "t": 4}
    assert "tied at 93" in out["r"]["notes"][0] and "demote_all" in out["r"]["notes"][0]
    assert "ranked 5 of 5" in out["t"]["notes"][0]


def test_quota_ties_admit_all_and_slots_taken_earlier(tiny):
    tiny["quotas"][0]["ties"] = "admit_all"
    cands = [{"org_id": o, "score": s, "stars": 5, "group": "c1"}
             for o, s in (("p", 98), ("r", 93), ("s", 93), ("t", 91))]
    # 1 of the 3 slots was taken by an earlier approval → 2 free; r, s tie for the 2nd.
    out = apply_quotas(tiny, cands, {"c1": 10}, taken={("c1", 5): 1})
    assert {o: v["stars"] for o, v in out.items()} == {"p": 5, "r": 5, "s": 5, "t": 4}


def test_quota_is_per_college(tiny):
    cands = ([{"org_id": f"a{i}", "score": 95 - i, "stars": 5, "group": "A"} for i in range(2)]
             + [{"org_id": "b0", "score": 92, "stars": 5, "group": "B"}])
    # college A: 4 branches → cap 1; college B: 3 branches → cap 0 (30% × 3 = 0.9 → 0)
    out = apply_quotas(tiny, cands, {"A": 4, "B": 3})
    assert {o: v["stars"] for o, v in out.items()} == {"a0": 5, "a1": 4, "b0": 4}


def test_every_error_in_a_scheme_at_once():
    bad = copy.deepcopy(TINY)
    bad["dimensions"][1]["weight"] = 30            # 60 + 30 ≠ 100
    bad["indicators"][2]["dimension"] = "C"        # unknown dimension
    bad["indicators"][1]["weight"] = 40            # A's indicators: 50 + 40 ≠ 100
    bad["bands"][1]["min"] = 85                    # overlap with nothing, gap 80-85 …
    bad["bands"][2]["max"] = 86                    # … and bands[2] 70-86 overlaps bands[1] 85-90
    with pytest.raises(ValidationError) as e:
        validate_scheme(bad)
    messages = str(e.value)
    assert "dimension weights must add up to 100, not 90" in messages
    assert "indicators[2].dimension" in e.value.fields and "unknown dimension 'C'" in messages
    assert "dimension 'A' must add up to 100, not 90" in messages
    assert "overlap" in messages
    assert "dimension 'B' has no indicators" in messages
    assert len(e.value.errors) >= 5


def test_scheme_files_parse_from_yaml_and_json():
    assert parse_scheme_text(json.dumps(TINY), "json")["scheme_id"] == "tiny"
    with pytest.raises(ValidationError) as e:
        parse_scheme_text("a: [unclosed", "yaml")
    assert e.value.fields == ["definition"]


def test_submitted_scores_report_every_problem(tiny):
    errors = check_entries(tiny, {"scores": {"a1": 11, "a2": 5, "zz": 1}, "bonus": ["nope"]})
    fields = {e["field"] for e in errors}
    assert fields == {"scores.a1", "scores.zz", "scores.b1", "evidence.a2", "bonus[0]",
                      "appraisal"}


def test_docs_show_the_shipped_defaults_as_they_are():
    from pathlib import Path

    from services.evaluation.schemes import SCHEMES_DIR
    doc = (Path(__file__).parents[2] / "docs" / "schemes.md").read_text(encoding="utf-8")
    for path in [*SCHEMES_DIR.glob("*.yaml"), *(SCHEMES_DIR.parent / "members" / "schemes").glob(
            "*.yaml")]:
        assert path.read_text(encoding="utf-8").rstrip() in doc, path.name
