"""The evaluation application on the real database with a controllable clock:
a quota cap with ties at approval (审定) over one college, and the timer that
makes results final when the publicity (公示) window ends."""
import copy
import csv
import io
import json
import time
import datetime as dt
import uuid

import pytest

from services.evaluation.application import EvaluationApplication
from shared.errors import NotFound
from shared.identity import Caller
from tests.unit.test_evaluation_scoring import TINY

ADMIN = Caller("zzb", "org_admin")


def _moment() -> str:
    """A moment strictly between the events before and after it."""
    time.sleep(0.01)
    moment = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    return moment


def test_quota_ties_at_approval_and_publicity_closed_by_the_timer(clean_databases):
    now = [dt.datetime.now(dt.timezone.utc)]
    app = EvaluationApplication(clean_databases["evaluation"], clock=lambda: now[0])
    try:
        college, branches = uuid.uuid4(), [uuid.uuid4() for _ in range(10)]
        with app.transaction() as curs:
            curs.execute("INSERT INTO dir_orgs VALUES (%s,'学院','general_branch',2,NULL,NULL,"
                         "'active',now())", (college,))
            for i, b in enumerate(branches):
                curs.execute("INSERT INTO dir_orgs VALUES (%s,%s,'teacher_branch',3,%s,NULL,"
                             "'active',now())", (b, f"支部{i:02d}", college))
        app.publish_scheme(ADMIN, {"definition": copy.deepcopy(TINY)})
        later = {s: (now[0] + dt.timedelta(days=d)).isoformat()
                 for s, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
        cycle = app.open_cycle(ADMIN, {"name": "2026考评", "level": 3, "period": "2026",
                                       "deadlines": later, "scheme_id": "tiny"})
        assert len(cycle["org_ids"]) == 10
        # every indicator full: base 100, score = 100 × 70% + appraisal × 30%
        appraisals = [100, 90, 80, 80, 70, 0, 0, 0, 0, 0]
        full = {"scores": {"a1": 10, "a2": 20, "b1": 5}, "evidence": {"a2": ["minutes"]}}
        for b, appraisal in zip(branches, appraisals):
            sec = Caller(f"s{b}", "branch_secretary", str(b))
            payload = {"cycle_id": cycle["id"], "org_id": str(b), **full, "appraisal": appraisal}
            app.submit_self_assessment(sec, payload)
            app.submit_review(ADMIN, {**payload, "evidence": {"a2": ["review-visit-notes"]}})
        submitted_at = _moment()
        out = app.approve(ADMIN, {"cycle_id": cycle["id"], "org_ids": [str(b) for b in branches],
                                  "reason": "党委会审定 2026-12-20"})
        approved_at = _moment()
        got = [(a["score"], a["stars"]) for a in out["approved"]]
        # scores 100, 97, 94, 94, 91 are in the ★5 band, 70 × 5 in ★3.
        # ★5 quota: 30% of 10 branches = 3 slots. 100 and 97 take two; 94 and 94 tie for
        # the last: demote_all gives both ★4 (the cap is never exceeded); 91 ranks 5th: ★4.
        assert got == [(100.0, 5), (97.0, 5), (94.0, 4), (94.0, 4), (91.0, 4)] + [(70.0, 3)] * 5
        tied = app.get_assessment(ADMIN, cycle["id"], str(branches[2]))
        assert tied["stage"] == "publicity" and tied["stars"] == 4
        assert "tied at 94.0" in tied["quota_notes"][0] and "demote_all" in tied["quota_notes"][0]

        assert app.close_expired_publicity() == 0  # the 7-day window is still running
        now[0] += dt.timedelta(days=7, seconds=1)
        assert app.close_expired_publicity() == 10
        ratings = [app.get_rating(ADMIN, str(b)) for b in branches]
        assert [r["stars"] for r in ratings] == [5, 5, 4, 4, 4, 3, 3, 3, 3, 3]
        assert ratings[0]["scheme_id"] == "tiny" and ratings[0]["scheme_version"] == 1
        dist = app.star_distribution(ADMIN)["branches"]["colleges"][0]
        assert (dist["four_or_above"]["count"], dist["four_or_above"]["share"]) == (5, 0.5)
        assert len(dist["three_or_below"]["organizations"]) == 5
        assert "ranked 5 of 5" in ratings[4]["breakdown"]["quota_notes"][0]
        # The rating change carries what the result rests on: both stages' evidence,
        # and the approver's reason beside the automatic label.
        (changed,) = [e for e in app.read_envelopes(0, 5000) if e["type"] == "rating_changed"
                      and e["data"]["org_id"] == str(branches[0])]
        assert changed["reason"] == "2026考评 考评结果; 审定意见 approver's reason: 党委会审定 2026-12-20"
        assert changed["evidence"] == {"self_assessment": {"a2": ["minutes"]},
                                       "review": {"a2": ["review-visit-notes"]},
                                       "approval_reason": "党委会审定 2026-12-20"}
        # The cycle's assessments as they stood at a moment, replayed from the store.
        auditor = Caller("jiwei", "auditor")
        then = app.assessments_as_of(auditor, cycle["id"], submitted_at)["assessments"]
        assert [(a["stage"], a["stars"]) for a in then] == [("approval", None)] * 10
        then = app.assessments_as_of(auditor, cycle["id"], approved_at)["assessments"]
        assert [a["stage"] for a in then] == ["publicity"] * 10
        assert sorted(a["stars"] for a in then) == sorted([5, 5, 4, 4, 4, 3, 3, 3, 3, 3])
        (latest,) = app.assessments_as_of(auditor, cycle["id"], _moment(),
                                          org_id=str(branches[0]))["assessments"]
        assert {k: v for k, v in latest.items() if k != "as_of"} == app.get_assessment(
            ADMIN, cycle["id"], str(branches[0]))
        with pytest.raises(NotFound):
            app.assessments_as_of(auditor, cycle["id"], "2000-01-01")
        # The auditor's history of that rating: labelled, filtered, as CSV; the read recorded.
        history = app.get_history(auditor, {"org_id": str(branches[0])})
        assert [h["label"] for h in history] == ["建立星级档案", "考评结果定级", "星级变动"]
        exported = app.get_history(auditor, {"org_id": str(branches[0]),
                                             "kinds": ["rating_changed"], "format": "csv"})
        (header, row) = list(csv.reader(io.StringIO(exported["content"].lstrip("\ufeff"))))
        # closed by the timer when publicity ended: actor "system"
        assert (row[1], row[3], row[5], row[7]) == ("星级变动", "system", changed["reason"], "1")
        assert json.loads(row[6])["review"] == {"a2": ["review-visit-notes"]}
        reads = app.list_audit_reads(ADMIN, {"subject_id": str(branches[0])})
        assert [(r["reader"]["sub"], r["query"]) for r in reads] == [("jiwei", "get_history")] * 2
        assert len(app.list_audit_reads(ADMIN, {"subject_id": cycle["id"]})) == 3
        gauges = {g["name"]: dict(g["samples"]) for g in app.business_gauges()}
        assert gauges["lianchuang_ratings"][("5", "3")] == 2
        assert gauges["lianchuang_assessments"][("final",)] == 10
    finally:
        app.close()


def test_a_cycle_keeps_its_scheme_version_and_each_caller_its_own_copy(clean_databases):
    """The definition a cycle scores by (its scheme version, kept once read):
    a later version does not change it, and what one caller does to its copy
    reaches no other."""
    app = EvaluationApplication(clean_databases["evaluation"])
    try:
        college, branch = uuid.uuid4(), uuid.uuid4()
        with app.transaction() as curs:
            curs.execute("INSERT INTO dir_orgs VALUES (%s,'学院','general_branch',2,NULL,NULL,"
                         "'active',now())", (college,))
            curs.execute("INSERT INTO dir_orgs VALUES (%s,'支部','teacher_branch',3,%s,NULL,"
                         "'active',now())", (branch, college))
        app.publish_scheme(ADMIN, {"definition": copy.deepcopy(TINY)})
        soon = dt.datetime.now(dt.timezone.utc)
        later = {s: (soon + dt.timedelta(days=d)).isoformat()
                 for s, d in (("self_assessment", 1), ("review", 2), ("approval", 3))}
        opened = app.open_cycle(ADMIN, {"name": "2026考评", "level": 3, "period": "2026",
                                        "deadlines": later, "scheme_id": "tiny"})
        cycle = app._cycle(opened["id"])
        first = app._definition(cycle)
        assert [i["code"] for i in first["indicators"]] == ["a1", "a2", "b1"]
        first["indicators"].clear()  # the caller's own copy
        again = app._definition(cycle)
        assert [i["code"] for i in again["indicators"]] == ["a1", "a2", "b1"]
        changed = copy.deepcopy(TINY)
        changed["indicators"] = [dict(i, max_score=i["max_score"] * 2)
                                 for i in changed["indicators"]]
        assert app.publish_scheme(ADMIN, {"definition": changed})["version"] == 2
        assert app._definition(cycle) == again  # the cycle's version 1, as before
    finally:
        app.close()
