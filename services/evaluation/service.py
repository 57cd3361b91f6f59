"""Evaluation service (评价服务): nameko entrypoints only.

Every method takes the caller from the signed token in context data; the
application checks role and organisation scope. See docs/rpc.md.
"""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from nameko.timer import timer

from shared.api import ApiDescription
from shared.streams import SourceLog, consumes
from shared.audit import AuditService
from shared.entrypoints import CommandContext, command, query
from shared.history import AuditReadsService
from shared.logs import CallLog
from shared.metrics import RpcMetrics
from shared.office import OfficeIdentity
from shared.runtime import (EventStore, ObservableService, ParkedEventsService,
                            PublishedLogService)
from services.evaluation.application import EvaluationApplication



class EvaluationService(ApiDescription, AuditService, AuditReadsService, PublishedLogService,
                        ParkedEventsService, ObservableService):
    name = "evaluation"

    config = Config()
    app = EventStore(EvaluationApplication)
    caller = OfficeIdentity()
    command_context = CommandContext()
    rpc_metrics = RpcMetrics()
    call_log = CallLog()
    organizations_log = SourceLog("organizations")
    # Catch-up reads only; the caller's token travels with the call.
    organizations = RpcProxy("organizations")

    @consumes("organizations")
    def on_organizations_event(self, envelopes):
        return self.app.directory.handle_batch(envelopes, fill_gap=self.organizations_log)

    # -- schemes (评价指标体系) ------------------------------------------------------
    @command
    def publish_scheme(self, **payload):
        return self.app.publish_scheme(self.caller(), payload)

    @query
    def get_scheme(self, scheme_id, version=None):
        return self.app.get_scheme(self.caller(), scheme_id, version)

    @query
    def list_schemes(self):
        return self.app.list_schemes(self.caller())

    # -- cycles (考评周期) ---------------------------------------------------------
    @command
    def open_cycle(self, **payload):
        return self.app.open_cycle(self.caller(), payload)

    @command
    def add_cycle_organization(self, **payload):
        return self.app.add_cycle_organization(self.caller(), payload)

    @command
    def drop_cycle_organization(self, **payload):
        return self.app.drop_cycle_organization(self.caller(), payload)

    @query
    def get_cycle(self, cycle_id):
        return self.app.get_cycle(self.caller(), cycle_id)

    @query
    def list_cycles(self):
        return self.app.list_cycles(self.caller())

    @query
    def progress_board(self, cycle_id):
        return self.app.progress_board(self.caller(), cycle_id)

    # -- the workflow ------------------------------------------------------------
    @command
    def submit_self_assessment(self, **payload):
        return self.app.submit_self_assessment(self.caller(), payload)

    @command
    def submit_review(self, **payload):
        return self.app.submit_review(self.caller(), payload)

    @command
    def return_assessment(self, **payload):
        return self.app.return_assessment(self.caller(), payload)

    @command
    def extend_deadline(self, **payload):
        return self.app.extend_deadline(self.caller(), payload)

    @command
    def approve(self, **payload):
        return self.app.approve(self.caller(), payload)

    @command
    def grade_directly(self, **payload):
        return self.app.grade_directly(self.caller(), payload)

    @command
    def close_publicity(self, **payload):
        return self.app.close_publicity(self.caller(), payload)

    @command
    def lodge_objection(self, **payload):
        return self.app.lodge_objection(self.caller(), payload)

    @command
    def decide_objection(self, **payload):
        return self.app.decide_objection(self.caller(), payload)

    @query
    def publicity_board(self, cycle_id):
        return self.app.publicity_board(self.caller(), cycle_id)

    @query
    def open_objections(self, cycle_id):
        return self.app.open_objections(self.caller(), cycle_id)

    @query
    def assessment_objections(self, cycle_id, org_id):
        return self.app.assessment_objections(self.caller(), cycle_id, org_id)

    @command
    def lodge_appeal(self, **payload):
        return self.app.lodge_appeal(self.caller(), payload)

    @command
    def decide_appeal(self, **payload):
        return self.app.decide_appeal(self.caller(), payload)

    @query
    def get_assessment(self, cycle_id, org_id):
        return self.app.get_assessment(self.caller(), cycle_id, org_id)

    # -- ratings (星级) ------------------------------------------------------------
    @query
    def get_rating(self, org_id, as_of=None, replay=False):
        return self.app.get_rating(self.caller(), org_id, as_of=as_of, replay=replay)

    @query
    def star_trend(self, college_id=None, as_of=None):
        return self.app.star_trend(self.caller(), college_id=college_id, as_of=as_of)

    @query
    def rating_history(self, org_id):
        return self.app.rating_history(self.caller(), org_id)

    @query
    def assessments_as_of(self, cycle_id, as_of, org_id=None):
        return self.app.assessments_as_of(self.caller(), cycle_id, as_of, org_id)

    @query
    def get_history(self, org_id, **filters):
        return self.app.get_history(self.caller(), {"org_id": org_id, **filters})

    @query
    def star_distribution(self, college_id=None, as_of=None):
        return self.app.star_distribution(self.caller(), college_id, as_of)

    @query
    def rectifications_owing(self, college_id=None, as_of=None):
        return self.app.rectifications_owing(self.caller(), college_id, as_of)

    @command
    def record_major_problem(self, **payload):
        return self.app.record_major_problem(self.caller(), payload)

    @command
    def plan_rectification(self, **payload):
        return self.app.plan_rectification(self.caller(), payload)

    @command
    def complete_rectification(self, **payload):
        return self.app.complete_rectification(self.caller(), payload)

    @command
    def verify_rectification(self, **payload):
        return self.app.verify_rectification(self.caller(), payload)

    # -- members: the pioneer index (锋领指数) -------------------------------------------
    @command
    def publish_index_scheme(self, **payload):
        return self.app.members.publish_index_scheme(self.caller(), payload)

    @query
    def get_index_scheme(self, version=None):
        return self.app.members.get_index_scheme(self.caller(), version)

    @command
    def close_member_year(self, **payload):
        return self.app.members.close_year(self.caller(), payload)

    @query
    def get_member_index(self, **payload):
        return self.app.members.get_member_index(self.caller(), payload)

    @query
    def member_index_history(self, **payload):
        return self.app.members.index_history(self.caller(), payload)

    # -- linkage rules (联动规则) --------------------------------------------------------
    @command
    def record_creation_failed(self, **payload):
        return self.app.linkage.record_creation_failed(self.caller(), payload)

    @command
    def propose_review_grade(self, **payload):
        return self.app.linkage.propose_grade(self.caller(), payload)

    @query
    def get_annual_review(self, org_id, year):
        return self.app.linkage.get_annual_review(self.caller(), org_id, year)

    @command
    def nominate(self, **payload):
        return self.app.linkage.nominate(self.caller(), payload)

    @command
    def review_nomination(self, **payload):
        return self.app.linkage.review_nomination(self.caller(), payload)

    @command
    def award_nomination(self, **payload):
        return self.app.linkage.award_nomination(self.caller(), payload)

    @query
    def get_nomination(self, nomination_id):
        return self.app.linkage.get_nomination(self.caller(), nomination_id)

    @query
    def list_nominations(self, year):
        return self.app.linkage.list_nominations(self.caller(), year)

    @query
    def r3_report(self, **payload):
        return self.app.linkage.r3_report(self.caller(), payload)

    @query
    def r4_report(self, **payload):
        return self.app.linkage.r4_report(self.caller(), payload)

    # -- spreadsheets (历史星级补录, 公示名单, 考评结果) ------------------------------------
    @query
    def preview_import(self, **payload):
        return self.app.spreadsheets.preview(self.caller(), payload)

    @command
    def apply_import(self, **payload):
        return self.app.spreadsheets.apply(self.caller(), payload)

    @query
    def import_template(self, kind):
        return self.app.spreadsheets.template(self.caller(), kind)

    @query
    def publicity_list(self, cycle_id):
        return self.app.spreadsheets.publicity_list(self.caller(), cycle_id)

    @query
    def cycle_results(self, cycle_id):
        return self.app.spreadsheets.cycle_results(self.caller(), cycle_id)

    @query
    def export_publicity_list(self, cycle_id):
        return self.app.spreadsheets.export_publicity_list(self.caller(), cycle_id)

    @query
    def export_cycle_results(self, cycle_id):
        return self.app.spreadsheets.export_cycle_results(self.caller(), cycle_id)

    @query
    def export_star_distribution(self, college_id=None):
        return self.app.spreadsheets.export_star_distribution(self.caller(), college_id)

    @query
    def export_programme_dashboard(self, college_id=None):
        return self.app.spreadsheets.export_programme_dashboard(self.caller(), college_id)

    @query
    def export_rating_history(self, org_id):
        return self.app.spreadsheets.export_rating_history(self.caller(), org_id)

    @timer(interval=60)
    def close_expired_publicity(self):
        """Every minute: 公示 windows that ended make their results final."""
        self.app.close_expired_publicity()

    # -- the creation programme (三级联创): services/evaluation/programme -------------
    @command
    def nominate_candidacy(self, **payload):
        return self.app.programme.nominate_candidacy(self.caller(), payload)

    @command
    def move_candidacy(self, **payload):
        return self.app.programme.move_candidacy(self.caller(), payload)

    @query
    def get_candidacy(self, candidacy_id):
        return self.app.programme.get_candidacy(self.caller(), candidacy_id)

    @query
    def list_candidacies(self, title=None, tier=None, stage=None, org_id=None, college_id=None):
        return self.app.programme.list_candidacies(self.caller(), title, tier, stage, org_id,
                                                   college_id)

    @command
    def score_acceptance(self, **payload):
        return self.app.programme.score_acceptance(self.caller(), payload)

    @query
    def get_acceptance(self, candidacy_id):
        return self.app.programme.get_acceptance(self.caller(), candidacy_id)

    @query
    def creation_shortfall(self, org_id, year):
        return self.app.programme.creation_shortfall(self.caller(), org_id, year)

    @command
    def apply_innovation_project(self, **payload):
        return self.app.programme.apply_innovation_project(self.caller(), payload)

    @command
    def move_innovation_project(self, **payload):
        return self.app.programme.move_innovation_project(self.caller(), payload)

    @query
    def get_innovation_project(self, project_id):
        return self.app.programme.get_innovation_project(self.caller(), project_id)

    @query
    def list_innovation_projects(self, round=None, org_id=None, college_id=None, stage=None):
        return self.app.programme.list_innovation_projects(self.caller(), round, org_id,
                                                           college_id, stage)

    @command
    def define_plan(self, **payload):
        return self.app.programme.define_plan(self.caller(), payload)

    @query
    def list_plans(self):
        return self.app.programme.list_plans(self.caller())

    @query
    def programme_progress(self, plan_code=None, as_of=None):
        return self.app.programme.programme_progress(self.caller(), plan_code, as_of=as_of)

    @command
    def register_brand(self, **payload):
        return self.app.programme.register_brand(self.caller(), payload)

    @command
    def recognise_brand(self, **payload):
        return self.app.programme.recognise_brand(self.caller(), payload)

    @query
    def get_brand(self, brand_id):
        return self.app.programme.get_brand(self.caller(), brand_id)

    @query
    def list_brands(self, org_id=None, kind=None):
        return self.app.programme.list_brands(self.caller(), org_id, kind)

    @query
    def list_tasks(self, as_of=None):
        return self.app.programme.list_tasks(self.caller(), as_of)

    @query
    def get_task(self, number):
        return self.app.programme.get_task(self.caller(), number)

    @command
    def reassign_task_departments(self, **payload):
        return self.app.programme.reassign_departments(self.caller(), payload)

    @command
    def set_milestone(self, **payload):
        return self.app.programme.set_milestone(self.caller(), payload)

    @command
    def report_progress(self, **payload):
        return self.app.programme.report_progress(self.caller(), payload)

    @query
    def department_view(self, department=None, as_of=None):
        return self.app.programme.department_view(self.caller(), department, as_of)

    @query
    def task_book_progress(self, year=None):
        return self.app.programme.task_book_progress(self.caller(), year)

    @query
    def export_task_book(self, year=None):
        return self.app.programme.export_task_book(self.caller(), year)

    @query
    def programme_dashboard(self, college_id=None, as_of=None):
        return self.app.programme.programme_dashboard(self.caller(), college_id, as_of=as_of)

    @query
    def department_summary(self, department, year):
        return self.app.programme.department_summary(self.caller(), department, year)

    @query
    def college_summary(self, college_id, year):
        return self.app.programme.college_summary(self.caller(), college_id, year)

    @command
    def record_schedule_item(self, **payload):
        return self.app.programme.record_schedule_item(self.caller(), payload)

    @query
    def schedule_status(self, rule=None, on=None):
        return self.app.programme.schedule_status(self.caller(), rule, on)

    @timer(interval=300)
    def detect_overdue_schedule(self):
        """Every five minutes: schedule rules (R6, R8) unmet in a period that ended
        are recorded overdue, once per rule, period and subject."""
        self.app.programme.detect_schedule_overdue()

    @timer(interval=300)
    def detect_overdue_milestones(self):
        """Every five minutes: task-book milestones past due are recorded overdue, once."""
        self.app.programme.detect_overdue()

    # -- operations ----------------------------------------------------------------
    @command
    def backfill_directory(self):
        return self.app.backfill_directory(
            self.caller(), lambda after, limit: self.organizations_log.verified(
                self.organizations.read_events(after_position=after, limit=limit)))

