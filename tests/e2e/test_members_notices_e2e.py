"""A red-line violation recorded in organizations zeroes the member's pioneer index
(锋领指数) at the year's close in evaluation; notifications tells the member and
their branch secretary, and a refused 两优一先 nomination reaches the secretary."""
import datetime as dt

from tests.conftest import wait_for
from tests.interface.test_notifications_rpc import build_tree, inbox_of, notifications_config


def subjects(rpc_as, sub):
    return [i["subject"] for i in inbox_of(rpc_as, sub)["items"]]


def test_index_zeroed_and_nomination_refused_reach_their_inboxes(start_service, rpc_as):
    start_service("organizations")
    start_service("evaluation")
    start_service("notifications", **notifications_config())
    ids = build_tree(rpc_as)
    wait_for(lambda: rpc_as("ops").evaluation.consumer_status()["org_directory"]["roles"] == 3,
             15, message="evaluation's directory has the tree")
    year = dt.date.today().year
    admin = rpc_as("org_admin")
    admin.organizations.record_member_record(
        member_id=ids["member"], kind="violation",
        on=(dt.date.today() - dt.timedelta(days=2)).isoformat(),
        details={"line": "red_line", "description": "违反中央八项规定精神",
                 "finding": "纪委办〔2026〕9号"}, evidence=["纪委办〔2026〕9号"])
    wait_for(lambda: admin.evaluation.get_member_index(member_id=ids["member"],
                                                       year=year)["zeroed"], 20,
             message="evaluation applied the violation")
    closed = admin.evaluation.close_member_year(year=year)
    assert closed["zeroed"] == 1

    zeroed = f"【锋领指数清零】李党员{year}年度锋领指数清零"
    wait_for(lambda: zeroed in subjects(rpc_as, ids["member"]), 20,
             message="the member's notice")
    wait_for(lambda: zeroed in subjects(rpc_as, ids["secretary"]), 20,
             message="the branch secretary's notice")
    body = next(i for i in inbox_of(rpc_as, ids["member"])["items"]
                if i["subject"] == zeroed)["body"]
    assert "触碰红线" in body and "李党员同志" in body
    assert zeroed not in subjects(rpc_as, ids["secretary2"])  # another branch's secretary

    refused = rpc_as("branch_secretary", sub=ids["secretary"], org=ids["branch"]).evaluation \
        .nominate(kind="excellent_member", subject_id=ids["member"], year=year)
    assert [f["code"] for f in refused["failed"]] == ["appraisal", "no_violation", "min_index"]
    notice = f"【两优一先推荐未通过资格审查】李党员（{year}年度“优秀共产党员”）"
    wait_for(lambda: notice in subjects(rpc_as, ids["secretary"]), 20,
             message="the refusal notice")
