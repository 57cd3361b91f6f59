"""Every RPC method of the three services with the model that validates its
arguments (None: the method takes none), for the tests that drive all of them
with hostile input (tests/property, tests/faults). ``check_complete`` fails
when a service gains a method that is not listed here."""
from __future__ import annotations

import datetime as dt
import inspect
import types
import typing
import uuid
from typing import Annotated, Literal, Union

from nameko.rpc import Rpc

from shared.audit import Rebuild, VerifyChain
from shared.commands import CollegeFilter, OrgRef
from shared.history import AuditReadQuery, HistoryQuery
from shared.entrypoints import Mutation
from shared.imports import ImportFile, ImportKind
from shared.parking import ListParked, ResolveParked
from shared.published_log import ReadAggregateEvents, ReadEvents
from services.evaluation.ratings import commands as ev
from services.evaluation.audit import application as ea
from services.evaluation.linkage import application as lk
from services.evaluation.members import application as mem
from services.evaluation.programme import acceptance as pa
from services.evaluation.programme import application as pg
from services.evaluation.programme import taskbook as tb
from services.evaluation.programme import taskbook_sheets as tbs
from services.evaluation.programme.projects import application as pj
from services.evaluation.programme.schedule import application as sc
from services.evaluation.programme import summaries as su
from services.notifications import application as nt
from services.organizations import application as og
from services.organizations.departments import application as dep
from services.organizations.records import application as rec

