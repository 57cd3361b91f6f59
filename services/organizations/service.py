"""Organizations service (组织管理服务): nameko entrypoints only.

Every method takes the caller from the signed token in context data; the
application checks role and organisation scope. See docs/rpc.md.
"""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

from nameko.dependency_providers import Config

from shared.api import ApiDescription
from shared.audit import AuditService
from shared.entrypoints import CommandContext, command, query
from shared.history import AuditReadsService
from shared.logs import CallLog
from shared.metrics import RpcMetrics
from shared.office import OfficeIdentity
from shared.runtime import (EventStore, ObservableService, ParkedEventsService,
                            PublishedLogService)
from services.organizations.application import OrganizationsApplication



class OrganizationsService(ApiDescription, AuditService, AuditReadsService,
                           PublishedLogService, ParkedEventsService, ObservableService):
    name = "organizations"

    config = Config()
    app = EventStore(OrganizationsApplication)
    caller = OfficeIdentity()
    command_context = CommandContext()
    rpc_metrics = RpcMetrics()
    call_log = CallLog()

    # -- the tree --------------------------------------------------------------
    @command
    def create_organization(self, **payload):
        return self.app.create_organization(self.caller(), payload)

    @command
    def rename_organization(self, **payload):
        return self.app.rename_organization(self.caller(), payload)

    @command
    def move_organization(self, **payload):
        return self.app.move_organization(self.caller(), payload)

    @command
    def merge_branches(self, **payload):
        return self.app.merge_branches(self.caller(), payload)

    @command
    def dissolve_organization(self, **payload):
        return self.app.dissolve_organization(self.caller(), payload)

    # -- members and roles ---------------------------------------------------------
    @command
    def register_member(self, **payload):
        return self.app.register_member(self.caller(), payload)

    @command
    def transfer_member(self, **payload):
        return self.app.transfer_member(self.caller(), payload)

    @command
    def convert_member_to_full(self, **payload):
        return self.app.convert_member_to_full(self.caller(), payload)

    @command
    def change_member_category(self, **payload):
        return self.app.change_member_category(self.caller(), payload)

    @command
    def set_double_leader(self, **payload):
        return self.app.set_double_leader(self.caller(), payload)

    @command
    def member_leaves(self, **payload):
        return self.app.member_leaves(self.caller(), payload)

    @command
    def assign_role(self, **payload):
        return self.app.assign_role(self.caller(), payload)

    @command
    def revoke_role(self, **payload):
        return self.app.revoke_role(self.caller(), payload)

    # -- organisational-life records (组织生活记录) ----------------------------------
    @command
    def record_meeting(self, **payload):
        return self.app.records.record_meeting(self.caller(), payload)

    @command
    def correct_meeting(self, **payload):
        return self.app.records.correct_meeting(self.caller(), payload)

    @query
    def list_meetings(self, **payload):
        return self.app.records.list_meetings(self.caller(), payload)

    @command
    def record_member_record(self, **payload):
        return self.app.records.record_member_record(self.caller(), payload)

    @command
    def correct_member_record(self, **payload):
        return self.app.records.correct_member_record(self.caller(), payload)

    @query
    def member_records(self, **payload):
        return self.app.records.member_records(self.caller(), payload)

    # -- queries ---------------------------------------------------------------
    @query
    def get_organization(self, org_id, as_of=None):
        return self.app.get_organization(self.caller(), org_id, as_of=as_of)

    @query
    def get_tree(self, as_of=None, include_closed=False):
        return self.app.get_tree(self.caller(), as_of=as_of, include_closed=include_closed)

    @query
    def get_path(self, org_id):
        return self.app.get_path(self.caller(), org_id)

    @query
    def list_members(self, **payload):
        return self.app.list_members(self.caller(), payload)

    @query
    def get_member(self, member_id, as_of=None, replay=False):
        return self.app.get_member(self.caller(), member_id, as_of, bool(replay))

    @query
    def double_leader_coverage(self, college_id=None, as_of=None):
        return self.app.double_leader_coverage(self.caller(), college_id, as_of)

    # -- functional departments (职能部门) -------------------------------------------
    @command
    def install_default_departments(self):
        return self.app.departments.install_defaults(self.caller())

    @command
    def add_department(self, **payload):
        return self.app.departments.add_department(self.caller(), payload)

    @command
    def rename_department(self, **payload):
        return self.app.departments.rename_department(self.caller(), payload)

    @command
    def retire_department(self, **payload):
        return self.app.departments.retire_department(self.caller(), payload)

    @query
    def get_department(self, code):
        return self.app.departments.get_department(self.caller(), code)

    @query
    def list_departments(self, as_of=None, include_retired=False):
        return self.app.departments.list_departments(self.caller(), as_of, include_retired)

    @query
    def get_history(self, aggregate_id, **filters):
        return self.app.get_history(self.caller(), {"aggregate_id": aggregate_id, **filters})

    # -- spreadsheets (批量导入, 导出) -------------------------------------------------
    @query
    def preview_import(self, **payload):
        return self.app.imports.preview(self.caller(), payload)

    @command
    def apply_import(self, **payload):
        return self.app.imports.apply(self.caller(), payload)

    @query
    def import_template(self, kind):
        return self.app.imports.template(self.caller(), kind)

    @query
    def export_history(self, aggregate_id):
        return self.app.imports.export_history(self.caller(), aggregate_id)

    # -- operations ----------------------------------------------------------------
