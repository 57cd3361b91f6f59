"""The sheets organizations imports (导入模板): columns by Chinese header, pure.

* ``org_tree`` (组织架构): colleges and branches with their kinds, keyed by
  name under their parent;
* ``members`` (党员名册): members with their branch, category and dates, keyed
  by 工号/学号 (staff or student number);
* ``roles`` (党组织职务): who holds which role where, keyed by organisation,
  member and role.
"""
from __future__ import annotations

import datetime as dt

from shared.spreadsheets import Column, choice, date, text, yes_no
from services.organizations.domain import (E_BRANCH_BASES, MAX_NAME, MEMBER_CATEGORIES,
                                           MEMBER_STATUSES, ORG_KINDS, ORG_ROLES)

KIND_LABELS = {code: zh for code, (_level, zh) in ORG_KINDS.items()}
MAX_STAFF_NO = 40

ORG_TREE = [
    Column("name", "组织名称", text(MAX_NAME), example="机电学院党总支", width=30),
    Column("kind", "组织类型", choice(KIND_LABELS), example="党总支",
           note="学校党委、党总支、二级学院党委、教师党支部、学生党支部、师生网络e支部"),
    Column("parent", "上级组织", text(MAX_NAME), required=False, example="学校党委", width=30,
           note="学校党委 has none; a college's is 学校党委; a branch's is its college"),
    Column("basis", "网络e支部依托", choice(E_BRANCH_BASES), required=False,
           note="师生网络e支部 only: " + "、".join(E_BRANCH_BASES.values())),
]

MEMBERS = [
    Column("name", "姓名", text(MAX_NAME), example="张三"),
    Column("staff_no", "工号/学号", text(MAX_STAFF_NO), example="T2010001",
           aliases=("工号", "学号"), note="the key: a row with a known number updates that member"),
    Column("college", "所属学院", text(MAX_NAME), example="机电学院党总支", width=26,
           aliases=("学院", "所属二级学院党组织")),
    Column("branch", "所在支部", text(MAX_NAME), example="机电学院教工第一党支部", width=30,
           aliases=("支部", "所在党支部")),
    Column("category", "人员类别", choice(MEMBER_CATEGORIES), example="教师",
           note="教师、学生、职工"),
    Column("status", "党员状态", choice(MEMBER_STATUSES), example="正式党员",
           note="正式党员、预备党员"),
    Column("joined_on", "入党日期", date(), example=dt.date(2010, 7, 1)),
    Column("full_on", "转正日期", date(), required=False, example=dt.date(2011, 7, 1)),
    Column("double_leader", "双带头人", yes_no, required=False, example="否"),
    Column("effective_on", "变动生效日期", date(), required=False,
           note="for a known member whose branch, category or status changes: when it took "
                "effect (default: the import date)"),
]

ROLES = [
    Column("org", "组织名称", text(MAX_NAME), example="机电学院教工第一党支部", width=30),
    Column("parent", "上级组织", text(MAX_NAME), required=False, example="机电学院党总支",
           width=26, note="empty for 学校党委"),
    Column("staff_no", "工号/学号", text(MAX_STAFF_NO), example="T2010001",
           aliases=("工号", "学号")),
    Column("name", "姓名", text(MAX_NAME), example="张三"),
    Column("role", "职务", choice(ORG_ROLES), example="书记",
           note="书记、副书记、委员、专职组织员"),
]

SHEETS = {
    "org_tree": ("组织架构", ORG_TREE),
    "members": ("党员名册", MEMBERS),
    "roles": ("党组织职务", ROLES),
}

# Domain fields (as ValidationErrors name them) -> the column to report.
FIELD_COLUMNS = {
    "org_tree": {"name": "组织名称", "kind": "组织类型", "parent_id": "上级组织",
                 "basis": "网络e支部依托", "org_id": "组织名称"},
    "members": {"name": "姓名", "branch_id": "所在支部", "to_branch_id": "所在支部",
                "category": "人员类别", "status": "党员状态", "joined_on": "入党日期",
                "full_on": "转正日期", "double_leader": "双带头人",
                "effective_on": "变动生效日期", "member_id": "工号/学号"},
    "roles": {"role": "职务", "member_id": "工号/学号", "org_id": "组织名称"},
}
FIELD_KEYS = {kind: {header: key for key, header in [(c.key, c.header) for c in SHEETS[kind][1]]}
              for kind in SHEETS}


def field_values(kind: str, values: dict) -> dict:
    """A row's values under the domain's field names (for reporting)."""
    keys = FIELD_KEYS[kind]
    return {field: values.get(keys.get(header)) for field, header in FIELD_COLUMNS[kind].items()}


NOTES = {
    "org_tree": ["组织架构导入 org tree import: one row per organisation.",
                 "Rows are keyed by 组织名称 under 上级组织: a known organisation is left as it is.",
                 "A college's 上级组织 is the university committee; a branch's is its college."],
    "members": ["党员名册导入 member roster import: one row per member, keyed by 工号/学号.",
                "A known number updates that member (branch → transfer, category, 转正, 双带头人) "
                "effective at 变动生效日期; an unknown one registers a new member.",
                "Dates as YYYY-MM-DD (or date cells); none in the future."],
    "roles": ["党组织职务导入 role import: one row per role held, keyed by organisation, member, role.",
              "The member must exist (工号/学号) and belong to the organisation."],
}
