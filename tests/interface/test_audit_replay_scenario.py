"""As of any moment, the read models (validity periods) and a replay of the
event store (``replay=True``) give the same answers (审计: 任意时点状态可重建),
over one scenario across organizations and evaluation: a cycle's result, a
downgrade for a major problem (重大问题降级), a member transferred (组织关系转接),
a direct grading (直接定级), a pioneer index (锋领指数) revised by a later record,
and a restoration once the rectification is verified (整改验收). Every answer is
also checked against what the scenario says by hand."""
import copy
import datetime as dt
import time

import pytest

from services.evaluation.application import EvaluationApplication
from services.evaluation.ratings.rating import Rating
from services.organizations.application import OrganizationsApplication
from shared.errors import NotFound
from shared.identity import Caller
from tests.unit.test_evaluation_scoring import TINY

ADMIN = Caller("zzb", "org_admin")
AUDITOR = Caller("jwb", "auditor")
YEAR = dt.date.today().year


def _moment() -> str:
    """A moment strictly between the events before and after it."""
    time.sleep(0.01)
    moment = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    return moment


def _day(month: int) -> str:
    return str(min(dt.date(YEAR, month, 1), dt.date.today() - dt.timedelta(days=1)))


class Scenario:
    def __init__(self, databases):
        self.org = OrganizationsApplication(databases["organizations"])
        self.ev = EvaluationApplication(databases["evaluation"])
        self.position = 0

    def sync(self):
        """organizations' events into evaluation's inbox, as relay and consumer do."""
        while page := self.org.read_envelopes(self.position, 500):
            for envelope in page:
                self.ev.directory.handle(envelope)
            self.position = page[-1]["position"]

    def close(self):
        self.org.close()
        self.ev.close()


@pytest.fixture
def scenario(clean_databases):
    s = Scenario(clean_databases)
    org, ev = s.org, s.ev
    committee = org.create_organization(ADMIN, {"name": "学校党委", "kind": "committee"})
    college = org.create_organization(ADMIN, {"name": "机电学院党总支", "kind": "general_branch",
                                              "parent_id": committee["id"]})["id"]
    b1, b2 = (org.create_organization(ADMIN, {"name": name, "kind": "teacher_branch",
                                              "parent_id": college})["id"]
              for name in ("教工一支部", "教工二支部"))
    names = {"张三": b1, "李四": b1, "王五": b1, "赵六": b2}
    m = {name: org.register_member(ADMIN, {"name": name, "branch_id": branch,
                                           "category": "teacher", "status": "full",
                                           "joined_on": "2015-07-01"})["id"]
         for name, branch in names.items()}
    # 三会一课: four general meetings of 一支部, 王五 absent from each; 张三 in a 攻坚团队
    sec = Caller("sec-1", "branch_secretary", b1)
    for month in (3, 4, 5, 6):
        org.records.record_meeting(sec, {
            "branch_id": b1, "kind": "general_meeting", "held_on": _day(month),
            "topic": f"{month}月支部党员大会", "attendees": [m["张三"], m["李四"]],
            "absentees": [{"member_id": m["王五"], "kind": "absent"}]})
    org.records.record_member_record(sec, {"member_id": m["张三"], "kind": "team",
                                           "on": _day(2), "details": {"team": "攻坚团队"}})
    s.sync()
    t = {"t0": _moment()}  # nothing rated, no index published

    ev.publish_scheme(ADMIN, {"definition": copy.deepcopy(TINY)})
    later = {k: (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=d)).isoformat()
             for k, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
    cycle = ev.open_cycle(ADMIN, {"name": "2026考评", "level": 3, "period": "2026",
                                  "deadlines": later, "scheme_id": "tiny",
                                  "publicity_days": 1 / 86400})["id"]
    full = {"scores": {"a1": 10, "a2": 20, "b1": 5}, "evidence": {"a2": ["会议记录"]}}
    for branch, appraisal in ((b1, 50), (b2, 0)):  # 70 + 15 = 85 → ★4; 70 + 0 → ★3
        payload = {"cycle_id": cycle, "org_id": branch, **full, "appraisal": appraisal}
        ev.submit_self_assessment(Caller(f"s{branch}", "branch_secretary", branch), payload)
        ev.submit_review(ADMIN, payload)
    ev.approve(ADMIN, {"cycle_id": cycle, "org_ids": [b1, b2]})
    time.sleep(1.1)  # the one-second publicity window (公示) ends
    ev.close_publicity(ADMIN, {"cycle_id": cycle, "org_ids": [b1, b2]})
    ev.members.close_year(ADMIN, {"year": YEAR})
    t["t1"] = _moment()  # ★4 and ★3; indices published (张三 69, 李四 66, 王五 52, 赵六 60)

    ev.record_major_problem(ADMIN, {"org_id": b1, "problem_id": "2026-01",
                                    "description": "违规发放津贴", "reason": "纪委通报",
                                    "evidence": ["纪委通报〔2026〕3号"]})
    org.transfer_member(ADMIN, {"member_id": m["李四"], "to_branch_id": b2,
                                "effective_on": str(dt.date.today()), "reason": "工作调动"})
    s.sync()
    t["t2"] = _moment()  # 一支部 downgraded to ★2; 李四 in 二支部

    ev.grade_directly(ADMIN, {"cycle_id": cycle, "org_id": b2, "stars": 5,
                              "reason": "获评省级样板支部", "evidence": ["省委教育工委文件"]})
    org.records.record_member_record(ADMIN, {
        "member_id": m["张三"], "kind": "violation", "on": _day(7),
        "details": {"line": "red_line", "description": "严重违纪", "finding": "纪委办〔2026〕7号"},
        "evidence": ["纪委办〔2026〕7号"], "reason": "纪委办通报"})
    s.sync()
    t["t3"] = _moment()  # 二支部 directly graded ★5; 张三's index zeroed (revised)

    ev.plan_rectification(ADMIN, {"org_id": b1, "problem_id": "2026-01",
                                  "plan": "退回津贴, 专题组织生活会", "due": str(dt.date.today())})
    ev.complete_rectification(ADMIN, {"org_id": b1, "problem_id": "2026-01",
                                      "evidence": ["整改报告"]})
    ev.verify_rectification(ADMIN, {"org_id": b1, "problem_id": "2026-01",
                                    "reason": "整改到位", "evidence": ["验收记录"]})
    t["t4"] = _moment()  # 一支部 restored to ★4
    s.b1, s.b2, s.college, s.m, s.t = b1, b2, college, m, t
    yield s
    s.close()


