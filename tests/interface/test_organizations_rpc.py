"""Every organizations RPC method through a real container, RabbitMQ and PostgreSQL,
with the failure paths: bad input, wrong role, wrong scope, concurrent writes."""
import datetime as dt
import uuid

import eventlet
import pytest

from shared.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationError
from tests.conftest import token


@pytest.fixture
def org(start_service, rpc_as):
    start_service("organizations")
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    t = {}
    t["committee"] = admin.create_organization(name="学校党委", kind="committee")
    t["c1"] = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=t["committee"]["id"])
    t["c2"] = admin.create_organization(name="数字学院党委", kind="college_committee",
                                        parent_id=t["committee"]["id"])
    t["b1"] = admin.create_organization(name="教工一支部", kind="teacher_branch",
                                        parent_id=t["c1"]["id"])
    t["b2"] = admin.create_organization(name="学生一支部", kind="student_branch",
                                        parent_id=t["c1"]["id"])
    t["b3"] = admin.create_organization(name="教工一支部", kind="teacher_branch",
                                        parent_id=t["c2"]["id"])
    t["m1"] = admin.register_member(name="张三", branch_id=t["b1"]["id"], category="teacher",
                                    status="full", joined_on="2005-07-01", double_leader=True)
    t["m2"] = admin.register_member(name="李四", branch_id=t["b1"]["id"], category="teacher",
                                    status="full", joined_on="2012-07-01")
    t["m3"] = admin.register_member(name="王五", branch_id=t["b2"]["id"], category="student",
                                    status="probationary", joined_on="2025-06-01")
    t["m4"] = admin.register_member(name="赵六", branch_id=t["b3"]["id"], category="teacher",
                                    status="full", joined_on="2015-07-01")
    t["admin"] = admin
    return t


def ids(t, *keys):
    return [t[k]["id"] for k in keys]


def secretary_of(t, rpc_as, org_key, member_key):
    """The member made secretary (书记) of the organisation by 组织部, and a proxy
    with a secretary token naming that member (``sub``) and organisation."""
    t["admin"].assign_role(org_id=t[org_key]["id"], member_id=t[member_key]["id"],
                           role="secretary")
    role = "college_secretary" if t[org_key]["level"] == 2 else "branch_secretary"
    return rpc_as(role, sub=t[member_key]["id"], org=t[org_key]["id"]).organizations


# -- identity ----------------------------------------------------------------
def test_calls_without_a_valid_token_are_unauthenticated(org, rpc_as):
    for proxy in (rpc_as(None), rpc_as(raw_token="not-a-token"),
                  rpc_as(raw_token=token("org_admin", ttl=-5))):
        with pytest.raises(Unauthenticated):
            proxy.organizations.get_tree()
    with pytest.raises(Unauthenticated):
        rpc_as(None).organizations.create_organization(name="x", kind="committee")


def test_remote_error_type_names_the_error(org, rpc_as):
    # A portal without our classes sees the type name on RemoteError.exc_type.
    from nameko.exceptions import RemoteError, registry
    saved = dict(registry)
    registry.clear()
    try:
        with pytest.raises(RemoteError) as e:
            org["admin"].get_organization(str(uuid.uuid4()))
        assert e.value.exc_type == "NotFound"
    finally:
        registry.update(saved)


# -- the tree ------------------------------------------------------------------
def test_organisation_with_children_head_counts_and_path(org):
    admin = org["admin"]
    c1 = admin.get_organization(org["c1"]["id"])
    assert c1["member_count"] == 3
    assert {c["name"]: c["member_count"] for c in c1["children"]} == {"教工一支部": 2, "学生一支部": 1}
    assert [p["name"] for p in c1["path"]] == ["学校党委", "机电学院党总支"]
    assert admin.get_organization(org["committee"]["id"])["member_count"] == 4
    assert [p["level"] for p in admin.get_path(org["b1"]["id"])] == [1, 2, 3]
    tree = admin.get_tree()
    assert len(tree) == 1 and len(tree[0]["children"]) == 2


def test_create_validation_names_the_fields(org):
    admin = org["admin"]
    with pytest.raises(ValidationError) as e:
        admin.create_organization(name="", kind="castle", parent_id="nope", colour="red")
    assert set(e.value.fields) == {"name", "kind", "parent_id", "colour"}
    with pytest.raises(ValidationError) as e:
        admin.create_organization(name="第二党委", kind="committee")
    assert e.value.fields == ["kind"]
    with pytest.raises(ValidationError) as e:
        admin.create_organization(name="越级支部", kind="teacher_branch",
                                  parent_id=org["committee"]["id"])
    assert e.value.fields == ["parent_id"]
    with pytest.raises(NotFound):
        admin.create_organization(name="x", kind="teacher_branch", parent_id=str(uuid.uuid4()))


