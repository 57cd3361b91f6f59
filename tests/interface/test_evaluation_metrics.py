"""Evaluation's business gauges on /metrics: organisations by star, overdue
assessments, open appeals and major problems, read from its read models."""
import requests

from tests.conftest import wait_for
from tests.e2e.test_evaluation_workflow_e2e import iso, sleep_until


def test_business_gauges_show_overdue_assessments_and_open_problems(start_service, rpc_as):
    start_service("organizations")
    evaluation = start_service("evaluation")
    orgs = rpc_as("org_admin").organizations
    committee = orgs.create_organization(name="学校党委", kind="committee")
    college = orgs.create_organization(name="机电学院党总支", kind="general_branch",
                                       parent_id=committee["id"])
    for name in ("教工一支部", "教工二支部"):
        orgs.create_organization(name=name, kind="teacher_branch", parent_id=college["id"])
    ops = rpc_as("ops").evaluation
    wait_for(lambda: ops.consumer_status()["org_directory"]["organizations"] == 4, 15)
    admin = rpc_as("org_admin").evaluation
    deadlines = {"self_assessment": iso(1), "review": iso(600), "approval": iso(1200)}
    admin.open_cycle(name="2026考评", level=3, period="2026", deadlines=deadlines)
    sleep_until(deadlines["self_assessment"])
    text = requests.get(f"http://{evaluation.config['WEB_SERVER_ADDRESS']}/metrics",
                        timeout=5).text
    assert 'lianchuang_overdue_assessments{stage="self_assessment"} 2.0' in text
    assert "lianchuang_open_appeals 0.0" in text