# What the scenario says, by hand: stars, rosters and indices at each moment.
STARS = {"t0": (None, None), "t1": (4, 3), "t2": (2, 3), "t3": (2, 5), "t4": (4, 5)}
ROSTERS = {"t0": (["张三", "李四", "王五"], ["赵六"]), "t1": (["张三", "李四", "王五"], ["赵六"]),
           "t2": (["张三", "王五"], ["李四", "赵六"]), "t3": (["张三", "王五"], ["李四", "赵六"]),
           "t4": (["张三", "王五"], ["李四", "赵六"])}
# The breakdown each rating showed (composite score, stars, 民主测评 appraisal, and
# the dimensions' points: 甲 a1 10/10 + a2 20/20 → 60 of 60, 乙 b1 5/5 → 40 of 40):
# a downgrade and a restoration keep the result's breakdown, a direct grading has
# its own (★5 over the band's ★3).
RESULT_B1 = {"cause": "cycle", "score": 85.0, "stars": 4, "band_stars": 4, "appraisal": 50.0,
             "dimensions": [("A", 60.0), ("B", 40.0)]}
RESULT_B2 = {**RESULT_B1, "score": 70.0, "stars": 3, "band_stars": 3, "appraisal": 0.0}
GRADED_B2 = {**RESULT_B2, "cause": "direct_grading", "stars": 5}
BREAKDOWNS = {"t0": (None, None), "t1": (RESULT_B1, RESULT_B2),
              "t2": ({**RESULT_B1, "cause": "major_problem"}, RESULT_B2),
              "t3": ({**RESULT_B1, "cause": "major_problem"}, GRADED_B2),
              "t4": ({**RESULT_B1, "cause": "rectification_verified"}, GRADED_B2)}