def test_names_unique_among_live_siblings(org):
    admin = org["admin"]
    with pytest.raises(ValidationError) as e:
        admin.create_organization(name="教工一支部", kind="teacher_branch", parent_id=org["c1"]["id"])
    assert e.value.fields == ["name"]
    # the same name under another parent is fine (b3 exists under c2 already)
    # renaming frees the old name for a new sibling
    admin.rename_organization(org_id=org["b1"]["id"], name="教工第一党支部", reason="规范名称")
    again = admin.create_organization(name="教工一支部", kind="teacher_branch",
                                      parent_id=org["c1"]["id"])
    assert again["name"] == "教工一支部"
    with pytest.raises(ValidationError) as e:
        admin.move_organization(org_id=org["b3"]["id"], parent_id=org["c1"]["id"])
    assert e.value.fields == ["name"]


def test_rename_move_and_tree_as_of(org):
    admin = org["admin"]
    before = dt.datetime.now(dt.timezone.utc).isoformat()
    eventlet.sleep(0.01)
    admin.rename_organization(org_id=org["b2"]["id"], name="学生第一党支部")
    moved = admin.move_organization(org_id=org["b2"]["id"], parent_id=org["c2"]["id"],
                                    reason="学院调整")
    assert moved["parent_id"] == org["c2"]["id"]
    assert admin.get_organization(org["c2"]["id"])["member_count"] == 2
    past = admin.get_organization(org["b2"]["id"], as_of=before)
    assert (past["name"], past["parent_id"]) == ("学生一支部", org["c1"]["id"])
    past_tree = admin.get_tree(as_of=before)
    c1_then = [c for c in past_tree[0]["children"] if c["id"] == org["c1"]["id"]][0]
    assert {b["name"] for b in c1_then["children"]} == {"教工一支部", "学生一支部"}
    # head counts as they were: the student branch (and its member) was still in c1
    assert (past_tree[0]["member_count"], c1_then["member_count"]) == (4, 3)
    now_c1 = [c for c in admin.get_tree()[0]["children"] if c["id"] == org["c1"]["id"]][0]
    assert now_c1["member_count"] == 2
    with pytest.raises(NotFound):
        admin.get_organization(org["b2"]["id"], as_of="2000-01-01")
    with pytest.raises(ValidationError) as e:
        admin.get_tree(as_of="yesterday")
    assert e.value.fields == ["as_of"]


def test_move_rules(org):
    admin = org["admin"]
    with pytest.raises(ValidationError) as e:
        admin.move_organization(org_id=org["c1"]["id"], parent_id=org["c2"]["id"])
    assert e.value.fields == ["parent_id"]
    with pytest.raises(ValidationError) as e:
        admin.move_organization(org_id=org["committee"]["id"], parent_id=org["c1"]["id"])
    assert e.value.fields == ["org_id"]


def test_merge_moves_members_and_closes_the_branch(org):
    admin = org["admin"]
    admin.assign_role(org_id=org["b2"]["id"], member_id=org["m3"]["id"], role="secretary")
    result = admin.merge_branches(source_id=org["b2"]["id"], target_id=org["b1"]["id"],
                                  reason="支部合并")
    assert result["members_moved"] == 1 and result["member_count"] == 3
    merged = admin.get_organization(org["b2"]["id"])
    assert (merged["status"], merged["merged_into"], merged["officers"]) == \
        ("merged", org["b1"]["id"], [])
    assert admin.get_member(org["m3"]["id"])["branch_id"] == org["b1"]["id"]
    with pytest.raises(ValidationError) as e:
        admin.register_member(name="新人", branch_id=org["b2"]["id"], category="student",
                              status="probationary", joined_on="2026-01-01")
    assert e.value.fields == ["branch_id"]
    with pytest.raises(ValidationError) as e:
        admin.merge_branches(source_id=org["b1"]["id"], target_id=org["b2"]["id"], reason="再合并")
    assert e.value.fields == ["target_id"]


