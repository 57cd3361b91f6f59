"""Organizations imports (批量导入) on the real database: preview reports every bad
row and writes nothing, apply is all-or-nothing and keyed, every event names
its import and row; scope per role; templates and the history export; one
round trip over RPC with the file as base64."""
import base64
import datetime as dt
from uuid import UUID

import pytest

from services.organizations.application import OrganizationsApplication
from shared.errors import Forbidden, ValidationError
from shared.identity import Caller
from shared.imports import Import
from shared.spreadsheets import Table, encode_file, read_back, write_tables

ADMIN = Caller("zzb", "org_admin")
TREE_HEADERS = ["组织名称", "组织类型", "上级组织", "网络e支部依托"]
MEMBER_HEADERS = ["姓名", "工号/学号", "所属学院", "所在支部", "人员类别", "党员状态", "入党日期",
                  "转正日期", "双带头人"]
TREE = [["机电学院教工第一党支部", "教师党支部", "机电学院党总支", None],
        ["学校党委", "学校党委", None, None],
        ["机电学院党总支", "党总支", "学校党委", None],
        ["机电学院学生党支部", "学生党支部", "机电学院党总支", None],
        ["信息学院党委", "二级学院党委", "学校党委", None],
        ["信息学院e支部", "师生网络e支部", "信息学院党委", "创新团队"]]
GOOD_MEMBERS = [
    ["张三", "T001", "机电学院党总支", "机电学院教工第一党支部", "教师", "正式党员",
     dt.date(2010, 7, 1), None, "是"],
    ["李四", "S001", "机电学院党总支", "机电学院学生党支部", "学生", "预备党员", "2025-07-01",
     None, None],
    ["王五", "T002", "信息学院党委", "信息学院e支部", "职工", "正式党员", "2001/06/30",
     "2002-06-30", "否"],
]


def xlsx(headers, rows, title="Sheet", preamble=()) -> bytes:
    return write_tables([Table(title, headers, rows, title=[line[0] for line in preamble])])


def payload(kind, data, name="file.xlsx"):
    return {"kind": kind, "file_name": name, "content": encode_file(data)}


@pytest.fixture
def app(clean_databases):
    app = OrganizationsApplication(clean_databases["organizations"])
    yield app
    app.close()


def event_count(app) -> int:
    return app.recorder.max_notification_id() or 0


def load_tree(app) -> dict:
    out = app.imports.apply(ADMIN, payload("org_tree", xlsx(TREE_HEADERS, TREE), "tree.xlsx"))
    assert out["applied"] and out["created"] == {"学校党委": 1, "党总支": 1, "教师党支部": 1,
                                                 "学生党支部": 1, "二级学院党委": 1,
                                                 "师生网络e支部": 1}
    return {r["name"]: r for r in app.query("SELECT * FROM org_view")}


def test_bad_rows_each_reported_and_nothing_written(app):
    load_tree(app)
    before = event_count(app)
    bad = xlsx(MEMBER_HEADERS, GOOD_MEMBERS + [
        ["赵六", "T003", None, "机电学院学生党支部", "学生", "预备党员", "2025-07-01", None, None],
        ["钱七", "T004", "机电学院党总支", "不存在的支部", "教师", "正式党员", "2010-07-01", None,
         None],
        ["张三", "T001", "机电学院党总支", "机电学院教工第一党支部", "教师", "正式党员",
         "2010-07-01", None, None],
        ["孙八", "T005", "机电学院党总支", "机电学院学生党支部", "学生", "预备党员", "01.07.2025",
         None, None],
        ["周" * 101, "T006", "机电学院党总支", "机电学院学生党支部", "学生", "预备党员",
         "2025-07-01", None, None],
        ["吴九", "T007", "机电学院党总支", "机电学院学生党支部", "学生", "预备党员",
         (dt.date.today() + dt.timedelta(days=3)).isoformat(), None, None],
        ["郑十", "T008", "机电学院党总支", "机电学院学生党支部", "学生", "预备党员", "2025-07-01",
         "2025-08-01", None],
        ["冯十一", "T009", "机电学院党总支", "机电学院学生党支部", "学生", "党员", "2025-07-01",
         None, None],
    ])
    preview = app.imports.preview(ADMIN, payload("members", bad))
    got = [(e["row"], e["column"], e["why"]) for e in preview["errors"]]
    assert got == [
        (5, "所属学院", "required (必填)"),
        (6, "所在支部", "unknown branch (支部不存在) in 机电学院党总支"),
        (7, "工号/学号", "duplicate 工号/学号 in the file (also row 2)"),
        (8, "入党日期", "not a date (YYYY-MM-DD)"),
        (9, "姓名", "longer than 100 characters (101)"),
        (10, "入党日期", "a date in the future"),
        (11, "转正日期", "a probationary member (预备党员) has no full date"),
        (12, "党员状态", "not one of 预备党员, 正式党员"),
    ]
    assert preview["errors"][3] == {"sheet": "Sheet", "row": 8, "column": "入党日期",
                                    "value": "01.07.2025", "why": "not a date (YYYY-MM-DD)"}
    assert not preview["valid"] and preview["rows"] == 11
    assert preview["created"] == {"党员 member": 3}  # what the valid rows would create
    with pytest.raises(ValidationError) as exc:
        app.imports.apply(ADMIN, payload("members", bad))
    assert len(exc.value.errors) == 8 and exc.value.errors[0]["field"] == "Sheet!5 所属学院"
    assert event_count(app) == before
    assert app.query("SELECT count(*) AS n FROM member_view")[0]["n"] == 0