# The problems in force: 二支部's ★3 owes a rectification (低星整改) from t1 on (a
# direct grading does not lift it); 一支部's 重大问题 from t2 until verified before t4.
LOW = ("low_stars", "open", 3)
MAJOR = ("major_problem", "open", 2)
PROBLEMS = {"t0": ([], []), "t1": ([], [LOW]), "t2": ([MAJOR], [LOW]),
            "t3": ([MAJOR], [LOW]), "t4": ([], [LOW])}


def _shown(rating: dict) -> dict | None:
    """What the hand-written expectations compare of a rating's breakdown."""
    b = rating["breakdown"]
    if b is None:
        return None
    return {"cause": rating["cause"], "score": b["score"], "stars": b["stars"],
            "band_stars": b["band_stars"], "appraisal": b["appraisal"],
            "dimensions": [(d["code"], d["points"]) for d in b["dimensions"]]}


INDICES = {"t0": None, "t1": {"张三": 69.0, "李四": 66.0, "王五": 52.0, "赵六": 60.0},
           "t2": {"张三": 69.0, "李四": 66.0, "王五": 52.0, "赵六": 60.0},
           "t3": {"张三": 0.0, "李四": 66.0, "王五": 52.0, "赵六": 60.0},
           "t4": {"张三": 0.0, "李四": 66.0, "王五": 52.0, "赵六": 60.0}}