def test_head_counts_kept_in_the_read_model_match_a_recount(org):
    """人数 kept by the projection (register, transfer, leave, move, merge) equals
    the count rolled up from the members' moves, and survives a rebuild."""
    admin = org["admin"]
    admin.transfer_member(member_id=org["m2"]["id"], to_branch_id=org["b3"]["id"],
                          effective_on="2026-03-01", reason="调动")
    admin.member_leaves(member_id=org["m4"]["id"], effective_on="2026-04-01", reason="转出")
    admin.move_organization(org_id=org["b2"]["id"], parent_id=org["c2"]["id"], reason="调整")
    admin.merge_branches(source_id=org["b3"]["id"], target_id=org["b2"]["id"], reason="合并")

    def counts(tree):
        out = {}
        stack = list(tree)
        while stack:
            node = stack.pop()
            out[node["id"]] = node["member_count"]
            stack.extend(node["children"])
        return out

    kept = counts(admin.get_tree())
    now = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    assert kept == counts(admin.get_tree(as_of=now))
    assert kept[org["committee"]["id"]] == 3
    assert (kept[org["c1"]["id"]], kept[org["c2"]["id"]], kept[org["b2"]["id"]]) == (1, 2, 2)
    admin.rebuild_read_models()
    assert counts(admin.get_tree()) == kept


def test_dissolve(org):
    admin = org["admin"]
    with pytest.raises(ValidationError) as e:
        admin.dissolve_organization(org_id=org["b3"]["id"], reason="撤销")
    assert "1 members" in str(e.value)
    with pytest.raises(ValidationError) as e:
        admin.dissolve_organization(org_id=org["b3"]["id"])
    assert e.value.fields == ["reason"]
    admin.transfer_member(member_id=org["m4"]["id"], to_branch_id=org["b1"]["id"],
                          effective_on="2026-09-01")
    gone = admin.dissolve_organization(org_id=org["b3"]["id"], reason="撤销")
    assert gone["status"] == "dissolved"
    assert org["b3"]["id"] not in [c["id"] for c in admin.get_tree()[0]["children"][1]["children"]]
    with pytest.raises(ValidationError):
        admin.transfer_member(member_id=org["m4"]["id"], to_branch_id=org["b3"]["id"],
                              effective_on="2026-10-01")


# -- members -------------------------------------------------------------------
def test_member_lifecycle_and_history(org):
    admin = org["admin"]
    m3 = org["m3"]["id"]
    admin.convert_member_to_full(member_id=m3, effective_on="2026-06-01")
    admin.change_member_category(member_id=m3, category="staff", effective_on="2026-07-01")
    before_transfer = dt.datetime.now(dt.timezone.utc).isoformat()
    eventlet.sleep(0.01)
    admin.transfer_member(member_id=m3, to_branch_id=org["b1"]["id"], effective_on="2026-08-01",
                          reason="留校工作")
    c1_then = admin.get_tree(as_of=before_transfer)[0]["children"][1]
    assert c1_then["name"] == "机电学院党总支"
    # as recorded then, m3 was still a student; by effective date (08-01, before that
    # moment) the transfer had already taken effect: both head counts are answered
    assert {b["name"]: b["member_count_recorded"] for b in c1_then["children"]} == \
        {"教工一支部": 2, "学生一支部": 1}
    assert {b["name"]: b["member_count"] for b in c1_then["children"]} == \
        {"教工一支部": 3, "学生一支部": 0}
    admin.set_double_leader(member_id=m3, double_leader=True)
    left = admin.member_leaves(member_id=m3, effective_on="2026-09-01", reason="转出")
    assert (left["status"], left["category"], left["active"], left["double_leader"]) == \
        ("full", "staff", False, True)
    assert [h["kind"] for h in left["history"]] == ["registered", "transferred", "left"]
    with pytest.raises(ValidationError) as e:
        admin.transfer_member(member_id=m3, to_branch_id=org["b2"]["id"], effective_on="2026-10-01")
    assert e.value.fields == ["member_id"]
    with pytest.raises(ValidationError) as e:
        admin.register_member(name="x", branch_id=org["b1"]["id"], category="teacher",
                              status="full", joined_on="31/12/2020")
    assert e.value.fields == ["joined_on"]
    with pytest.raises(NotFound):
        admin.transfer_member(member_id=str(uuid.uuid4()), to_branch_id=org["b1"]["id"],
                              effective_on="2026-10-01")