def test_a_valid_file_applied_twice_creates_each_record_once(app):
    orgs = load_tree(app)
    data = xlsx(MEMBER_HEADERS, GOOD_MEMBERS, "党员名册", preamble=[["2026年党员花名册"]])
    preview = app.imports.preview(ADMIN, payload("members", data, "roster.xlsx"))
    assert preview["valid"] and preview["created"] == {"党员 member": 3}
    assert app.query("SELECT count(*) AS n FROM member_view")[0]["n"] == 0  # preview wrote nothing
    first = app.imports.apply(ADMIN, payload("members", data, "roster.xlsx"))
    assert first["applied"] and first["created"] == {"党员 member": 3}
    again = app.imports.apply(ADMIN, payload("members", data, "roster.xlsx"))
    assert not again["applied"] and again["already_applied"]["import_id"] == first["import_id"]
    # another file repeating the rows (in another order, one changed, one new) is keyed by 工号
    moved = [list(r) for r in reversed(GOOD_MEMBERS)]
    moved[1][3] = "机电学院教工第一党支部"  # 李四 moves branch
    moved.append(["陈一", "S002", "机电学院党总支", "机电学院学生党支部", "学生", "正式党员",
                  "2024-05-04", None, None])
    second = app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, moved)))
    assert second["created"] == {"党员 member": 1} and second["changed"] == {"转接 transfer": 1}
    assert second["unchanged"] == 2
    members = app.query("SELECT name, staff_no, branch_id, double_leader FROM member_view "
                        "ORDER BY staff_no")
    assert [m["staff_no"] for m in members] == ["S001", "S002", "T001", "T002"]
    assert members[0]["branch_id"] == orgs["机电学院教工第一党支部"]["id"]
    assert members[2]["double_leader"] is True
    # every event names its import and source row; the import is one recorded operation
    registered = [app.history(m["id"], "member")[0] for m in app.query(
        "SELECT id FROM member_view WHERE staff_no = 'T002'")]
    assert registered[0]["reason"] == (f"导入 import {first['import_id']} «roster.xlsx» 第5行 row 5")  # below a title line
    assert registered[0]["actor"] == {"sub": "zzb", "role": "org_admin"}
    record = app.repository.get(Import.id_for("organizations", "members", first["sha256"]))
    assert (record.file_name, record.rows, record.actor["sub"]) == ("roster.xlsx", 3, "zzb")
    envelope = app.history(record.id, "import")[0]
    assert envelope["type"] == "import_applied" and envelope["data"]["sha256"] == first["sha256"]
    registrations = [n.originator_id for n in app.recorder.select_notifications(1, 10_000)
                     if n.topic.endswith("Member.Registered")]
    assert len(registrations) == len(set(registrations)) == 4


