def test_create_tree_and_read_it(start_service, rpc_as):
    start_service("organizations")
    admin = rpc_as("org_admin").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    branch = admin.create_organization(name="教工第一党支部", kind="teacher_branch",
                                       parent_id=college["id"])
    m = admin.register_member(name="张三", branch_id=branch["id"], category="teacher",
                              status="full", joined_on="2010-07-01")
    org = admin.get_organization(college["id"])
    assert org["member_count"] == 1
    assert [c["name"] for c in org["children"]] == ["教工第一党支部"]
    assert m["branch_name"] == "教工第一党支部"