def test_roles_are_revoked_when_a_member_leaves_the_branch(org):
    admin = org["admin"]
    admin.assign_role(org_id=org["b1"]["id"], member_id=org["m2"]["id"], role="secretary")
    admin.assign_role(org_id=org["c1"]["id"], member_id=org["m2"]["id"], role="organiser")
    with pytest.raises(ValidationError) as e:
        admin.assign_role(org_id=org["b1"]["id"], member_id=org["m1"]["id"], role="secretary")
    assert e.value.fields == ["role"]
    admin.transfer_member(member_id=org["m2"]["id"], to_branch_id=org["b2"]["id"],
                          effective_on="2026-09-01")
    assert admin.get_organization(org["b1"]["id"])["officers"] == []
    # the college role stays: the member is still in the college
    assert [r["role"] for r in admin.get_member(org["m2"]["id"])["roles"]] == ["organiser"]
    admin.revoke_role(org_id=org["c1"]["id"], member_id=org["m2"]["id"], role="organiser")
    with pytest.raises(ValidationError) as e:
        admin.revoke_role(org_id=org["c1"]["id"], member_id=org["m2"]["id"], role="organiser")
    assert e.value.fields == ["member_id"]


def test_list_members_paging_filters_and_scope(org, rpc_as):
    admin = org["admin"]
    for i in range(7):
        admin.register_member(name=f"学生{i}", branch_id=org["b2"]["id"], category="student",
                              status="full" if i % 2 else "probationary", joined_on="2024-06-01")
    page = admin.list_members(org_id=org["c1"]["id"], page=2, page_size=4)
    assert (page["total"], len(page["members"])) == (10, 4)
    probationary = admin.list_members(org_id=org["b2"]["id"], status="probationary")
    assert probationary["total"] == 5
    assert admin.list_members(org_id=org["c1"]["id"], name_contains="张")["total"] == 1
    with pytest.raises(ValidationError) as e:
        admin.list_members(org_id=org["c1"]["id"], page=0, page_size=10000)
    assert set(e.value.fields) == {"page", "page_size"}
    # scope: a college secretary sees its college, a branch secretary its branch
    college_sec = secretary_of(org, rpc_as, "c1", "m2")
    assert college_sec.list_members(org_id=org["b1"]["id"])["total"] == 2
    with pytest.raises(Forbidden):
        college_sec.list_members(org_id=org["b3"]["id"])
    with pytest.raises(Forbidden):
        college_sec.list_members(org_id=org["committee"]["id"])
    branch_sec = secretary_of(org, rpc_as, "b1", "m1")
    assert branch_sec.list_members(org_id=org["b1"]["id"])["total"] == 2
    with pytest.raises(Forbidden):
        branch_sec.list_members(org_id=org["b2"]["id"])
    with pytest.raises(Forbidden):
        branch_sec.get_member(org["m3"]["id"])
    auditor = rpc_as("auditor").organizations
    assert auditor.list_members(org_id=org["committee"]["id"])["total"] == 11
    member = rpc_as("member", sub=org["m1"]["id"]).organizations
    assert member.get_member(org["m1"]["id"])["name"] == "张三"
    with pytest.raises(Forbidden):
        member.get_member(org["m2"]["id"])


def test_permissions_for_changes(org, rpc_as):
    college_sec = secretary_of(org, rpc_as, "c1", "m2")
    # within its college: members and roles
    new = college_sec.register_member(name="钱七", branch_id=org["b2"]["id"], category="student",
                                      status="probationary", joined_on="2026-05-01")
    college_sec.assign_role(org_id=org["b2"]["id"], member_id=new["id"], role="committee_member")
    college_sec.transfer_member(member_id=new["id"], to_branch_id=org["b1"]["id"],
                                effective_on="2026-09-01")
    # outside its college, or the tree itself: forbidden, and nothing changes
    with pytest.raises(Forbidden):
        college_sec.register_member(name="孙八", branch_id=org["b3"]["id"], category="teacher",
                                    status="full", joined_on="2010-01-01")
    with pytest.raises(Forbidden):
        college_sec.transfer_member(member_id=new["id"], to_branch_id=org["b3"]["id"],
                                    effective_on="2026-10-01")
    with pytest.raises(Forbidden):
        college_sec.transfer_member(member_id=org["m4"]["id"], to_branch_id=org["b1"]["id"],
                                    effective_on="2026-10-01")
    with pytest.raises(Forbidden):
        college_sec.create_organization(name="新支部", kind="teacher_branch",
                                        parent_id=org["c1"]["id"])
    assert org["admin"].get_member(new["id"])["branch_id"] == org["b1"]["id"]
    assert org["admin"].list_members(org_id=org["c2"]["id"])["total"] == 1
    for proxy in (rpc_as("auditor").organizations, secretary_of(org, rpc_as, "b1", "m1"),
                  rpc_as("member", sub=org["m1"]["id"]).organizations,
                  rpc_as("ops").organizations):
        with pytest.raises(Forbidden):
            proxy.rename_organization(org_id=org["b1"]["id"], name="改名")
        with pytest.raises(Forbidden):
            proxy.set_double_leader(member_id=org["m1"]["id"], double_leader=False)
    assert org["admin"].get_organization(org["b1"]["id"])["name"] == "教工一支部"


