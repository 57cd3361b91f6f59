"""The auditor's questions (纪委办): the members of a branch and one member as of
a moment (read model and replay agree), history filtered by time and kind with
Chinese labels and as CSV, and every audit read recorded."""
import csv
import datetime as dt
import io

import eventlet
import pytest

from shared.errors import Forbidden, NotFound


def _now() -> str:
    eventlet.sleep(0.01)
    moment = dt.datetime.now(dt.timezone.utc).isoformat()
    eventlet.sleep(0.01)
    return moment


@pytest.fixture
def scenario(start_service, rpc_as):
    start_service("organizations", CHAIN={"publish_interval": 0})
    admin = rpc_as("org_admin", sub="zuzhibu").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    b1 = admin.create_organization(name="教工一支部", kind="teacher_branch",
                                   parent_id=college["id"])["id"]
    b2 = admin.create_organization(name="教工二支部", kind="teacher_branch",
                                   parent_id=college["id"])["id"]
    t0 = _now()
    m1 = admin.register_member(name="张三", branch_id=b1, category="teacher", status="full",
                               joined_on="2005-07-01")["id"]
    m2 = admin.register_member(name="李四", branch_id=b1, category="teacher",
                               status="probationary", joined_on="2025-07-01")["id"]
    t1 = _now()
    admin.transfer_member(member_id=m1, to_branch_id=b2, effective_on="2026-09-01",
                          reason="工作调动")
    admin.convert_member_to_full(member_id=m2, effective_on="2026-07-01", reason="按期转正")
    t2 = _now()
    admin.rename_organization(org_id=b1, name="教工第一党支部", reason="规范名称")
    admin.member_leaves(member_id=m2, effective_on="2026-10-01", reason="转出")
    t3 = _now()
    return {"admin": admin, "college": college["id"], "b1": b1, "b2": b2, "m1": m1, "m2": m2,
            "t0": t0, "t1": t1, "t2": t2, "t3": t3}


def _roster(admin, org_id, as_of, **kw):
    page = admin.list_members(org_id=org_id, as_of=as_of, **kw)
    return [(m["name"], m["branch_name"], m["status"], m["active"]) for m in page["members"]]


def test_members_of_a_branch_as_of_any_moment(scenario, rpc_as):
    s, admin = scenario, scenario["admin"]
    assert _roster(admin, s["b1"], s["t0"]) == []
    assert _roster(admin, s["b1"], s["t1"]) == [("张三", "教工一支部", "full", True),
                                                ("李四", "教工一支部", "probationary", True)]
    assert _roster(admin, s["b1"], s["t2"]) == [("李四", "教工一支部", "full", True)]
    assert _roster(admin, s["b2"], s["t2"]) == [("张三", "教工二支部", "full", True)]
    assert _roster(admin, s["b1"], s["t3"]) == []
    assert _roster(admin, s["b1"], s["t3"], include_left=True) == [
        ("李四", "教工第一党支部", "full", False)]
    # The college's subtree then: both branches.
    assert [m[0] for m in _roster(admin, s["college"], s["t1"])] == ["张三", "李四"]
    # A branch secretary reads only its own branch, as of any moment too.
    secretary = rpc_as("branch_secretary", sub="sec2", org=s["b2"]).organizations
    with pytest.raises(Forbidden):
        secretary.list_members(org_id=s["b1"], as_of=s["t1"])


def test_a_member_as_of_a_moment_from_the_read_model_and_by_replay(scenario, rpc_as):
    s = scenario
    auditor = rpc_as("auditor", sub="jiwei").organizations
    expected = {
        (s["m1"], "t1"): ("教工一支部", "full", True),
        (s["m1"], "t2"): ("教工二支部", "full", True),
        (s["m2"], "t1"): ("教工一支部", "probationary", True),
        (s["m2"], "t2"): ("教工一支部", "full", True),
        (s["m2"], "t3"): ("教工第一党支部", "full", False),
    }
    for (member_id, moment), (branch, status, active) in expected.items():
        read = auditor.get_member(member_id=member_id, as_of=s[moment])
        replayed = auditor.get_member(member_id=member_id, as_of=s[moment], replay=True)
        assert (read["branch_name"], read["status"], read["active"]) == (branch, status, active)
        assert (read.pop("answered_by"), replayed.pop("answered_by")) == ("read_model", "replay")
        assert read == replayed
    for replay in (False, True):
        with pytest.raises(NotFound):
            auditor.get_member(member_id=s["m1"], as_of=s["t0"], replay=replay)