ORGANIZATIONS = {
    "create_organization": og.CreateOrganization, "rename_organization": og.RenameOrganization,
    "move_organization": og.MoveOrganization, "merge_branches": og.MergeBranches,
    "dissolve_organization": og.DissolveOrganization, "register_member": og.RegisterMember,
    "transfer_member": og.TransferMember, "convert_member_to_full": og.ConvertMember,
    "change_member_category": og.ChangeCategory, "set_double_leader": og.SetDoubleLeader,
    "member_leaves": og.MemberLeaves, "assign_role": og.AssignRole,
    "revoke_role": og.RevokeRole,
    "get_organization": og.OrgAsOf, "get_tree": og.TreeQuery, "get_path": OrgRef,
    "list_members": og.ListMembers, "get_member": og.MemberQuery,
    "double_leader_coverage": og.CoverageQuery, "list_departments": dep.DepartmentsQuery,
    "install_default_departments": None, "add_department": dep.AddDepartment, "rename_department": dep.RenameDepartment,
    "retire_department": dep.RetireDepartment, "get_department": dep.DepartmentRef,
    "get_history": HistoryQuery, "list_audit_reads": AuditReadQuery,
    "read_events": ReadEvents, "read_aggregate_events": ReadAggregateEvents,
    "record_meeting": rec.RecordMeeting, "correct_meeting": rec.CorrectMeeting,
    "list_meetings": rec.ListMeetings, "record_member_record": rec.RecordMemberRecord,
    "correct_member_record": rec.CorrectMemberRecord, "member_records": rec.MemberRecords,
    # spreadsheets
    "preview_import": ImportFile, "apply_import": ImportFile, "import_template": ImportKind,
    "export_history": og.AggregateRef,
}
EVALUATION = {
    "publish_scheme": ev.PublishScheme, "get_scheme": ev.SchemeRef, "list_schemes": None,
    "open_cycle": ev.OpenCycle, "add_cycle_organization": ev.CycleOrg,
    "drop_cycle_organization": ev.CycleOrg, "get_cycle": ev.CycleRef, "list_cycles": None,
    "progress_board": ev.CycleRef, "submit_self_assessment": ev.SubmitEntries,
    "submit_review": ev.SubmitEntries, "return_assessment": ev.ReturnAssessment,
    "extend_deadline": ev.ExtendDeadline, "approve": ev.Approve,
    "grade_directly": ev.GradeDirectly, "close_publicity": ev.ClosePublicity,
    "lodge_objection": ev.Lodge, "lodge_appeal": ev.Lodge, "decide_appeal": ev.DecideAppeal,
    "decide_objection": ev.DecideObjection, "publicity_board": ev.CycleRef,
    "open_objections": ev.CycleRef, "assessment_objections": ev.AssessmentRef,
    "star_trend": ea.DistributionQuery,
    "get_assessment": ev.AssessmentRef, "get_rating": ev.RatingQuery,
    "rating_history": OrgRef, "star_distribution": ea.DistributionQuery,
    "rectifications_owing": ea.DistributionQuery,
    "get_history": ea.RatingHistoryQuery, "assessments_as_of": ea.AssessmentsAsOfQuery,
    "list_audit_reads": AuditReadQuery,
    "record_major_problem": ev.RecordMajorProblem,
    "plan_rectification": ev.PlanRectification,
    "complete_rectification": ev.CompleteRectification,
    "verify_rectification": ev.VerifyRectification, "consumer_status": None,
    "backfill_directory": None,
    "read_events": ReadEvents, "read_aggregate_events": ReadAggregateEvents,
    # the creation programme (三级联创)
    "nominate_candidacy": pg.Nominate, "move_candidacy": pg.Move,
    "get_candidacy": pg.CandidacyRef, "list_candidacies": pg.CandidacyFilter,
    "score_acceptance": pa.ScoreAcceptance, "get_acceptance": pa.AcceptanceRef,
    "apply_innovation_project": pj.ApplyProject, "move_innovation_project": pj.MoveProject,
    "get_innovation_project": pj.ProjectRef, "list_innovation_projects": pj.ProjectFilter,
    "record_schedule_item": sc.RecordScheduleItem, "schedule_status": sc.ScheduleQuery,
    "department_summary": su.DepartmentYear, "college_summary": su.CollegeYear,
    "creation_shortfall": pg.ShortfallQuery, "define_plan": pg.DefinePlan, "list_plans": None,
    "programme_progress": pg.ProgressQuery, "register_brand": pg.RegisterBrand,
    "recognise_brand": pg.RecogniseBrand, "get_brand": pg.BrandRef,
    "list_brands": pg.BrandFilter, "list_tasks": tb.AsOf, "get_task": tb.TaskRef,
    "set_milestone": tb.SetMilestone, "reassign_task_departments": tb.ReassignDepartments, "report_progress": tb.ReportProgress,
    "department_view": tb.DepartmentRef, "task_book_progress": tbs.TaskBookYear,
    "export_task_book": tbs.TaskBookYear, "programme_dashboard": ea.DistributionQuery,
    "publish_index_scheme": mem.PublishIndexScheme, "get_index_scheme": mem.IndexSchemeRef,
    "close_member_year": mem.CloseYear, "get_member_index": mem.MemberIndexQuery,
    "member_index_history": mem.IndexHistoryQuery,
    "record_creation_failed": lk.CreationFailed, "propose_review_grade": lk.ProposeGrade,
    "get_annual_review": lk.AnnualReviewRef, "nominate": lk.Nominate,
    "review_nomination": lk.ReviewNomination, "award_nomination": lk.AwardNomination,
    "get_nomination": lk.NominationRef, "list_nominations": lk.NominationsQuery,
    "r3_report": lk.Report, "r4_report": lk.Report,
    # spreadsheets
    "preview_import": ImportFile, "apply_import": ImportFile, "import_template": ImportKind,
    "publicity_list": ev.CycleRef, "cycle_results": ev.CycleRef,
    "export_publicity_list": ev.CycleRef, "export_cycle_results": ev.CycleRef,
    "export_star_distribution": CollegeFilter, "export_rating_history": OrgRef,
    "export_programme_dashboard": CollegeFilter,
}
NOTIFICATIONS = {
    "register_contact": nt.RegisterContact, "update_contact": nt.UpdateContact,
    "set_preferences": nt.SetPreferences, "deactivate_contact": nt.DeactivateContact,
    "get_contact": nt.GetContact, "get_contact_history": nt.ContactHistory,
    "list_contacts": nt.ListContacts, "list_audit_reads": AuditReadQuery,
    "list_inbox": nt.ListInbox, "unread_count": None, "mark_read": nt.MarkRead,
    "list_dead_letters": nt.ListDeadLetters, "retry_dead_letter": nt.RetryDeadLetter,
    "list_deliveries": nt.ListDeliveries, "consumer_status": None,
    "backfill_directory": None,
}
# Parked events (every service's projector and consumers park what they cannot apply).
PARKING = {"list_parked": ListParked, "retry_parked": ResolveParked,
           "skip_parked": ResolveParked, "consumer_status": None}
# Tamper evidence and rebuilds (every service: shared.audit).
AUDIT = {"verify_chain": VerifyChain, "rebuild_read_models": Rebuild}
for methods in (ORGANIZATIONS, EVALUATION, NOTIFICATIONS):
    methods.update(PARKING)
    methods.update(AUDIT)
    methods["describe_api"] = None  # shared.api: the service describes its own methods
PARKING_COMMANDS = ["retry_parked", "skip_parked"]
AUDIT_COMMANDS = ["rebuild_read_models"]
CATALOGUE = {"organizations": ORGANIZATIONS, "evaluation": EVALUATION,
             "notifications": NOTIFICATIONS}

