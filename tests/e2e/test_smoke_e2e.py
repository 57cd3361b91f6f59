from tests.conftest import wait_for


def test_member_transfer_reaches_notifications(start_service, rpc_as):
    start_service("organizations")
    start_service("notifications")
    admin = rpc_as("org_admin").organizations
    ops = rpc_as("ops").notifications
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    b1 = admin.create_organization(name="一支部", kind="teacher_branch", parent_id=college["id"])
    b2 = admin.create_organization(name="二支部", kind="teacher_branch", parent_id=college["id"])
    m = admin.register_member(name="张三", branch_id=b1["id"], category="teacher",
                              status="full", joined_on="2010-07-01")
    admin.transfer_member(member_id=m["id"], to_branch_id=b2["id"], effective_on="2026-01-01")
    status = wait_for(lambda: (s := ops.consumer_status()["org_directory"])["transfers_applied"] == 1 and s,
                      message="transfer applied")
    assert status["organizations"] == 4