def test_read_models_and_replay_agree_at_every_moment(scenario):
    s, ev, org = scenario, scenario.ev, scenario.org
    for label, moment in s.t.items():
        # ratings: the read model, get_rating's replay and a replay of the rating's events
        for branch, stars in zip((s.b1, s.b2), STARS[label]):
            read = ev.get_rating(AUDITOR, branch, as_of=moment)
            replayed = ev.get_rating(AUDITOR, branch, as_of=moment, replay=True)
            state = ev.state_as_of(Rating.id_for(branch), dt.datetime.fromisoformat(moment),
                                   "rating")
            assert read["stars"] == stars, (label, branch)
            assert (replayed.get("replayed") or {}).get("stars") == stars
            # the breakdown and problems then: by hand, and rebuilt from the store
            expected = BREAKDOWNS[label][(s.b1, s.b2).index(branch)]
            assert _shown(read) == expected, (label, branch)
            assert [(p["kind"], p["status"], p["downgrade_to"]) for p in read["problems"]] \
                == PROBLEMS[label][(s.b1, s.b2).index(branch)], (label, branch)
            if stars is not None:
                again = replayed["replayed"]
                assert again["breakdown"] == read["breakdown"] and \
                    again["problems"] == read["problems"] and again["matches"], (label, branch)
                assert {k: v for k, v in replayed.items() if k != "replayed"} == read
            assert (state.stars if state is not None else None) == stars, (label, branch)
        # the star distribution then, against the stars replayed above
        dist = ev.star_distribution(AUDITOR, as_of=moment)["branches"]["school"]
        by_stars = dict(zip((s.b1, s.b2), STARS[label]))
        assert dist["four_or_above"]["count"] == sum(
            1 for v in by_stars.values() if v is not None and v >= 4), label
        assert sorted(o["org_id"] for o in dist["three_or_below"]["organizations"]) == sorted(
            b for b, v in by_stars.items() if v is not None and v <= 3), label
        # each branch's members: the roster read model, and each member replayed
        for branch, names in zip((s.b1, s.b2), ROSTERS[label]):
            listed = org.list_members(AUDITOR, {"org_id": branch, "as_of": moment})
            assert sorted(r["name"] for r in listed["members"]) == names, (label, branch)
        replayed_rosters = {s.b1: [], s.b2: []}
        for name, member_id in s.m.items():
            then = org.get_member(AUDITOR, member_id, moment, replay=True)
            assert then["answered_by"] == "replay"
            assert then == {**org.get_member(AUDITOR, member_id, moment), "answered_by": "replay"}
            replayed_rosters[then["branch_id"]].append(name)
        assert tuple(sorted(v) for v in replayed_rosters.values()) == ROSTERS[label], label
        # the pioneer index (锋领指数) as published and revised by then
        for name, member_id in s.m.items():
            query = {"member_id": member_id, "year": YEAR, "as_of": moment}
            if INDICES[label] is None:
                for replay in (False, True):
                    with pytest.raises(NotFound), ev.session():
                        ev.members.get_member_index(AUDITOR, {**query, "replay": replay})
                continue
            # in a call's session (as an RPC reads it): the read and its audit record
            # in one round trip; the replay records it apart
            with ev.session():
                read = ev.members.get_member_index(AUDITOR, query)
            replayed = ev.members.get_member_index(AUDITOR, {**query, "replay": True})
            assert (read["answered_by"], replayed["answered_by"]) == ("read_model", "replay")
            assert {**read, "answered_by": "replay"} == replayed, (label, name)
            assert read["score"] == INDICES[label][name], (label, name)
    # the live rating shows what the last as-of answer shows
    for branch in (s.b1, s.b2):
        live, then = ev.get_rating(AUDITOR, branch), ev.get_rating(AUDITOR, branch,
                                                                    as_of=s.t["t4"])
        assert live["breakdown"] == then["breakdown"] and live["stars"] == then["stars"]
    # the as-of columns are rebuilt from zero alike (breakdowns, problem stages)
    rebuilt = ev.rebuild_read_models(ADMIN, {"dry_run": True})
    assert rebuilt["identical"], {t: r for t, r in rebuilt["tables"].items()
                                  if r["only_live"] or r["only_rebuilt"]}
    zeroed = ev.members.get_member_index(AUDITOR, {"member_id": s.m["张三"], "year": YEAR,
                                                   "as_of": s.t["t3"]})
    assert zeroed["zeroed"] and zeroed["revisions"] == 1
    assert zeroed["last_cause"]["reason"] == "纪委办通报"
    # the index's history: Chinese labels, filtered by kind and time, as .xlsx
    history = ev.members.index_history(AUDITOR, {"member_id": s.m["张三"], "year": YEAR})
    assert [(h["label"], h["reason"]) for h in history] == [
        ("锋领指数发布 (年度关账)", f"{YEAR} 年度锋领指数"),
        ("锋领指数修订 (记录变更)", "记录变更 member_file_recorded")]
    assert ev.members.index_history(AUDITOR, {"member_id": s.m["张三"], "year": YEAR,
                                              "kinds": ["pioneer_index_revised"],
                                              "until": s.t["t2"]}) == []
    book = ev.members.index_history(AUDITOR, {"member_id": s.m["张三"], "year": YEAR,
                                              "since": s.t["t2"], "format": "xlsx"})
    from tests.interface.test_audit_history import _xlsx_rows

    sheet = _xlsx_rows(book["content"])
    assert [(r[1], r[2]) for r in sheet[1:]] == [("锋领指数修订 (记录变更)",
                                                  "pioneer_index_revised")]
    # each as-of read of an index was recorded (who looked at whose past index)
    reads = [r for r in ev.list_audit_reads(ADMIN, {"subject_id": s.m["张三"]})
             if r["query"] != "get_history"]
    assert {(r["query"], r["reader"]["sub"]) for r in reads} == {("get_member_index", "jwb")}
    assert len(reads) == 4 * 2 + 1  # t1…t4, read model and replay; the NotFound at t0 is none
    assert {r["filters"]["replay"] for r in reads} == {False, True}
    # recorded either way, each read is an event of the store linked into its chain
    chain = ev.verify_chain(Caller("ops", "ops"), {"independent": True})
    assert chain["ok"] and chain["checked"] == ev.recorder.max_notification_id(), chain

    # the index as of a moment is read as the index is (one scenario, built once)
    query = {"member_id": s.m["李四"], "year": YEAR, "as_of": s.t["t4"]}
    # 李四 moved to 二支部: its secretary reads the index (published in 一支部), another
    # member does not; only 组织部 and 纪委办 ask for a replay
    assert ev.members.get_member_index(Caller("x", "branch_secretary", s.b2), query)["score"] \
        == 66.0
    for caller in (Caller(s.m["赵六"], "member"), Caller("ops", "ops")):
        with pytest.raises(Exception) as e:
            ev.members.get_member_index(caller, query)
        assert type(e.value).__name__ == "Forbidden"
    with pytest.raises(Exception) as e:
        ev.members.get_member_index(Caller(s.m["李四"], "member"), {**query, "replay": True})
    assert type(e.value).__name__ == "Forbidden"
    with pytest.raises(Exception) as e:
        ev.members.get_member_index(ADMIN, {**query, "as_of": "last spring"})
    assert type(e.value).__name__ == "ValidationError" and e.value.fields == ["as_of"]
