"""The auditor (纪委办) reads everything and changes nothing, in every service."""
import inspect

import pytest

from shared.errors import Forbidden
from shared.identity import Mutation
from nameko.rpc import Rpc
from tests.helpers import stored_events

# Every RPC method that changes something, by service: declared here by hand so
# that a new method has to be classified (the test below checks the services
# declare exactly these as ``@mutation``).
MUTATING = {
    "organizations": {
        "create_organization", "rename_organization", "move_organization", "merge_branches",
        "dissolve_organization", "register_member", "transfer_member",
        "convert_member_to_full", "change_member_category", "set_double_leader",
        "member_leaves", "assign_role", "revoke_role", "rebuild_read_models",
        "retry_parked", "skip_parked",
        "record_meeting", "correct_meeting", "record_member_record", "correct_member_record",
        # spreadsheets
        "apply_import",
        # functional departments (职能部门)
        "install_default_departments", "add_department", "rename_department",
        "retire_department"},
    "evaluation": {
        "publish_scheme", "open_cycle", "add_cycle_organization", "drop_cycle_organization",
        "submit_self_assessment", "submit_review", "return_assessment", "extend_deadline",
        "approve", "grade_directly", "close_publicity", "lodge_objection", "decide_objection",
        "lodge_appeal", "decide_appeal", "record_major_problem", "plan_rectification",
        "complete_rectification", "verify_rectification", "backfill_directory",
        "rebuild_read_models", "retry_parked", "skip_parked",
        # the creation programme (三级联创)
        "nominate_candidacy", "move_candidacy", "score_acceptance", "define_plan",
        "register_brand", "recognise_brand", "set_milestone", "report_progress",
        "reassign_task_departments",
        "apply_innovation_project", "move_innovation_project", "record_schedule_item",
        # members and linkage (issue 8)
        "publish_index_scheme", "close_member_year",
        "record_creation_failed", "propose_review_grade", "nominate", "review_nomination",
        "award_nomination",
        # spreadsheets
        "apply_import"},
    "notifications": {
        "register_contact", "update_contact", "set_preferences", "deactivate_contact",
        "mark_read", "retry_dead_letter", "backfill_directory", "retry_parked",
        "skip_parked", "rebuild_read_models"},
}


def rpc_methods(service_class) -> dict[str, type]:
    """{method name: its RPC entrypoint class}."""
    found = {}
    for name, member in inspect.getmembers(service_class, inspect.isfunction):
        for entrypoint in getattr(member, "nameko_entrypoints", ()):
            if isinstance(entrypoint, Rpc):
                found[name] = type(entrypoint)
    return found


def service_classes():
    from services.evaluation.service import EvaluationService
    from services.notifications.service import NotificationsService
    from services.organizations.service import OrganizationsService
    return {"organizations": OrganizationsService, "evaluation": EvaluationService,
            "notifications": NotificationsService}


@pytest.mark.parametrize("service", sorted(MUTATING))
def test_every_mutating_method_is_declared_a_mutation(service):
    methods = rpc_methods(service_classes()[service])
    declared = {name for name, kind in methods.items() if issubclass(kind, Mutation)}
    assert declared == MUTATING[service]
    assert MUTATING[service] <= set(methods)


def test_the_auditor_is_refused_every_mutating_method(start_service, rpc_as, clean_databases):
    for service in MUTATING:
        start_service(service)
    admin = rpc_as("org_admin", sub="zuzhibu")
    committee = admin.organizations.create_organization(name="学校党委", kind="committee")
    auditor = rpc_as("auditor", sub="jiwei")
    # A plausible payload where one is easy to give; the refusal comes first anyway.
    payload = {"org_id": committee["id"], "name": "改名", "reason": "纪委办 tries",
               "description": "d", "evidence": ["e"]}
    before = {s: len(stored_events(clean_databases[s], s)) for s in MUTATING}
    classes = service_classes()
    for service, methods in MUTATING.items():
        proxy = getattr(auditor, service)
        for method in sorted(methods):
            takes_payload = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(
                getattr(classes[service], method)).parameters.values())
            with pytest.raises(Forbidden) as refused:
                getattr(proxy, method)(**(payload if takes_payload else {}))
            assert "changes nothing" in str(refused.value), (service, method)
    after = {s: len(stored_events(clean_databases[s], s)) for s in MUTATING}
    assert after == before
    # …while it still reads.
    assert auditor.organizations.get_organization(committee["id"])["name"] == "学校党委"