def test_concurrent_writes_to_one_aggregate_one_wins(org, rpc_as):
    admin = org["admin"]
    names = [f"新名字{i}" for i in range(6)]
    # one proxy per concurrent caller, as separate portal users would have
    proxies = {name: rpc_as("org_admin", sub=f"admin{i}").organizations
               for i, name in enumerate(names)}
    results = []
    version_before = admin.get_organization(org["b1"]["id"])["version"]

    def rename(name):
        try:
            proxies[name].rename_organization(org_id=org["b1"]["id"], name=name)
            results.append("ok")
        except Conflict:
            results.append("conflict")
        except ValidationError:
            results.append("validation")  # lost the race on the name claim index

    pool = eventlet.GreenPool()
    for name in names:
        pool.spawn(rename, name)
    pool.waitall()
    assert len(results) == len(names)
    assert results.count("ok") >= 1
    assert results.count("conflict") >= 1, results
    final = admin.get_organization(org["b1"]["id"])
    assert final["name"] in names and final["version"] == version_before + results.count("ok")


def test_double_leader_coverage(org, rpc_as):
    admin = org["admin"]
    admin.assign_role(org_id=org["b1"]["id"], member_id=org["m1"]["id"], role="secretary")
    admin.assign_role(org_id=org["b3"]["id"], member_id=org["m4"]["id"], role="secretary")
    cov = admin.double_leader_coverage()
    assert cov["school"] == {"teacher_branches": 2, "covered": 1, "coverage": 0.5}
    lacking = {c["college_name"]: c["lacking"] for c in cov["colleges"]}
    assert lacking["机电学院党总支"] == []
    assert [b["branch_name"] for b in lacking["数字学院党委"]] == ["教工一支部"]
    admin.set_double_leader(member_id=org["m4"]["id"], double_leader=True)
    assert admin.double_leader_coverage()["school"]["coverage"] == 1.0
    own = secretary_of(org, rpc_as, "c1", "m2").double_leader_coverage()
    assert [c["college_name"] for c in own["colleges"]] == ["机电学院党总支"]
    with pytest.raises(Forbidden):  # the real branch secretary: the role may not
        rpc_as("branch_secretary", sub=org["m1"]["id"],
               org=org["b1"]["id"]).organizations.double_leader_coverage()


def test_role_holdings_of_a_read_model_older_than_their_history_are_filled_at_start_up(
        org, rpc_as, start_service, clean_databases):
    """A deployment whose read model predates ``org_role_history``: at start-up
    today's holdings (``org_roles``) become open periods from their assignment,
    so coverage as of now answers what coverage answers today."""
    from tests.helpers import rows

    admin = org["admin"]
    b1, b3, m1, m4 = ids(org, "b1", "b3", "m1", "m4")
    admin.assign_role(org_id=b1, member_id=m1, role="secretary")
    admin.assign_role(org_id=b3, member_id=m4, role="secretary")
    db = clean_databases["organizations"]
    rows(db, "DELETE FROM org_role_history RETURNING 1")  # as before the table existed
    start_service("organizations")  # an instance starting runs the read models' DDL
    held = rows(db, "SELECT h.member_id, h.valid_from, h.valid_to, r.assigned_at "
                    "FROM org_role_history h JOIN org_roles r USING (org_id, member_id, role)")
    assert sorted(str(h["member_id"]) for h in held) == sorted([m1, m4])
    assert all(h["valid_from"] == h["assigned_at"] and h["valid_to"] is None for h in held)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    past = rpc_as("auditor").organizations.double_leader_coverage(as_of=now)
    assert past["school"] == admin.double_leader_coverage()["school"] == {
        "teacher_branches": 2, "covered": 1, "coverage": 0.5}


