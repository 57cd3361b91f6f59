"""Evaluation RPC: schemes as files, versioning, permissions, concurrency,
ratings (downgrade, restoration, direct grading, as-of) and the distribution."""
import datetime as dt
import json

import eventlet
import pytest
import yaml
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from services.evaluation.schemes import SCHEMES_DIR
from shared.errors import Forbidden, LianchuangError, ValidationError
from tests.conftest import wait_for
from tests.e2e.test_evaluation_workflow_e2e import full_entries, iso, sleep_until, tree  # noqa: F401


def open_cycle(admin, **extra):
    return admin.open_cycle(name="2026考评", level=3, period="2026",
                            deadlines={"self_assessment": iso(600), "review": iso(1200),
                                       "approval": iso(1800)}, **extra)


def test_two_reviewers_at_once_one_wins_the_other_gets_conflict(tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    sec = rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation
    scheme = admin.get_scheme("model_branch")["definition"]
    cid = open_cycle(admin)["id"]
    submitted = sec.submit_self_assessment(cycle_id=cid, org_id=tree["b1"],
                                           **full_entries(scheme, 0.8, 80))
    version = submitted["version"]  # both reviewers read this version
    reviewers = [rpc_as("college_secretary", sub=tree["college_sec"], org=tree["college"]).evaluation,
                 rpc_as("org_admin", sub="zhao").evaluation]

    def review(proxy, fraction):
        try:
            return proxy.submit_review(cycle_id=cid, org_id=tree["b1"], expected_version=version,
                                       **full_entries(scheme, fraction, 85))
        except LianchuangError as exc:
            return exc

    threads = [eventlet.spawn(review, p, f) for p, f in zip(reviewers, (0.9, 0.7))]
    outcomes = [t.wait() for t in threads]
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "dict"]
    winner = next(o for o in outcomes if isinstance(o, dict))
    state = admin.get_assessment(cid, tree["b1"])
    assert state["stage"] == "approval" and state["version"] == version + 1
    assert state["review"]["result"]["score"] == winner["review"]["result"]["score"]


