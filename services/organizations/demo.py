"""A demo university shaped like the seed (宁波职业技术学院's 三级联创 opinions):
the committee, six college Party organisations, teacher, student and 师生网络e支部
branches, a few hundred members with their roles.

Loaded through the organizations RPC as an org_admin, with ids derived from
names, so running it again changes nothing.
"""
from __future__ import annotations

import datetime as dt
import random

from shared.errors import NotFound

from services.organizations.application import demo_id


UNIVERSITY = "中共宁波职业技术学院委员会"
COLLEGES = [
    ("机电工程学院党总支", "general_branch"),
    ("电子信息工程学院党总支", "general_branch"),
    ("化学工程学院党总支", "general_branch"),
    ("数字科技学院党委", "college_committee"),
    ("国际商贸学院党总支", "general_branch"),
    ("马克思主义学院党总支", "general_branch"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建文斌宇浩凯晨欣怡婷雪琳雯博涵睿"


def plan(seed: int = 20200612):
    """The demo as data: organisations, then members, then roles."""
    rng = random.Random(seed)
    orgs, members, roles = [], [], []
    committee = demo_id("org", UNIVERSITY)
    orgs.append(dict(org_id=committee, name=UNIVERSITY, kind="committee"))
    used_names = set()

    def person():
        while True:
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < .6 else "")
            if name not in used_names:
                used_names.add(name)
                return name

    def add_members(branch_id, branch_name, category, count):
        ids = []
        for i in range(count):
            member_id = demo_id("member", branch_name, i)
            joined = dt.date(2026 - rng.randint(0, 20) if category != "student" else 2026 - rng.randint(0, 2),
                             rng.randint(1, 12), rng.randint(1, 28))
            probationary = category == "student" and rng.random() < .35
            members.append(dict(
                member_id=member_id, name=person(), branch_id=branch_id, category=category,
                status="probationary" if probationary else "full", joined_on=joined.isoformat(),
                staff_no=f"{'T' if category != 'student' else 'S'}{rng.randint(100000, 999999)}"))
            ids.append(member_id)
        return ids

    first_teacher = None
    for c_index, (college_name, kind) in enumerate(COLLEGES):
        college = demo_id("org", college_name)
        orgs.append(dict(org_id=college, name=college_name, kind=kind, parent_id=committee))
        short = college_name.replace("党总支", "").replace("党委", "")
        branches = [(f"{short}教工第一党支部", "teacher_branch", None, "teacher", 10),
                    (f"{short}教工第二党支部", "teacher_branch", None, "teacher", 9),
                    (f"{short}学生第一党支部", "student_branch", None, "student", 14),
                    (f"{short}学生第二党支部", "student_branch", None, "student", 12)]
        if c_index % 2 == 0:
            branches.append((f"{short}专业群师生网络e支部", "network_e_branch", "specialty_cluster",
                             "teacher", 6))
        if c_index == 3:
            branches.append((f"{short}学生公寓网络e支部", "network_e_branch", "student_apartment",
                             "student", 8))
        college_teachers = []
        for b_name, b_kind, basis, category, count in branches:
            branch = demo_id("org", b_name)
            orgs.append(dict(org_id=branch, name=b_name, kind=b_kind, parent_id=college, basis=basis))
            ids = add_members(branch, b_name, category, count)
            # 双带头人: most teacher-branch secretaries are also academic leaders.
            if b_kind == "teacher_branch":
                double = not (c_index in (2, 4) and b_name.endswith("第二党支部"))
                members[-count]["double_leader"] = double
                college_teachers.extend(ids)
            roles.append(dict(org_id=branch, member_id=ids[0], role="secretary"))
            roles.append(dict(org_id=branch, member_id=ids[1], role="committee_member"))
            if count >= 10:
                roles.append(dict(org_id=branch, member_id=ids[2], role="deputy_secretary"))
        roles.append(dict(org_id=college, member_id=college_teachers[3], role="secretary"))
        roles.append(dict(org_id=college, member_id=college_teachers[4], role="organiser"))
        first_teacher = first_teacher or college_teachers[5]
    roles.append(dict(org_id=committee, member_id=first_teacher, role="secretary"))
    return orgs, members, roles


def load(rpc) -> dict:
    """Load the plan through ``rpc.organizations`` (an org_admin proxy); idempotent."""
    orgs, members, roles = plan()
    created = {"organizations": 0, "members": 0, "roles": 0}
    # the default set-up: the seed's 15 functional departments (职能部门), once
    created["departments"] = len(rpc.organizations.install_default_departments()["added"])
    existing_orgs = set()

    def walk(nodes):
        for node in nodes:
            existing_orgs.add(node["id"])
            walk(node["children"])

    walk(rpc.organizations.get_tree(include_closed=True))
    for org in orgs:
        if str(org["org_id"]) in existing_orgs:
            continue
        rpc.organizations.create_organization(
            **{k: str(v) if k in ("org_id", "parent_id") else v for k, v in org.items()},
            reason="演示数据 demo data")
        created["organizations"] += 1
    for member in members:
        try:
            rpc.organizations.get_member(str(member["member_id"]))
            continue
        except NotFound:
            pass
        rpc.organizations.register_member(
            **{k: str(v) if k in ("member_id", "branch_id") else v for k, v in member.items()},
            reason="演示数据 demo data")
        created["members"] += 1
    for role in roles:
        officers = rpc.organizations.get_organization(str(role["org_id"]))["officers"]
        if any(o["member_id"] == str(role["member_id"]) and o["role"] == role["role"]
               for o in officers):
            continue
        rpc.organizations.assign_role(org_id=str(role["org_id"]),
                                      member_id=str(role["member_id"]), role=role["role"])
        created["roles"] += 1
    return created