def test_double_leader_coverage_as_of_a_moment(org, rpc_as):
    """双带头人 coverage (R5) as of a moment: the teacher branches then, under their
    college then, the secretary (书记) each had then and whether that member was a
    双带头人 then — unchanged by a secretary replaced, a member becoming 双带头人
    and a branch dissolved since; role holdings rebuilt from zero say the same."""
    admin = org["admin"]
    c1, c2, b1, b3 = ids(org, "c1", "c2", "b1", "b3")
    m1, m2, m4 = ids(org, "m1", "m2", "m4")
    admin.assign_role(org_id=b1, member_id=m1, role="secretary")   # 张三, a 双带头人
    admin.assign_role(org_id=b3, member_id=m4, role="secretary")   # 赵六, not (yet)
    b4 = admin.create_organization(name="教工二支部", kind="teacher_branch", parent_id=c1)["id"]
    eventlet.sleep(0.01)
    t0 = dt.datetime.now(dt.timezone.utc).isoformat()
    eventlet.sleep(0.01)

    def lacking(cov):
        return {c["college_id"]: sorted((b["branch_id"], b["secretary_id"], b["why"][:4])
                                        for b in c["lacking"]) for c in cov["colleges"]}

    def figures(cov):
        return cov["school"], {c["college_id"]: (c["teacher_branches"], c["covered"],
                                                 c["coverage"]) for c in cov["colleges"]}

    then = {"teacher_branches": 3, "covered": 1, "coverage": 0.3333}
    then_colleges = {c1: (2, 1, 0.5), c2: (1, 0, 0.0)}
    then_lacking = {c1: [(b4, None, "没有书记")], c2: [(b3, m4, "书记不是")]}
    assert figures(admin.double_leader_coverage()) == (then, then_colleges)
    assert lacking(admin.double_leader_coverage()) == then_lacking
    # the changes: b1's secretary replaced by 李四 (not a 双带头人), 赵六 becomes a
    # 双带头人, the empty 教工二支部 dissolved
    admin.revoke_role(org_id=b1, member_id=m1, role="secretary", reason="换届")
    admin.assign_role(org_id=b1, member_id=m2, role="secretary", reason="换届")
    admin.set_double_leader(member_id=m4, double_leader=True)
    admin.dissolve_organization(org_id=b4, reason="撤并")
    eventlet.sleep(0.01)
    t1 = dt.datetime.now(dt.timezone.utc).isoformat()
    now = admin.double_leader_coverage()
    assert figures(now) == ({"teacher_branches": 2, "covered": 1, "coverage": 0.5},
                            {c1: (1, 0, 0.0), c2: (1, 1, 1.0)})
    assert lacking(now) == {c1: [(b1, m2, "书记不是")], c2: []}
    assert "as_of" not in now
    auditor = rpc_as("auditor").organizations
    past = auditor.double_leader_coverage(as_of=t0)
    assert figures(past) == (then, then_colleges) and lacking(past) == then_lacking
    assert past["as_of"] == dt.datetime.fromisoformat(t0).isoformat()
    assert [b["secretary_name"] for c in past["colleges"] for b in c["lacking"]
            if b["secretary_id"]] == ["赵六"]  # the secretary then, by name
    later = auditor.double_leader_coverage(as_of=t1)
    assert figures(later) == figures(now) and lacking(later) == lacking(now)
    # a date is the end of that day; before the university existed there is nothing
    today = auditor.double_leader_coverage(as_of=dt.datetime.now(dt.timezone.utc).date()
                                           .isoformat())
    assert figures(today) == figures(now)
    assert auditor.double_leader_coverage(as_of="2000-01-01")["school"] == {
        "teacher_branches": 0, "covered": 0, "coverage": 0.0}
    assert figures(auditor.double_leader_coverage(college_id=c2, as_of=t0)) == (
        {"teacher_branches": 1, "covered": 0, "coverage": 0.0}, {c2: (1, 0, 0.0)})
    with pytest.raises(ValidationError) as e:
        auditor.double_leader_coverage(as_of="yesterday")
    assert e.value.fields == ["as_of"]
    with pytest.raises(ValidationError) as e:
        auditor.double_leader_coverage(college_id="not-a-college", as_of=t0)
    assert e.value.fields == ["college_id"]
    # a college secretary: its own college then; another college is refused
    own = secretary_of(org, rpc_as, "c1", "m1")
    assert figures(own.double_leader_coverage(as_of=t0)) == (
        {"teacher_branches": 2, "covered": 1, "coverage": 0.5}, {c1: (2, 1, 0.5)})
    with pytest.raises(Forbidden):
        own.double_leader_coverage(college_id=c2, as_of=t0)
    with pytest.raises(Forbidden):
        rpc_as("member", sub=m1).organizations.double_leader_coverage(as_of=t0)
    # the role holdings are a read model: rebuilt from zero, row for row the same
    rebuilt = rpc_as("ops").organizations.rebuild_read_models()
    assert rebuilt["identical"] is True, rebuilt["tables"]
    assert auditor.double_leader_coverage(as_of=t0) == past


