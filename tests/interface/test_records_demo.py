"""The demo records load through the organizations RPC for a demo branch, and
loading them again changes nothing."""
import datetime as dt

from services.organizations import demo as organizations_demo
from services.organizations.records import demo as records_demo


def test_demo_records_load_once(start_service, rpc_as):
    start_service("organizations")
    admin = rpc_as("org_admin")
    orgs, members, roles = organizations_demo.plan()
    committee, college = orgs[0], orgs[1]
    branches = orgs[2:3]
    assert branches[0]["kind"] == "teacher_branch"
    wanted = {str(b["org_id"]) for b in branches}
    for org in (committee, college, *branches):
        admin.organizations.create_organization(
            **{k: str(v) if k in ("org_id", "parent_id") else v for k, v in org.items()})
    mine = [m for m in members if str(m["branch_id"]) in wanted]
    for m in mine:
        admin.organizations.register_member(
            **{k: str(v) if k in ("member_id", "branch_id") else v for k, v in m.items()})
    today = dt.date(dt.date.today().year - 1, 4, 1)  # last year's first quarter
    created = records_demo.load(admin, [committee, college, *branches], mine, roles,
                                today=today)
    # Jan-Mar: 3 months × (支委会, 党小组会, 主题党日) + one quarter × (大会, 党课)
    assert created["meetings"] == 3 * 3 + 2
    assert created["member_records"] > len(mine)
    again = records_demo.load(admin, [committee, college, *branches], mine, roles, today=today)
    assert again == {"meetings": 0, "member_records": 0}