def test_history_by_time_and_kind_with_labels_as_csv_and_every_read_recorded(scenario,
                                                                                rpc_as):
    s = scenario
    auditor = rpc_as("auditor", sub="jiwei").organizations
    everything = auditor.get_history(s["m1"])
    assert [(h["type"], h["label"]) for h in everything] == [
        ("member_registered", "党员登记"), ("member_transferred", "组织关系转接")]
    moved = auditor.get_history(s["m1"], since=s["t1"], until=s["t2"])
    assert [(h["label"], h["actor"]["sub"], h["reason"]) for h in moved] == [
        ("组织关系转接", "zuzhibu", "工作调动")]
    assert auditor.get_history(s["m1"], until=s["t1"], kinds=["member_transferred"]) == []
    roster = auditor.get_history(s["b1"], kinds=["organization_member_admitted",
                                                  "organization_member_released"])
    assert [(h["label"], h["reason"]) for h in roster] == [
        ("党员转入本支部", "党员登记 registered"), ("党员转入本支部", "党员登记 registered"),
        ("党员转出本支部", "转出 transferred out to 教工二支部: 工作调动"),
        ("党员转出本支部", "离开 left: 转出")]

    exported = auditor.get_history(s["b1"], since=s["t2"], format="csv")
    assert exported["filename"] == f"history-{s['b1']}.csv"
    table = list(csv.reader(io.StringIO(exported["content"].lstrip("\ufeff"))))
    assert table[0][:3] == ["时间 time", "事件 event", "类型 type"]
    assert [(r[1], r[3], r[4], r[5]) for r in table[1:]] == [
        ("更名", "zuzhibu", "org_admin", "规范名称"),
        ("党员转出本支部", "zuzhibu", "org_admin", "离开 left: 转出")]
    # the same rows as an .xlsx workbook, read back
    workbook = auditor.get_history(s["b1"], since=s["t2"], format="xlsx")
    assert workbook["filename"] == f"history-{s['b1']}.xlsx"
    assert workbook["content_type"].endswith("spreadsheetml.sheet")
    sheet = _xlsx_rows(workbook["content"])
    assert sheet[0] == table[0]
    assert [(r[1], r[3], r[4], r[5]) for r in sheet[1:]] == [
        (r[1], r[3], r[4], r[5]) for r in table[1:]]
    assert [r[9] for r in sheet[1:]] == [r[9] for r in table[1:]]  # the event ids

    rpc_as("auditor", sub="another").organizations.get_member(member_id=s["m2"],
                                                              as_of=s["t1"])
    admin = s["admin"]
    reads = admin.list_audit_reads()
    assert [(r["reader"]["sub"], r["subject_id"], r["query"]) for r in reads] == [
        ("jiwei", s["m1"], "get_history"), ("jiwei", s["m1"], "get_history"),
        ("jiwei", s["m1"], "get_history"), ("jiwei", s["b1"], "get_history"),
        ("jiwei", s["b1"], "get_history"), ("jiwei", s["b1"], "get_history"),
        ("another", s["m2"], "get_member")]
    assert reads[1]["filters"] == {"since": s["t1"], "until": s["t2"], "format": "json"}
    assert (reads[4]["filters"]["format"], reads[5]["filters"]["format"]) == ("csv", "xlsx")
    assert [r["query"] for r in admin.list_audit_reads(subject_id=s["m2"])] == ["get_member"]
    assert len(admin.list_audit_reads(reader="jiwei")) == 6
    assert [r["subject_id"] for r in admin.list_audit_reads(since=s["t3"])] == [
        r["subject_id"] for r in reads]  # every read happened after t3
    with pytest.raises(Forbidden):
        auditor.list_audit_reads()
    # each read is an event of the store like any other (appended in one round trip):
    # linked into the hash chain, every link checked both ways
    for independent in (False, True):
        report = auditor.verify_chain(independent=independent)
        assert report["ok"] and report["problems"] == [], report
    assert report["checked"] >= len(reads)


def _xlsx_rows(content_b64: str) -> list[list[str]]:
    """The first sheet of a base64 .xlsx as rows of text (empty cells as '')."""
    import base64

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(base64.b64decode(content_b64)), read_only=True)
    return [["" if v is None else str(v) for v in row]
            for row in book.worksheets[0].iter_rows(values_only=True)]


def test_the_command_line_reads_history_over_rpc_and_writes_csv_and_xlsx(
        scenario, rabbit_config, tmp_path):
    from click.testing import CliRunner

    from lianchuang_cli.main import main as cli
    from tests.conftest import SECRET

    env = {"AMQP_URI": rabbit_config["AMQP_URI"], "AUTH_SECRET": SECRET}
    shown = CliRunner(env=env).invoke(cli, ["audit", "history", scenario["m1"],
                                            "--sub", "jiwei"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.strip().splitlines()
    assert len(lines) == 2 and "组织关系转接  zuzhibu (org_admin)  工作调动" in lines[1]
    target = tmp_path / "h.csv"
    written = CliRunner(env=env).invoke(cli, ["audit", "history", scenario["b1"], "--sub",
                                              "jiwei", "--kind", "organization_renamed",
                                              "--csv", str(target)])
    assert written.exit_code == 0, written.output
    table = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert [(r[1], r[5]) for r in table[1:]] == [("更名", "规范名称")]
    book = tmp_path / "h.xlsx"
    written = CliRunner(env=env).invoke(cli, ["audit", "history", scenario["m1"], "--sub",
                                              "jiwei", "--since", scenario["t1"], "--until",
                                              scenario["t2"], "--xlsx", str(book)])
    assert written.exit_code == 0, written.output
    import base64

    sheet = _xlsx_rows(base64.b64encode(book.read_bytes()).decode())
    assert sheet[0][:2] == ["时间 time", "事件 event"]
    assert [(r[1], r[3], r[5]) for r in sheet[1:]] == [("组织关系转接", "zuzhibu", "工作调动")]
    reads = scenario["admin"].list_audit_reads(reader="jiwei")
    assert [r["subject_id"] for r in reads] == [scenario["m1"], scenario["b1"], scenario["m1"]]
    assert reads[2]["filters"]["format"] == "xlsx"