def test_departments_and_rebuild(org, rpc_as):
    admin = org["admin"]
    assert admin.list_departments()[0]["code"] == "all_colleges"  # none before the set-up
    admin.install_default_departments()
    departments = admin.list_departments()
    assert len(departments) == 16 and departments[0]["name"] == "组织部"
    assert set(departments[-1]["means"]) == set(ids(org, "c1", "c2"))
    before = admin.get_tree()
    with pytest.raises(Forbidden):
        rpc_as("auditor").organizations.rebuild_read_models()
    replayed = rpc_as("ops").organizations.rebuild_read_models()["replayed_events"]
    assert replayed >= 16
    assert admin.get_tree() == before


def test_a_branch_being_dissolved_cannot_take_a_member_at_the_same_moment(org, rpc_as):
    admin = org["admin"]
    registrar = rpc_as("org_admin", sub="registrar").organizations
    dissolver = rpc_as("org_admin", sub="dissolver").organizations
    for round_ in range(4):
        branch = admin.create_organization(name=f"临时支部{round_}", kind="student_branch",
                                           parent_id=org["c1"]["id"])
        outcomes = {}

        def register():
            try:
                registrar.register_member(name=f"新党员{round_}", branch_id=branch["id"],
                                          category="student", status="probationary",
                                          joined_on="2026-05-01")
                outcomes["register"] = "ok"
            except (Conflict, ValidationError) as exc:
                outcomes["register"] = type(exc).__name__

        def dissolve():
            try:
                dissolver.dissolve_organization(org_id=branch["id"], reason="撤销")
                outcomes["dissolve"] = "ok"
            except (Conflict, ValidationError) as exc:
                outcomes["dissolve"] = type(exc).__name__

        threads = [eventlet.spawn(register), eventlet.spawn(dissolve)]
        for t in threads:
            t.wait()
        assert list(outcomes.values()).count("ok") == 1, outcomes
        final = admin.get_organization(branch["id"])
        assert (final["status"] == "dissolved") == (outcomes["dissolve"] == "ok")
        assert final["member_count"] == (1 if outcomes["register"] == "ok" else 0)


def test_only_one_university_committee_even_at_the_same_moment(start_service, rpc_as):
    start_service("organizations")
    proxies = [rpc_as("org_admin", sub=f"a{i}").organizations for i in range(3)]
    outcomes = []

    def create(i):
        try:
            proxies[i].create_organization(name=f"党委{i}", kind="committee")
            outcomes.append("ok")
        except (Conflict, ValidationError) as exc:
            outcomes.append(type(exc).__name__)

    pool = eventlet.GreenPool()
    for i in range(3):
        pool.spawn(create, i)
    pool.waitall()
    assert outcomes.count("ok") == 1, outcomes
    assert len(proxies[0].get_tree()) == 1


def test_auditors_read_the_full_history_with_actor_and_reason(org, rpc_as):
    college_sec = secretary_of(org, rpc_as, "c1", "m1")
    college_sec.transfer_member(member_id=org["m2"]["id"], to_branch_id=org["b2"]["id"],
                                effective_on="2026-09-01", reason="工作调动")
    auditor = rpc_as("auditor", sub="jiwei").organizations
    history = auditor.get_history(org["m2"]["id"])
    assert [h["type"] for h in history] == ["member_registered", "member_transferred"]
    transfer = history[1]
    assert transfer["actor"] == {"sub": org["m1"]["id"], "role": "college_secretary",
                                 "org": org["c1"]["id"]}
    assert transfer["reason"] == "工作调动" and transfer["originator_version"] == 2
    assert transfer["data"]["from_branch_id"] == org["b1"]["id"]
    assert history[0]["actor"]["sub"] == "zuzhibu"
    branch_types = [h["type"] for h in auditor.get_history(org["b1"]["id"])]
    assert branch_types[0] == "organization_created"
    assert branch_types[-1] == "organization_member_released"
    with pytest.raises(NotFound):
        auditor.get_history(str(uuid.uuid4()))
    with pytest.raises(Forbidden):
        college_sec.get_history(org["m2"]["id"])


