"""Organizations service (组织管理服务): nameko entrypoints only.

Every method takes the caller from the signed token in context data; the
application checks role and organisation scope. See docs/rpc.md.
"""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

from nameko.dependency_providers import Config
from nameko.rpc import rpc

from shared.errors import EXPECTED_ERRORS
from shared.identity import mutation
from shared.metrics import RpcMetrics
from shared.office import OfficeIdentity
from shared.runtime import EventStore, ObservableService, PublishedLogService
from services.organizations.application import OrganizationsApplication

command = rpc(expected_exceptions=EXPECTED_ERRORS)


class OrganizationsService(PublishedLogService, ObservableService):
    name = "organizations"

    config = Config()
    app = EventStore(OrganizationsApplication)
    caller = OfficeIdentity()
    rpc_metrics = RpcMetrics()

    # -- the tree --------------------------------------------------------------
    @mutation
    def create_organization(self, **payload):
        return self.app.create_organization(self.caller(), payload)

    @mutation
    def rename_organization(self, **payload):
        return self.app.rename_organization(self.caller(), payload)

    @mutation
    def move_organization(self, **payload):
        return self.app.move_organization(self.caller(), payload)

    @mutation
    def merge_branches(self, **payload):
        return self.app.merge_branches(self.caller(), payload)

    @mutation
    def dissolve_organization(self, **payload):
        return self.app.dissolve_organization(self.caller(), payload)

    # -- members and roles ---------------------------------------------------------
    @mutation
    def register_member(self, **payload):
        return self.app.register_member(self.caller(), payload)

    @mutation
    def transfer_member(self, **payload):
        return self.app.transfer_member(self.caller(), payload)

    @mutation
    def convert_member_to_full(self, **payload):
        return self.app.convert_member_to_full(self.caller(), payload)

    @mutation
    def change_member_category(self, **payload):
        return self.app.change_member_category(self.caller(), payload)

    @mutation
    def set_double_leader(self, **payload):
        return self.app.set_double_leader(self.caller(), payload)

    @mutation
    def member_leaves(self, **payload):
        return self.app.member_leaves(self.caller(), payload)

    @mutation
    def assign_role(self, **payload):
        return self.app.assign_role(self.caller(), payload)

    @mutation
    def revoke_role(self, **payload):
        return self.app.revoke_role(self.caller(), payload)

    # -- queries ---------------------------------------------------------------
    @command
    def get_organization(self, org_id, as_of=None):
        return self.app.get_organization(self.caller(), org_id, as_of=as_of)

    @command
    def get_tree(self, as_of=None, include_closed=False):
        return self.app.get_tree(self.caller(), as_of=as_of, include_closed=include_closed)

    @command
    def get_path(self, org_id):
        return self.app.get_path(self.caller(), org_id)

    @command
    def list_members(self, **payload):
        return self.app.list_members(self.caller(), payload)

    @command
    def get_member(self, member_id):
        return self.app.get_member(self.caller(), member_id)

    @command
    def double_leader_coverage(self, college_id=None):
        return self.app.double_leader_coverage(self.caller(), college_id)

    @command
    def list_departments(self):
        return self.app.list_departments(self.caller())

    @command
    def get_history(self, aggregate_id):
        return self.app.get_history(self.caller(), aggregate_id)

    # -- operations ----------------------------------------------------------------
    @mutation
    def rebuild_read_models(self):
        return self.app.rebuild_read_models(self.caller())