# Commands (the ``Mutation`` entrypoint) that take arguments: events, or
# notifications' inbox and deliveries (rebuild_read_models takes ``dry_run``;
# backfill_directory takes none).
MUTATING = {
    "organizations": ["create_organization", "rename_organization", "move_organization",
                      "merge_branches", "dissolve_organization", "register_member",
                      "transfer_member", "convert_member_to_full", "change_member_category",
                      "set_double_leader", "member_leaves", "assign_role", "revoke_role",
                      "record_meeting", "correct_meeting", "record_member_record",
                      "correct_member_record", "apply_import", "add_department",
                      "rename_department", "retire_department",
                      *PARKING_COMMANDS, *AUDIT_COMMANDS],
    "evaluation": ["publish_scheme", "open_cycle", "add_cycle_organization",
                   "drop_cycle_organization", "submit_self_assessment", "submit_review",
                   "return_assessment", "extend_deadline", "approve", "grade_directly",
                   "close_publicity", "lodge_objection", "decide_objection", "lodge_appeal",
                   "decide_appeal", "record_major_problem", "plan_rectification", "complete_rectification",
                   "verify_rectification", *PARKING_COMMANDS, *AUDIT_COMMANDS,
                   "nominate_candidacy", "move_candidacy", "score_acceptance", "define_plan",
                   "register_brand", "apply_innovation_project", "move_innovation_project",
                   "record_schedule_item",
                   "recognise_brand", "set_milestone", "report_progress", "reassign_task_departments",
                   "publish_index_scheme", "close_member_year", "record_creation_failed",
                   "propose_review_grade", "nominate", "review_nomination",
                   "award_nomination", "apply_import"],
    "notifications": ["register_contact", "update_contact", "set_preferences",
                      "deactivate_contact", "mark_read", "retry_dead_letter",
                      *PARKING_COMMANDS, *AUDIT_COMMANDS],
}
# The role each mutating method is tried with (one allowed to call it).
ROLE_FOR = {"lodge_objection": "member", "retry_dead_letter": "ops"}


def service_class(name: str):
    from services.evaluation.service import EvaluationService
    from services.notifications.service import NotificationsService
    from services.organizations.service import OrganizationsService
    return {"organizations": OrganizationsService, "evaluation": EvaluationService,
            "notifications": NotificationsService}[name]


def rpc_methods(cls) -> set[str]:
    return {name for name, fn in inspect.getmembers(cls)
            if any(isinstance(e, Rpc) for e in getattr(fn, "nameko_entrypoints", ()))}


def mutations(cls) -> set[str]:
    return {name for name, fn in inspect.getmembers(cls)
            if any(isinstance(e, Mutation) for e in getattr(fn, "nameko_entrypoints", ()))}


def check_complete(service: str) -> None:
    cls = service_class(service)
    listed, served = set(CATALOGUE[service]), rpc_methods(cls)
    assert listed == served, f"{service}: not in the catalogue {served - listed}, " \
                             f"gone {listed - served}"
    with_arguments = {m for m in mutations(cls) if CATALOGUE[service][m] is not None}
    assert set(MUTATING[service]) == with_arguments, \
        f"{service}: commands {with_arguments} but MUTATING lists {MUTATING[service]}"


# -- reading a model's fields ------------------------------------------------------------
def _strip(tp):
    """(base type, is optional) without Annotated and Optional."""
    optional = False
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            tp = args[0]
        else:
            return tp, optional


def fields(model) -> dict:
    """name -> base type of each field (empty for a method without arguments)."""
    return {} if model is None else {n: _strip(f.annotation)[0]
                                     for n, f in model.model_fields.items()}


def is_id(tp) -> bool:
    return tp is uuid.UUID or (typing.get_origin(tp) is list and
                               _strip(typing.get_args(tp)[0])[0] is uuid.UUID)


def is_text(tp) -> bool:
    return tp is str or (typing.get_origin(tp) in (list, dict) and any(
        _strip(a)[0] is str or is_text(_strip(a)[0]) for a in typing.get_args(tp)[-1:]))


def is_number(tp) -> bool:
    return tp in (int, float) or (typing.get_origin(tp) is dict and
                                  _strip(typing.get_args(tp)[1])[0] in (int, float))


def valid_value(tp):
    """A well-formed value of a field's type (ids are fresh, so unknown)."""
    origin = typing.get_origin(tp)
    if tp is uuid.UUID:
        return str(uuid.uuid4())
    if tp is dt.date:
        return "2026-03-01"
    if tp is bool:
        return False
    if tp is int:
        return 1
    if tp is float:
        return 1.0
    if tp is str:
        return "测试 test"
    if origin is Literal:
        return typing.get_args(tp)[0]
    if origin is list:
        return [valid_value(_strip(typing.get_args(tp)[0])[0])]
    if origin is dict or tp is dict:
        return {}
    raise AssertionError(f"no valid value for {tp}")


def valid_payload(model) -> dict:
    """Every required field of a model with a well-formed value."""
    return {n: valid_value(_strip(f.annotation)[0]) for n, f in model.model_fields.items()
            if f.is_required()} if model is not None else {}