def test_read_events_pages_through_the_log_in_order(org, rpc_as):
    ops = rpc_as("ops").organizations
    first = ops.read_events(after_position=0, limit=5)
    rest = ops.read_events(after_position=first[-1]["position"], limit=5000)
    positions = [e["position"] for e in first + rest]
    assert positions == sorted(positions) and len(first) == 5
    assert first[0]["type"] == "organization_created" and first[0]["source"] == "organizations"
    with pytest.raises(ValidationError) as e:
        ops.read_events(after_position=-1, limit=0)
    assert set(e.value.fields) == {"after_position", "limit"}
    with pytest.raises(Forbidden):
        secretary_of(org, rpc_as, "c1", "m2").read_events()
    member = ops.read_aggregate_events(aggregate_id=org["m1"]["id"], after_version=0)
    assert [(e["type"], e["originator_version"]) for e in member] == [("member_registered", 1)]
    assert ops.read_aggregate_events(aggregate_id=org["m1"]["id"], after_version=1) == []
    with pytest.raises(ValidationError) as e:
        ops.read_aggregate_events(aggregate_id="nope", after_version=-2)
    assert set(e.value.fields) == {"aggregate_id", "after_version"}


# -- a secretary's authority comes from the records (任职记录) ------------------------
def test_a_secretary_token_is_honoured_only_while_the_records_show_that_office(org, rpc_as):
    admin = org["admin"]
    b1, c1 = org["b1"]["id"], org["c1"]["id"]
    admin.assign_role(org_id=b1, member_id=org["m1"]["id"], role="secretary")
    admin.assign_role(org_id=b1, member_id=org["m2"]["id"], role="deputy_secretary")

    def branch_sec(member_key, scope=b1, role="branch_secretary"):
        return rpc_as(role, sub=org[member_key]["id"], org=scope).organizations

    assert branch_sec("m1").list_members(org_id=b1)["total"] == 2
    # 李四 is not 一支部's secretary (张三 is): a correctly signed token is not enough
    for proxy in (branch_sec("m2"),                       # the deputy (副书记) does not count
                  rpc_as("branch_secretary", sub="zhang", org=b1).organizations,  # not a member id
                  branch_sec("m1", scope=org["b2"]["id"]),  # another branch
                  branch_sec("m1", scope=c1, role="college_secretary"),  # 张三 is no college secretary
                  branch_sec("m1", scope=c1)):             # a branch secretary naming a college
        with pytest.raises(Forbidden):
            proxy.list_members(org_id=b1)
    # the college's secretary is someone else: 张三's token for the college is refused,
    # for reads and for changes alike, and nothing changes
    admin.assign_role(org_id=c1, member_id=org["m2"]["id"], role="secretary")
    impostor = branch_sec("m1", scope=c1, role="college_secretary")
    with pytest.raises(Forbidden):
        impostor.register_member(name="孙八", branch_id=b1, category="teacher", status="full",
                                 joined_on="2010-01-01")
    assert admin.list_members(org_id=b1)["total"] == 2
    college_sec = branch_sec("m2", scope=c1, role="college_secretary")
    assert college_sec.list_members(org_id=b1)["total"] == 2
    # revoked: the same token is refused at once
    admin.revoke_role(org_id=b1, member_id=org["m1"]["id"], role="secretary", reason="换届")
    with pytest.raises(Forbidden):
        branch_sec("m1").list_members(org_id=b1)
    # assigned: the new secretary's token is honoured
    admin.assign_role(org_id=b1, member_id=org["m2"]["id"], role="secretary", reason="换届")
    assert branch_sec("m2").list_members(org_id=b1)["total"] == 2
    # transferred away: the transfer revokes the branch's roles, and the token with them
    college_sec.transfer_member(member_id=org["m2"]["id"], to_branch_id=org["b2"]["id"],
                                effective_on="2026-09-01")
    with pytest.raises(Forbidden):
        branch_sec("m2").list_members(org_id=b1)