def test_roles_import_and_the_college_scope(app):
    orgs = load_tree(app)
    app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS)))
    college = str(orgs["机电学院党总支"]["id"])
    secretary = Caller("wang", "college_secretary", college)
    with pytest.raises(Forbidden):
        app.imports.preview(secretary, payload("org_tree", xlsx(TREE_HEADERS, TREE)))
    roles = xlsx(["组织名称", "上级组织", "工号/学号", "姓名", "职务"], [
        ["机电学院教工第一党支部", "机电学院党总支", "T001", "张三", "书记"],
        ["机电学院党总支", "学校党委", "T001", "张三", "委员"],
        ["信息学院e支部", "信息学院党委", "T002", "王五", "书记"],
        ["机电学院学生党支部", "机电学院党总支", "T999", "无名", "委员"],
        ["机电学院学生党支部", "机电学院党总支", "T001", "张三", "委员"],
    ])
    preview = app.imports.preview(secretary, payload("roles", roles))
    assert [(e["row"], e["column"], e["why"][:25]) for e in preview["errors"]] == [
        (4, "组织名称", "outside your college: a c"),
        (5, "工号/学号", "unknown member (党员不存在)"),
        (6, "工号/学号", "张三 is not a member of '机电"),
    ]
    assert preview["created"] == {"职务 role": 2}
    ok = xlsx(["组织名称", "上级组织", "工号/学号", "姓名", "职务"], [
        ["机电学院教工第一党支部", "机电学院党总支", "T001", "张三", "书记"],
        ["机电学院党总支", "学校党委", "T001", "张三", "委员"]])
    assert app.imports.apply(secretary, payload("roles", ok))["created"] == {"职务 role": 2}
    again = app.imports.preview(secretary, payload("roles", ok, "again.xlsx"))
    assert again["unchanged"] == 2 and again["created"] == {}
    outside = xlsx(MEMBER_HEADERS, [["何二", "T010", "信息学院党委", "信息学院e支部", "教师",
                                     "正式党员", "2010-07-01", None, None]])
    errors = app.imports.preview(secretary, payload("members", outside))["errors"]
    assert errors[0]["column"] == "所属学院" and errors[0]["why"].startswith("outside your college")
    with pytest.raises(Forbidden):
        app.imports.preview(Caller("li", "branch_secretary", college), payload("members", outside))


def test_limits_malformed_files_templates_and_the_history_export(app):
    load_tree(app)
    with pytest.raises(ValidationError) as exc:
        app.imports.preview(ADMIN, {"kind": "members", "file_name": "x.xlsx",
                                    "content": "A" * (30 * 1024 * 1024)})
    assert exc.value.fields == ["content"] and "limit of 20971520 bytes" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        app.imports.preview(ADMIN, payload("members", b"name,number\n"))
    assert "not an .xlsx file" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        app.imports.preview(ADMIN, payload("members", xlsx(["姓名", "工号/学号"], [["a", "b"]])))
    assert "missing column(s) 所属学院、所在支部" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        app.imports.preview(ADMIN, payload("payroll", xlsx(["a"], [])))
    assert exc.value.fields == ["kind"]
    # a formula is read as the value Excel computed; one never computed reads as empty
    formula = xlsx(MEMBER_HEADERS, [["=\"张\"&\"三\"", "T001", "机电学院党总支",
                                     "机电学院教工第一党支部", "教师", "正式党员", "2010-07-01",
                                     None, None]])
    errors = app.imports.preview(ADMIN, payload("members", formula))["errors"]
    assert [(e["column"], e["why"]) for e in errors] == [("姓名", "required (必填)")]

    template = app.imports.template(ADMIN, "members")
    sheet = read_back(base64.b64decode(template["content"]))
    assert sheet[0] == MEMBER_HEADERS + ["变动生效日期"]
    assert sheet[1][:2] == ["张三", "T2010001"]

    member = app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS[:1])))
    member_id = app.query("SELECT id FROM member_view")[0]["id"]
    with pytest.raises(Forbidden):
        app.imports.export_history(Caller("x", "branch_secretary", "b"), member_id)
    exported = app.imports.export_history(Caller("jw", "auditor"), member_id)
    sheet = read_back(base64.b64decode(exported["content"]))
    history = app.get_history(Caller("jw", "auditor"), member_id)
    body = sheet[3:]
    assert [(r[0], r[1], r[2], r[4], r[6]) for r in body] == [
        (h["originator_version"], h["occurred_at"], h["type"], h["actor"]["sub"], h["reason"])
        for h in history]
    assert member["import_id"] in body[0][6]


def test_import_over_rpc_with_base64(start_service, rpc_as):
    start_service("organizations")
    admin = rpc_as("org_admin", sub="zzb")
    tree = admin.organizations.apply_import(**payload("org_tree", xlsx(TREE_HEADERS, TREE)))
    assert tree["applied"] and sum(tree["created"].values()) == 6
    preview = admin.organizations.preview_import(
        **payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS)))
    assert preview["valid"] and preview["created"] == {"党员 member": 3}
    applied = admin.organizations.apply_import(
        **payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS)))
    assert applied["applied"]
    college = next(c for c in admin.organizations.get_tree()[0]["children"]
                   if c["name"] == "机电学院党总支")
    assert college["member_count"] == 2
    with pytest.raises(Forbidden):
        rpc_as("member", sub="m").organizations.preview_import(
            **payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS)))
    template = admin.organizations.import_template(kind="org_tree")
    assert read_back(base64.b64decode(template["content"]))[0] == TREE_HEADERS


