"""The sheets organizations imports (导入模板): columns by Chinese header, pure.

* ``org_tree`` (组织架构): colleges and branches with their kinds, keyed by
  name under their parent;
* ``members`` (党员名册): members with their branch, category and dates, keyed
  by 工号/学号 (staff or student number);
* ``roles`` (党组织职务): who holds which role where, keyed by organisation,
  member and role;
* ``meetings`` (三会一课/主题党日记录): a branch's meetings with who attended,
  keyed by branch, kind, date and topic;
* ``appraisals`` (民主评议党员结果): each member's 民主评议 grade of a year,
  keyed by member and year.
"""
from __future__ import annotations

import datetime as dt

import re

from shared.spreadsheets import CellError, Column, choice, date, text, yes_no
from services.organizations.domain import (E_BRANCH_BASES, MAX_NAME, MEMBER_CATEGORIES,
                                           MEMBER_STATUSES, ORG_KINDS, ORG_ROLES)
from services.organizations.records.domain import (APPRAISAL_GRADES, MAX_TEXT, MEETING_KINDS,
                                                   THEME_DAY_FORMS, UNQUALIFIED_HANDLING)

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

MAX_LISTED = 2000  # members listed in one meeting's cell (as the record command allows)
_LIST_SEPARATORS = re.compile(r"[、，,;；\s]+")
_NOTE_SEPARATOR = re.compile(r"[:：]")


def staff_numbers(value) -> list[str]:
    """工号/学号 separated by 、 , ; or spaces, each at most MAX_STAFF_NO long."""
    numbers = [n for n in _LIST_SEPARATORS.split(text(MAX_LISTED * (MAX_STAFF_NO + 1))(value)) if n]
    if len(numbers) > MAX_LISTED:
        raise CellError(f"more than {MAX_LISTED} members listed")
    for n in numbers:
        if len(n) > MAX_STAFF_NO:
            raise CellError(f"'{n[:20]}…' is longer than {MAX_STAFF_NO} characters")
    return numbers


def leave_entries(value) -> list[tuple[str, str]]:
    """请假: ``工号:事由`` entries separated by ; or new lines (a 请假 needs its reason)."""
    entries = []
    for part in re.split(r"[;；\n]+", str(value)):
        if not part.strip():
            continue
        pieces = _NOTE_SEPARATOR.split(part, maxsplit=1)
        number = " ".join(pieces[0].split())
        note = " ".join(pieces[1].split()) if len(pieces) > 1 else ""
        if not number or not note:
            raise CellError(f"'{part.strip()[:30]}': 工号:事由 (each 请假 with its reason)")
        if len(number) > MAX_STAFF_NO:
            raise CellError(f"'{number[:20]}…' is longer than {MAX_STAFF_NO} characters")
        if len(note) > MAX_TEXT:
            raise CellError(f"a reason longer than {MAX_TEXT} characters ({len(note)})")
        entries.append((number, note))
    if len(entries) > MAX_LISTED:
        raise CellError(f"more than {MAX_LISTED} members listed")
    return entries


MEETINGS = [
    Column("college", "所属学院", text(MAX_NAME), example="机电学院党总支", width=26,
           aliases=("学院", "所属二级学院党组织")),
    Column("branch", "所在支部", text(MAX_NAME), example="机电学院教工第一党支部", width=30,
           aliases=("支部", "党支部")),
    Column("kind", "会议类型", choice(MEETING_KINDS), example="支部党员大会",
           note="、".join(MEETING_KINDS.values())),
    Column("held_on", "日期", date(), example=dt.date(2025, 3, 12), aliases=("会议日期",)),
    Column("topic", "主题", text(MAX_TEXT), example="学习贯彻党的二十届三中全会精神", width=40,
           aliases=("会议主题",), note=f"at most {MAX_TEXT} characters"),
    Column("form", "主题党日形式", choice(THEME_DAY_FORMS), required=False,
           example=None, width=22, note="主题党日 only: " + "、".join(THEME_DAY_FORMS.values())),
    Column("attendees", "出席人员", staff_numbers, example="T2010001、T2010002", width=40,
           note="工号/学号, separated by 、 , ; or spaces"),
    Column("leave", "请假人员", leave_entries, required=False, example="T2010003:出差",
           width=30, note="工号:事由, separated by ; (each 请假 with its reason)"),
    Column("absent", "缺席人员", staff_numbers, required=False, example=None, width=24,
           note="工号/学号, separated by 、 , ; or spaces"),
]

APPRAISALS = [
    Column("staff_no", "工号/学号", text(MAX_STAFF_NO), example="T2010001",
           aliases=("工号", "学号")),
    Column("name", "姓名", text(MAX_NAME), example="张三"),
    Column("on", "评议日期", date(), example=dt.date(2025, 1, 10),
           note="the date of the 民主评议; one result per member a year"),
    Column("grade", "评议等次", choice(APPRAISAL_GRADES), example="优秀",
           aliases=("等次", "评议结果"), note="、".join(APPRAISAL_GRADES.values())),
    Column("handling", "不合格处置", choice(UNQUALIFIED_HANDLING), required=False,
           width=20, note="不合格 only: " + "、".join(UNQUALIFIED_HANDLING.values())),
]

SHEETS = {
    "org_tree": ("组织架构", ORG_TREE),
    "members": ("党员名册", MEMBERS),
    "roles": ("党组织职务", ROLES),
    "meetings": ("三会一课", MEETINGS),
    "appraisals": ("民主评议", APPRAISALS),
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
    "meetings": {"kind": "会议类型", "held_on": "日期", "topic": "主题", "form": "主题党日形式",
                 "attendees": "出席人员", "absentees": "请假人员", "branch_id": "所在支部"},
    "appraisals": {"on": "评议日期", "details.grade": "评议等次", "details.handling": "不合格处置",
                   "member_id": "工号/学号", "kind": "评议等次"},
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
    "meetings": ["三会一课/主题党日记录导入 meeting import: one row per meeting, keyed by 支部, "
                 "会议类型, 日期 and 主题.",
                 "出席人员/请假人员/缺席人员 by 工号/学号; each must have been a member of the "
                 "branch on the date.",
                 "A meeting already recorded by hand is a row error (correct it there); one "
                 "imported before is left as it is. Dates as YYYY-MM-DD; none in the future."],
    "appraisals": ["民主评议党员结果导入 appraisal import: one row per member and year, keyed by "
                   "工号/学号 and the year of 评议日期.",
                   "不合格处置 only for 不合格: 限期改正、劝其退党、除名.",
                   "A result of that year already recorded by hand is a row error; one imported "
                   "before is left as it is."],
}
