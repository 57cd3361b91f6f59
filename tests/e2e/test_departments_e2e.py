"""Departments (职能部门) are organizations' records and evaluation learns them from
their events over RabbitMQ: the seed's 15 arrive by themselves, a rename shows in
the task book under the same code, a retired department is given no new work."""
import pytest
from click.testing import CliRunner

from lianchuang_cli.main import main
from shared.errors import ValidationError
from shared.spreadsheets import Table, write_tables
from tests.conftest import SECRET, wait_for

HEADERS = ["举措编号", "年度", "时间节点", "完成时限", "牵头部门", "备注"]


def test_evaluation_sees_departments_renamed_and_retired_in_organizations(
        start_service, rpc_as, rabbit_config, tmp_path):
    start_service("organizations")
    start_service("evaluation")
    ops = rpc_as("ops").evaluation
    # the default set-up (the demo loader runs it); a second run adds nothing
    installed = rpc_as("ops").organizations.install_default_departments()
    assert len(installed["added"]) == 15 and installed["departments"] == 15
    assert rpc_as("org_admin").organizations.install_default_departments()["added"] == []
    wait_for(lambda: ops.consumer_status()["org_directory"]["departments"] == 15, 20,
             message="evaluation's directory has the 15 default departments")
    organizations = rpc_as("org_admin", sub="zuzhibu").organizations
    evaluation = rpc_as("org_admin", sub="zuzhibu").evaluation
    assert evaluation.get_task("二.6")["lead_department"] == {"code": "quality_control",
                                                             "name": "质控办"}

    organizations.rename_department(code="quality_control", name="质量管理办公室",
                                    reason="机构更名")
    lead = wait_for(lambda: (t := evaluation.get_task("二.6")["lead_department"])["name"]
                    == "质量管理办公室" and t, 20, message="evaluation sees the new name")
    assert lead == {"code": "quality_control", "name": "质量管理办公室"}
    # department staff keep acting by the code: the token, the measures are unchanged
    staff = rpc_as("department_staff", sub="zkb", org="quality_control").evaluation
    assert staff.department_view()["name"] == "质量管理办公室"
    evaluation.set_milestone(number="二.6", milestone_id="m1", title="双高年度自评",
                             year=2030, due_on="2030-06-30")
    reported = staff.report_progress(number="二.6", milestone_id="m1", text="已完成",
                                     completed=True, evidence=["自评报告.pdf"])
    assert reported["reports"][0]["department_name"] == "质量管理办公室"

    # ops import milestones with the CLI, naming the lead department by its new name
    runner = CliRunner()
    common = ["--kind", "task_milestones", "--sub", "ops.li", "--amqp-uri",
              rabbit_config["AMQP_URI"], "--secret", SECRET]
    sheet = tmp_path / "节点.xlsx"
    sheet.write_bytes(write_tables([Table("任务书时间节点", HEADERS, [
        ["二.6", 2030, "双高中期检查", "2030-09-30", "质量管理办公室", None],
        ["二.6", 2030, "双高年度总结", "2030-12-31", "质控办", None]])]))
    preview = runner.invoke(main, ["import", "preview", str(sheet), *common])
    assert preview.exit_code == 1 and "Sheet" not in preview.output
    assert "任务书时间节点!3\t牵头部门\t质控办\tunknown department" in preview.output
    sheet.write_bytes(write_tables([Table("任务书时间节点", HEADERS, [
        ["二.6", 2030, "双高中期检查", "2030-09-30", "质量管理办公室", None]])]))
    for _ in range(2):
        applied = runner.invoke(main, ["import", "apply", str(sheet), *common])
        assert applied.exit_code == 0, applied.output
    assert "applied before" in applied.output
    assert [m["title"] for m in evaluation.get_task("二.6")["milestones"]] == \
        ["双高年度自评", "双高中期检查"]

    organizations.retire_department(code="quality_control", reason="职能调整")
    wait_for(lambda: staff.department_view()["status"] == "retired", 20,
             message="evaluation sees the department retired")
    with pytest.raises(ValidationError) as err:
        evaluation.set_milestone(number="二.6", title="下一年度自评", year=2031,
                                 due_on="2031-06-30")
    assert err.value.fields == ["number"]
    assert staff.department_view()["leads"][0]["number"] == "二.6"  # readable, with its period