def test_the_cli_previews_and_applies_over_rpc(start_service, rabbit_config, tmp_path):
    from click.testing import CliRunner

    from lianchuang_cli.main import main
    from tests.conftest import SECRET

    start_service("organizations")
    tree, roster = tmp_path / "tree.xlsx", tmp_path / "roster.xlsx"
    tree.write_bytes(xlsx(TREE_HEADERS, TREE))
    roster.write_bytes(xlsx(MEMBER_HEADERS, GOOD_MEMBERS + [
        ["赵六", "T003", "机电学院党总支", "不存在", "学生", "预备党员", "2025-07-01", None, None]]))
    common = ["--sub", "ops.li", "--amqp-uri", rabbit_config["AMQP_URI"], "--secret", SECRET]
    runner = CliRunner()
    done = runner.invoke(main, ["import", "apply", str(tree), "--kind", "org_tree", *common])
    assert done.exit_code == 0, done.output
    assert "applied: import" in done.output
    preview = runner.invoke(main, ["import", "preview", str(roster), "--kind", "members", *common])
    assert preview.exit_code == 1
    assert "Sheet!5\t所在支部\t不存在\tunknown branch" in preview.output
    assert "rows 4; errors 1; created {'党员 member': 3}" in preview.output
    refused = runner.invoke(main, ["import", "apply", str(roster), "--kind", "members", *common])
    assert refused.exit_code == 1 and "ValidationError: Sheet!5 所在支部" in refused.output
    template = tmp_path / "t.xlsx"
    assert runner.invoke(main, ["import", "template", str(template), "--kind", "members",
                                *common]).exit_code == 0
    assert read_back(template.read_bytes())[0][0] == "姓名"


def test_a_large_import_is_one_transaction_a_late_failure_writes_nothing(app, monkeypatch):
    """2,500 members (beyond the 2,000 where imports used to be saved in chunks):
    one save, in several INSERT statements in one transaction; a failure inside
    it after every event is inserted (the answer recorded with them fails) leaves
    no event and no row; the same file then applies whole."""
    import shared.imports

    load_tree(app)
    n = 2500
    rows = [[f"学生{i}", f"S{i:05d}", "机电学院党总支", "机电学院学生党支部", "学生", "正式党员",
             "2020-07-01", None, None] for i in range(n)]
    data = payload("members", xlsx(MEMBER_HEADERS, rows))
    before = event_count(app)
    saves = []
    save = app.save
    app.save = lambda *aggregates, **kwargs: (saves.append(len(aggregates)),
                                              save(*aggregates, **kwargs))[1]
    outcome = shared.imports._outcome

    def failing_outcome(*args, **kwargs):
        if kwargs.get("applied"):  # rendered inside the save's transaction
            raise RuntimeError("disk full")
        return outcome(*args, **kwargs)

    monkeypatch.setattr(shared.imports, "_outcome", failing_outcome)
    with pytest.raises(RuntimeError, match="disk full"):
        app.run_command("import-once", "apply_import", ADMIN,
                        lambda: app.imports.apply(ADMIN, data))
    assert saves == [n + 2]  # the members, their branch, the Import record: one save
    assert event_count(app) == before
    assert app.query("SELECT count(*) AS n FROM member_view")[0]["n"] == 0
    monkeypatch.setattr(shared.imports, "_outcome", outcome)
    out = app.run_command("import-twice", "apply_import", ADMIN,
                          lambda: app.imports.apply(ADMIN, data))
    assert out["applied"] and out["created"] == {"党员 member": n}
    assert event_count(app) > before + n
    assert app.query("SELECT count(*) AS n FROM member_view")[0]["n"] == n


def test_imported_members_count_from_their_join_dates_in_as_of_head_counts(app):
    """A roster imported after a moment, with join dates before it, counts in the
    tree's head counts as of that moment by effective date (入党日期), and not as
    recorded then; both answers are given."""
    import time

    orgs = load_tree(app)
    moment = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, GOOD_MEMBERS)))
    tree = app.get_tree(ADMIN, as_of=moment.isoformat())
    committee = tree[0]
    assert (committee["member_count"], committee["member_count_recorded"]) == (3, 0)
    college = next(c for c in committee["children"] if c["name"] == "机电学院党总支")
    assert {b["name"]: (b["member_count"], b["member_count_recorded"])
            for b in college["children"]} == {"机电学院教工第一党支部": (1, 0),
                                              "机电学院学生党支部": (1, 0)}
    # the member's own record keeps both times: effective (joined_on) and recorded
    member = app.query_one("SELECT joined_on, registered_at FROM member_view "
                           "WHERE staff_no = 'T001'")
    assert member["joined_on"] == dt.date(2010, 7, 1) and member["registered_at"] > moment
    assert orgs["机电学院党总支"]["id"] == UUID(college["id"])