def test_scheme_file_reports_every_error_and_versions_never_touch_an_open_cycle(
        tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    text = (SCHEMES_DIR / "level3_model_branch.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["dimensions"][0]["weight"] = 25                 # weights no longer add up to 100
    data["indicators"][0]["dimension"] = "no_such"       # unknown dimension
    data["bands"][1]["max"] = 95                         # ★4 80-95 overlaps ★5 90-100
    with pytest.raises(ValidationError) as e:
        admin.publish_scheme(text=yaml.safe_dump(data, allow_unicode=True), format="yaml")
    fields = [err["field"] for err in e.value.errors]
    assert "dimensions" in fields and "indicators[0].dimension" in fields and "bands" in fields
    assert any("overlap" in err["message"] for err in e.value.errors)
    # only 组织部 loads schemes
    with pytest.raises(Forbidden):
        rpc_as("auditor").evaluation.publish_scheme(text=text)

    cycle = open_cycle(admin)
    assert cycle["scheme_version"] == 1
    revised = yaml.safe_load(text)
    revised["bands"] = [{"stars": 5, "min": 95, "max": 100}, {"stars": 4, "min": 85, "max": 95},
                        {"stars": 3, "min": 70, "max": 85}, {"stars": 2, "min": 60, "max": 70},
                        {"stars": 1, "min": 0, "max": 60}]
    out = admin.publish_scheme(text=json.dumps(revised, ensure_ascii=False), format="json",
                               reason="2027修订")
    assert out["version"] == 2 and out["definition"]["bands"][0]["min"] == 95
    assert admin.get_cycle(cycle["id"])["scheme_version"] == 1  # the open cycle keeps v1
    assert admin.get_scheme("model_branch", 1)["definition"]["bands"][0]["min"] == 90
    # a cycle opened now uses v2; every result names its version
    assert open_cycle(admin)["scheme_version"] == 2


def test_permissions(tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    cid = open_cycle(admin)["id"]
    other_college = rpc_as("college_secretary", sub="x", org="00000000-0000-0000-0000-000000000001")
    member = rpc_as("member", sub=tree["member"]).evaluation
    auditor = rpc_as("auditor").evaluation
    with pytest.raises(Forbidden):
        member.open_cycle(name="x", level=3, period="2026", deadlines={})
    with pytest.raises(Forbidden):
        auditor.approve(cycle_id=cid, org_ids=[tree["b1"]])
    with pytest.raises(Forbidden):
        rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation.grade_directly(
            cycle_id=cid, org_id=tree["b1"], stars=5, reason="r", evidence=["e"])
    with pytest.raises(Forbidden):
        other_college.evaluation.return_assessment(cycle_id=cid, org_id=tree["b1"], comments="c")
    with pytest.raises(Forbidden):
        other_college.evaluation.star_distribution(college_id=tree["college"])
    with pytest.raises(Forbidden):
        member.record_major_problem(org_id=tree["b1"], description="d", reason="r",
                                    evidence=["e"])
    with pytest.raises(Forbidden):  # a member reads an assessment only once it is public
        member.get_assessment(cid, tree["b1"])
    assert len(auditor.progress_board(cid)["organizations"]) == 2
    with pytest.raises(ValidationError) as e:  # bad input names every field
        admin.open_cycle(name="x", level=7, period="2026", deadlines="soon")
    assert set(e.value.fields) == {"level", "deadlines"}


def test_downgrade_restoration_direct_grading_and_distribution(tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    auditor = rpc_as("auditor").evaluation
    sec1 = rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation
    scheme = admin.get_scheme("model_branch")["definition"]
    cid = open_cycle(admin, publicity_days=1 / 86400)["id"]
    for b, fraction in (("b1", 0.9), ("b2", 0.7)):
        rpc_as("branch_secretary", sub=tree["sec" + b[1]], org=tree[b]).evaluation.submit_self_assessment(
            cycle_id=cid, org_id=tree[b], **full_entries(scheme, fraction, 80))
        admin.submit_review(cycle_id=cid, org_id=tree[b], **full_entries(scheme, fraction, 80))
    # b1: (90 × 70%) + 80 × 30% = 63 + 24 = 87 → ★4; b2: 49 + 24 = 73 → ★3
    with pytest.raises(ValidationError) as e:
        admin.grade_directly(cycle_id=cid, org_id=tree["b2"], stars=5, reason="省级样板支部",
                             evidence=[])
    assert e.value.fields == ["evidence"]
    approved = admin.approve(cycle_id=cid, org_ids=[tree["b1"], tree["b2"]])["approved"]
    assert [(a["score"], a["stars"]) for a in approved] == [(87.0, 4), (73.0, 3)]
    sleep_until(approved[-1]["publicity_ends_at"])
    admin.close_publicity(cycle_id=cid, org_ids=[tree["b1"], tree["b2"]])
    dist = admin.star_distribution()["branches"]["school"]
    assert (dist["four_or_above"]["count"], dist["four_or_above"]["share"]) == (1, 0.5)
    assert [o["org_id"] for o in dist["three_or_below"]["organizations"]] == [tree["b2"]]

    # 直接定级 after the result is final: ★3 → ★5 at once, with reason and evidence
    admin.grade_directly(cycle_id=cid, org_id=tree["b2"], stars=5, reason="获评省级样板支部",
                         evidence=["省委教育工委文件"])
    assert (admin.get_rating(tree["b2"])["stars"], admin.get_rating(tree["b2"])["cause"]) == \
        (5, "direct_grading")

    # 重大问题 reported by 纪委办, recorded by 组织部 (the auditor changes nothing):
    # ★4 → ★2 (the scheme's downgrade level) at once
    with pytest.raises(Forbidden):
        auditor.record_major_problem(org_id=tree["b1"], problem_id="2026-01",
                                     description="违规发放津贴", reason="纪委通报",
                                     evidence=["纪委通报〔2026〕3号"])
    before = dt.datetime.now(dt.timezone.utc).isoformat()
    out = admin.record_major_problem(org_id=tree["b1"], problem_id="2026-01",
                                     description="违规发放津贴", reason="纪委通报",
                                     evidence=["纪委通报〔2026〕3号"])
    assert (out["stars"], out["underlying_stars"], out["problems"][0]["status"]) == (2, 4, "open")
    with pytest.raises(Forbidden):  # verification belongs to 组织部
        auditor.verify_rectification(org_id=tree["b1"], problem_id="2026-01", reason="ok")
    sec1.plan_rectification(org_id=tree["b1"], problem_id="2026-01", plan="退回津贴, 专题组织生活会",
                            due="2026-12-31")
    sec1.complete_rectification(org_id=tree["b1"], problem_id="2026-01", evidence=["整改报告"])
    restored = admin.verify_rectification(org_id=tree["b1"], problem_id="2026-01",
                                          reason="整改到位", evidence=["验收记录"])
    assert restored["stars"] == 4
    history = admin.rating_history(tree["b1"])
    assert [(h["stars_before"], h["stars_after"], h["cause"]) for h in history] == [
        (None, 4, "cycle"), (4, 2, "major_problem"), (2, 4, "rectification_verified")]
    assert history[1]["evidence"] == ["纪委通报〔2026〕3号"] and history[1]["actor"]["role"] == "org_admin"
    # as of just before the problem: ★4; during it: ★2 — rebuilt from the store as well
    assert admin.get_rating(tree["b1"], as_of=before)["stars"] == 4
    during = auditor.get_rating(tree["b1"], as_of=history[1]["valid_from"], replay=True)
    assert during["stars"] == 2 and during["replayed"]["matches"] is True
    # the star distribution then: b1 downgraded to ★2, b2 directly graded ★5
    then = auditor.star_distribution(as_of=history[1]["valid_from"])
    assert then["as_of"] and then["branches"]["school"]["four_or_above"]["count"] == 1
    assert [o["org_id"] for o in then["branches"]["school"]["three_or_below"][
        "organizations"]] == [tree["b1"]]
    # the read models rebuilt from the store say the same, row for row
    rebuilt = rpc_as("ops").evaluation.rebuild_read_models()
    assert rebuilt["replayed_events"] > 0 and rebuilt["identical"] is True, rebuilt["tables"]
    assert admin.rating_history(tree["b1"]) == history
    assert admin.get_rating(tree["b2"])["stars"] == 5
    with pytest.raises(ValidationError) as e:  # a typed error naming the field, not a crash
        admin.get_rating(tree["b1"], as_of="yesterday")
    assert e.value.fields == ["as_of"]


def test_star_distribution_as_of_counts_the_organisations_of_that_moment(
        tree, rpc_as):  # noqa: F811
    """As of a moment, the distribution is over the organisations in being then,
    each under the college it had then: one dissolved since still counts, one
    created since does not, a branch moved since counts under its old college."""
    orgs, admin = rpc_as("org_admin").organizations, rpc_as("org_admin").evaluation
    auditor = rpc_as("auditor").evaluation
    college = tree["college"]
    b3 = orgs.create_organization(name="教工三支部", kind="teacher_branch",
                                  parent_id=college)["id"]

    def downgrade(org_id):  # a 重大问题 on an unrated branch rates it (the scheme's ★ cap)
        return admin.record_major_problem(org_id=org_id, problem_id="p1", description="问题",
                                          reason="纪委通报", evidence=["通报"])["stars"]

    def branches(dist):
        return {c["college_id"]: sorted(o["org_id"] for s in c["by_stars"].values() for o in s)
                + ["unrated"] * (c["organizations"] - c["rated"])
                for c in dist["branches"]["colleges"]}

    wait_for(lambda: admin.star_distribution()["branches"]["school"]["organizations"] == 3, 15,
             message="evaluation's directory has 教工三支部")
    capped = [downgrade(b) for b in (tree["b1"], b3)]
    moment = dt.datetime.now(dt.timezone.utc).isoformat()
    committee = orgs.get_organization(college)["parent_id"]
    college2 = orgs.create_organization(name="文学院党委", kind="college_committee",
                                        parent_id=committee)["id"]
    orgs.dissolve_organization(org_id=b3, reason="撤并")
    b4 = orgs.create_organization(name="教工四支部", kind="teacher_branch",
                                  parent_id=college)["id"]
    orgs.move_organization(org_id=tree["b2"], parent_id=college2, reason="院系调整")
    wait_for(lambda: branches(admin.star_distribution()) == {
        college: sorted([tree["b1"]]) + ["unrated"], college2: ["unrated"]}, 15,
        message="evaluation's directory has the dissolution, the new branch and the move")
    downgrade(b4)
    now = auditor.star_distribution()
    assert branches(now) == {college: sorted([tree["b1"], b4]), college2: ["unrated"]}
    assert now["colleges"]["organizations"] == 2
    then = auditor.star_distribution(as_of=moment)
    # then: 一, 二 (unrated, not yet moved) and 三支部 (since dissolved) in 机电学院; no 四支部
    assert branches(then) == {college: sorted([tree["b1"], b3]) + ["unrated"]}
    assert then["branches"]["school"]["organizations"] == 3
    assert sorted(o["org_id"] for o in then["branches"]["school"]["three_or_below"][
        "organizations"]) == sorted([tree["b1"], b3]) and max(capped) <= 3
    assert then["colleges"]["organizations"] == 1  # 文学院 came later
    assert auditor.star_distribution(college_id=college, as_of=moment)["branches"]["school"][
        "organizations"] == 3
    assert auditor.star_distribution(college_id=college2, as_of=moment)["branches"]["school"][
        "organizations"] == 0
    assert auditor.star_distribution(college_id=college2)["branches"]["school"][
        "organizations"] == 1


def test_rectifications_owing_school_college_branch_now_and_as_of(tree, rpc_as):  # noqa: F811
    """Organisations owing a rectification (整改): both kinds (重大问题 and ★3 and
    below), per college and school-wide, each number with its organisations; as of
    a moment before a rectification was verified, a branch dissolved and a plan
    made, the answer of that moment."""
    orgs, admin = rpc_as("org_admin").organizations, rpc_as("org_admin").evaluation
    auditor = rpc_as("auditor").evaluation
    college, b1, b2 = tree["college"], tree["b1"], tree["b2"]
    committee = orgs.get_organization(college)["parent_id"]
    college2 = orgs.create_organization(name="文学院党委", kind="college_committee",
                                        parent_id=committee)["id"]
    b3 = orgs.create_organization(name="文学一支部", kind="teacher_branch",
                                  parent_id=college2)["id"]
    wait_for(lambda: admin.rectifications_owing()["branches"]["school"]["organizations"] == 3,
             15, message="evaluation's directory has 文学院 and 文学一支部")
    # a cycle's result: 一支部 ★4, 二支部 ★3 (a rectification owed: low_stars)
    scheme = admin.get_scheme("model_branch")["definition"]
    cid = open_cycle(admin, publicity_days=1 / 86400)["id"]
    for b, fraction in (("b1", 0.9), ("b2", 0.7)):
        rpc_as("branch_secretary", sub=tree["sec" + b[1]], org=tree[b]).evaluation.\
            submit_self_assessment(cycle_id=cid, org_id=tree[b],
                                   **full_entries(scheme, fraction, 80))
        admin.submit_review(cycle_id=cid, org_id=tree[b], **full_entries(scheme, fraction, 80))
    approved = admin.approve(cycle_id=cid, org_ids=[b1, b2])["approved"]
    assert [a["stars"] for a in approved] == [4, 3]
    sleep_until(approved[-1]["publicity_ends_at"])
    admin.close_publicity(cycle_id=cid, org_ids=[b1, b2])
    # 重大问题 on 一支部, 文学一支部 and the college 机电学院 itself; 一支部 plans its 整改
    for org_id in (b1, b3, college):
        admin.record_major_problem(org_id=org_id, problem_id="p1", description="违规",
                                   reason="纪委通报", evidence=["通报"])
    sec1 = rpc_as("branch_secretary", sub=tree["sec1"], org=b1).evaluation
    sec1.plan_rectification(org_id=b1, problem_id="p1", plan="退回, 专题组织生活会",
                            due="2027-01-31")
    low_stars = [p for p in admin.get_rating(b2)["problems"] if p["kind"] == "low_stars"]
    assert [p["status"] for p in low_stars] == ["open"]
    eventlet.sleep(0.01)
    t1 = dt.datetime.now(dt.timezone.utc).isoformat()
    eventlet.sleep(0.01)
    # since: 一支部's rectification completed and verified, 文学一支部 dissolved,
    # 二支部's planned
    sec1.complete_rectification(org_id=b1, problem_id="p1", evidence=["整改报告"])
    admin.verify_rectification(org_id=b1, problem_id="p1", reason="整改到位")
    orgs.dissolve_organization(org_id=b3, reason="撤并")
    rpc_as("branch_secretary", sub=tree["sec2"], org=b2).evaluation.plan_rectification(
        org_id=b2, problem_id=low_stars[0]["problem_id"], plan="对标整改", due="2027-02-28")
    wait_for(lambda: admin.rectifications_owing()["branches"]["school"]["organizations"] == 2,
             15, message="evaluation's directory has the dissolution")

    def numbers(r):  # each number of R as (count, sorted ids)
        def n(x):
            assert x["count"] == len(x["org_ids"])
            return sorted(x["org_ids"])
        return {"organizations": r["organizations"], "owing": n(r["owing"]),
                "rectifications": r["rectifications"],
                **{k: n(v) for k, v in r["by_kind"].items()},
                **{k: n(v) for k, v in r["by_stage"].items()}, "overdue": n(r["overdue"])}

    def per_college(answer):
        return {c["college_id"]: numbers(c) for c in answer["branches"]["colleges"]}

    def R(organizations, owing=(), rectifications=0, major_problem=(), low_stars=(),
          open=(), planned=(), completed=(), overdue=()):
        return {"organizations": organizations, "owing": sorted(owing),
                "rectifications": rectifications, "major_problem": sorted(major_problem),
                "low_stars": sorted(low_stars), "open": sorted(open),
                "planned": sorted(planned), "completed": sorted(completed),
                "overdue": sorted(overdue)}

    today = dt.datetime.now(dt.timezone.utc).date()
    now = auditor.rectifications_owing()
    assert now["as_of"] is None and now["overdue_on"] == today.isoformat()
    assert numbers(now["branches"]["school"]) == R(2, [b2], 1, low_stars=[b2], planned=[b2])
    assert per_college(now) == {college: R(2, [b2], 1, low_stars=[b2], planned=[b2]),
                                college2: R(0)}
    assert numbers(now["colleges"]) == R(2, [college], 1, major_problem=[college],
                                         open=[college])
    assert [(o["org_name"], [(p["kind"], p["stage"], p["plan_due"], p["overdue"])
                             for p in o["rectifications"]]) for o in now["organizations"]] == [
        ("机电学院党总支", [("major_problem", "open", None, False)]),
        ("教工二支部", [("low_stars", "planned", "2027-02-28", False)])]
    assert now["organizations"][1]["college_id"] == college

    then = auditor.rectifications_owing(as_of=t1)
    assert then["as_of"] == dt.datetime.fromisoformat(t1).isoformat()
    assert numbers(then["branches"]["school"]) == R(
        3, [b1, b2, b3], 3, major_problem=[b1, b3], low_stars=[b2], open=[b2, b3],
        planned=[b1])
    assert per_college(then) == {
        college: R(2, [b1, b2], 2, major_problem=[b1], low_stars=[b2], open=[b2], planned=[b1]),
        college2: R(1, [b3], 1, major_problem=[b3], open=[b3])}
    assert numbers(then["colleges"]) == R(2, [college], 1, major_problem=[college],
                                          open=[college])
    listed = {o["org_id"]: o for o in then["organizations"]}
    assert (listed[b3]["college_id"], listed[b3]["org_name"]) == (college2, "文学一支部")
    assert [(p["problem_id"], p["stage_zh"], p["plan_due"]) for p in
            listed[b1]["rectifications"]] == [("p1", "整改中 (已报整改计划)", "2027-01-31")]
    assert listed[b2]["rectifications"][0]["plan_due"] is None  # planned only later
    # overdue: the due day (recorded + 90 days) passed and not yet completed
    due = listed[b3]["rectifications"][0]["rectification_due"]
    assert due == (today + dt.timedelta(days=90)).isoformat()
    later = (today + dt.timedelta(days=120)).isoformat()
    admin.plan_rectification(org_id=college, problem_id="p1", plan="整改", due="2027-01-31")
    admin.complete_rectification(org_id=college, problem_id="p1", evidence=["整改报告"])
    ahead = auditor.rectifications_owing(as_of=later)
    assert ahead["overdue_on"] == later
    assert numbers(ahead["branches"]["school"])["overdue"] == [b2]  # planned, past due
    assert numbers(ahead["colleges"]) == R(2, [college], 1, major_problem=[college],
                                           completed=[college])  # awaits 组织部's verification

    # one college: its branches and the college itself; a college secretary, its own only
    mine = rpc_as("college_secretary", sub=tree["college_sec"], org=college).evaluation
    own = mine.rectifications_owing(as_of=t1)
    assert own["college_id"] == college and per_college(own) == {
        college: per_college(then)[college]}
    assert numbers(own["colleges"]) == numbers(then["colleges"]) | {"organizations": 1}
    assert {o["org_id"] for o in own["organizations"]} == {b1, b2, college}
    assert numbers(auditor.rectifications_owing(college_id=college2, as_of=t1)[
        "branches"]["school"]) == R(1, [b3], 1, major_problem=[b3], open=[b3])
    with pytest.raises(Forbidden):
        mine.rectifications_owing(college_id=college2)
    with pytest.raises(Forbidden):
        rpc_as("member", sub=tree["member"]).evaluation.rectifications_owing()
    with pytest.raises(ValidationError) as e:
        auditor.rectifications_owing(as_of="yesterday")
    assert e.value.fields == ["as_of"]
    with pytest.raises(ValidationError) as e:
        auditor.rectifications_owing(college_id="not-a-college")
    assert e.value.fields == ["college_id"]

    # the programme dashboard does not recompute them (it stays under 100 ms at
    # 1,000 branches): the portal asks rectifications_owing beside it
    assert "rectifications" not in admin.programme_dashboard()


def test_college_cycle_college_secretary_self_assesses_org_admin_reviews(tree, rpc_as):  # noqa: F811
    admin = rpc_as("org_admin").evaluation
    college_sec = rpc_as("college_secretary", sub=tree["college_sec"], org=tree["college"]).evaluation
    scheme = admin.get_scheme("benchmark_college")["definition"]
    cycle = admin.open_cycle(name="2026标杆院系考评", level=2, period="2026",
                             deadlines={"self_assessment": iso(600), "review": iso(1200),
                                        "approval": iso(1800)})
    assert cycle["org_ids"] == [tree["college"]] and cycle["scheme_id"] == "benchmark_college"
    with pytest.raises(Forbidden):
        rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation.submit_self_assessment(
            cycle_id=cycle["id"], org_id=tree["college"], **full_entries(scheme, 0.8, 80))
    entries = full_entries(scheme, 0.8, 80)
    # 双带头人 coverage is derived from organizations' roles (R5), never entered
    with pytest.raises(ValidationError) as e:
        college_sec.submit_self_assessment(cycle_id=cycle["id"], org_id=tree["college"],
                                           **entries)
    assert e.value.fields == ["scores.double_leader_coverage"]
    del entries["scores"]["double_leader_coverage"]
    out = college_sec.submit_self_assessment(cycle_id=cycle["id"], org_id=tree["college"],
                                             **entries)
    # no teacher branch has a 双带头人 secretary: that indicator is 0, the rest 80%:
    # base = 80 − 20 × 50% × 0.8 = 72; 72 × 70% + 80 × 30% = 50.4 + 24 = 74.4 → ★3
    assert (out["stage"], out["self_assessment"]["result"]["score"]) == ("review", 74.4)
    derived = out["self_assessment"]["result"]["dimensions"][3]["indicators"][1]
    assert derived["source"] == "derived from members.double_leader_secretary"
    assert [r["double_leader"] for r in derived["derivation"]["records"]] == [False, False]
    with pytest.raises(Forbidden):  # a college does not review itself
        college_sec.submit_review(cycle_id=cycle["id"], org_id=tree["college"], **entries)
    assert admin.submit_review(cycle_id=cycle["id"], org_id=tree["college"],
                               **entries)["stage"] == "approval"


def test_relay_publishes_the_contract_events(tree, rpc_as, rabbit_config):  # noqa: F811
    """What the notifications service consumes, as it arrives on evaluation.events."""
    queue = Queue("test-evaluation-tap", exchange=get_event_exchange("evaluation", {}),
                  routing_key="#", durable=False)
    admin = rpc_as("org_admin").evaluation
    with Connection(rabbit_config["AMQP_URI"]) as conn:
        queue(conn.default_channel).declare()
        cycle = open_cycle(admin)
        # an unrated branch with a 重大问题: capped at the scheme's ★2 at once
        admin.record_major_problem(
            org_id=tree["b1"], problem_id="p1", description="违规", reason="纪委通报",
            evidence=["通报"])
        received = {}

        def drain():
            while (message := queue(conn.default_channel).get(no_ack=True)) is not None:
                received.setdefault(message.payload["type"], []).append(message.payload)
            return "rating_fell_to_three_or_below" in received

        wait_for(drain, timeout=10, message="the rating events on evaluation.events")
    opened = received["cycle_opened"][0]
    assert opened["originator_id"] == cycle["id"] and opened["source"] == "evaluation"
    assert {"name", "level", "period", "org_ids", "deadlines", "scheme_id", "scheme_version",
            "publicity_days"} <= set(opened["data"])
    changed = received["rating_changed"][0]
    assert {k: changed["data"][k] for k in ("org_id", "org_name", "stars_before", "stars_after",
                                            "cause", "cycle_id")} == {
        "org_id": tree["b1"], "org_name": "教工一支部", "stars_before": None, "stars_after": 2,
        "cause": "major_problem", "cycle_id": None}
    assert {"score", "scheme_version"} <= set(changed["data"])
    fell = received["rating_fell_to_three_or_below"][0]
    assert (fell["data"]["stars"], fell["data"]["previous_stars"]) == (2, None)
    assert fell["data"]["rectification_due"] and fell["actor"]["role"] == "org_admin"
    # the fall is saved with the change that caused it: consecutive versions
    assert fell["originator_version"] == changed["originator_version"] + 1
    assert received["rating_major_problem_recorded"][0]["evidence"] == ["通报"]


def test_a_secretary_token_follows_the_directory_copy_of_the_records(tree, rpc_as):  # noqa: F811
    """Evaluation honours a secretary's token only while its own copy of the org
    records (dir_roles) shows that member as secretary: assignments and
    revocations take effect once the consumer applied them."""
    admin = rpc_as("org_admin").evaluation
    orgs = rpc_as("org_admin").organizations
    cid = open_cycle(admin)["id"]

    def board(member_id):
        proxy = rpc_as("branch_secretary", sub=member_id, org=tree["b1"]).evaluation
        try:
            return [o["org_id"] for o in proxy.progress_board(cid)["organizations"]]
        except Forbidden:
            return "Forbidden"

    assert board(tree["sec1"]) == [tree["b1"]]
    # 一支部's secretary is 张书记: 二支部's secretary, or 李四, naming 一支部 is refused
    assert board(tree["sec2"]) == "Forbidden"
    assert board(tree["member"]) == "Forbidden"
    orgs.revoke_role(org_id=tree["b1"], member_id=tree["sec1"], role="secretary", reason="换届")
    wait_for(lambda: board(tree["sec1"]) == "Forbidden", 15,
             message="the revocation reaches evaluation's directory")
    orgs.assign_role(org_id=tree["b1"], member_id=tree["member"], role="secretary", reason="换届")
    wait_for(lambda: board(tree["member"]) == [tree["b1"]], 15,
             message="the assignment reaches evaluation's directory")
    sec = rpc_as("branch_secretary", sub=tree["member"], org=tree["b1"]).evaluation
    scheme = admin.get_scheme("model_branch")["definition"]
    out = sec.submit_self_assessment(cycle_id=cid, org_id=tree["b1"],
                                     **full_entries(scheme, 0.8, 80))
    assert out["stage"] == "review"
    with pytest.raises(Forbidden):
        rpc_as("branch_secretary", sub=tree["sec1"], org=tree["b1"]).evaluation \
            .submit_self_assessment(cycle_id=cid, org_id=tree["b1"],
                                    **full_entries(scheme, 0.8, 80))