@pytest.mark.parametrize("writes", ["many rows: COPY", "few rows: executemany"])
def test_imported_read_models_rebuilt_from_zero_equal_the_live_ones(app, monkeypatch, writes):
    """Registrations, roster touches and simple member changes are folded a page
    at a time (services/organizations/projections.py); transfers keep their
    per-event handlers, run between folded pages. Rebuilt from zero (the whole
    log in big pages), every read model equals the one kept live, head counts
    included."""
    import shared.folds
    from shared.rebuild import rebuild_compared

    if writes.startswith("few"):
        monkeypatch.setattr(shared.folds, "BULK_ROWS", 10**9)
    orgs = load_tree(app)
    branches = [("机电学院党总支", "机电学院教工第一党支部", "教师"),
                ("机电学院党总支", "机电学院学生党支部", "学生"),
                ("信息学院党委", "信息学院e支部", "职工")]
    rows = [[f"党员{i}", f"N{i:03d}", *branches[i % 3][:2], branches[i % 3][2],
             "预备党员" if i % 4 == 0 else "正式党员", "2020-07-01", None, "否"]
            for i in range(60)]
    assert app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, rows)))["applied"]
    changed = [list(r) for r in rows[:30]]
    for i, r in enumerate(changed):
        if i % 3 == 0:
            r[2], r[3] = branches[(i + 1) % 3][:2]  # transferred (handler)
        if i % 4 == 0:
            r[5], r[7] = "正式党员", "2021-07-01"  # converted to full (folded)
        if i % 5 == 0:
            r[8] = "是"  # double leader (folded)
        if i % 3 == 1:
            r[4] = "职工"  # category (folded)
    out = app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, changed), "2.xlsx"))
    assert out["applied"] and out["changed"]["转接 transfer"] == 10
    live = {t: app.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in
            ("org_view", "member_view", "member_moves", "member_history")}
    heads = {r["name"]: r["head_count"] for r in live["org_view"]}
    assert heads["学校党委"] == 60 and heads["信息学院e支部"] == 20 + 10 - 10
    assert heads["机电学院党总支"] == 40
    full = app.query_one("SELECT status, full_on, double_leader FROM member_view "
                         "WHERE staff_no = 'N000'")
    assert (full["status"], str(full["full_on"]), full["double_leader"]) == (
        "full", "2021-07-01", True)
    assert len(live["member_history"]) == 60 + sum(len(list(app.events.get(m["id"]))) - 1
                                                   for m in live["member_view"])
    report = rebuild_compared(app.projector)
    assert report["identical"], report["tables"]
    assert {t: app.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in live} == live
    assert orgs["学校党委"]["id"] == live["org_view"][[r["name"] for r in live[
        "org_view"]].index("学校党委")]["id"]


def test_snapshots_taken_from_the_saved_aggregates_equal_their_replayed_events(app):
    """A branch taken past its snapshot interval (100 events) by one import is
    snapshotted from the aggregate in memory (shared.store), in one append:
    loaded through that snapshot it equals the branch replayed from its events."""
    from eventsourcing.application import project_aggregate

    from services.organizations.domain import Organization

    orgs = load_tree(app)
    rows = [[f"学生{i}", f"S{i:04d}", "机电学院党总支", "机电学院学生党支部", "学生", "正式党员",
             "2020-07-01", None, None] for i in range(120)]
    assert app.imports.apply(ADMIN, payload("members", xlsx(MEMBER_HEADERS, rows)))["applied"]
    branch_id = orgs["机电学院学生党支部"]["id"]
    snapshots = list(app.snapshots.get(branch_id))
    assert [s.originator_version for s in snapshots] == [121]  # at its version after the save
    loaded = app.repository.get(branch_id)
    replayed = project_aggregate(None, app.events.get(branch_id))
    assert isinstance(loaded, Organization) and loaded.version == replayed.version == 121
    assert vars(loaded) == vars(replayed) and len(loaded.member_ids) == 120
