"""Evaluation (考评): the composition of the service's application.

Each sub-domain is a package with its own domain, application and read
models: ``ratings`` (schemes, cycles, 自评/审核/审定/公示, ratings, issue 3),
``members`` (锋领指数, issue 8), ``linkage`` (R1-R4), ``programme`` (三级联创,
issue 9); ``audit`` and ``spreadsheets`` read across them. This module ties
them to one event store, one organisation directory and one projector.
"""
from __future__ import annotations

from shared.imports import ImportFile
from shared.audit import AuditQueries
from shared.config import DatabaseSettings
from shared.directory import DirectoryOperations, OrgDirectory
from shared.errors import NotFound
from shared.history import AuditedHistory
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller
from shared.parking import ParkingOperations
from shared.projection import Projector
from shared.published_log import PublishedLogQueries
from shared.store import EventSourcedApplication
from services.evaluation.audit.application import AssessmentsAsOf, RatingHistory
from services.evaluation.linkage.application import Linkage
from services.evaluation.linkage.projections import LinkageReadModel
from services.evaluation.members.application import MembersIndex
from services.evaluation.members.derived import Derivations
from services.evaluation.members.projections import IndexReadModel
from services.evaluation.programme.application import ProgrammeOperations
from services.evaluation.ratings.application import RatingsOperations
from services.evaluation.ratings.cycles import utcnow
from services.evaluation.ratings.domain import Assessment, Rating, Scheme
from services.evaluation.ratings.projections import EvaluationReadModel
from services.evaluation.spreadsheets.application import EvaluationSpreadsheets
from services.evaluation.schemes import DERIVATION_PROVIDERS


class EvaluationApplication(RatingsOperations, AssessmentsAsOf, RatingHistory, AuditedHistory,
                            AuditQueries, ParkingOperations, DirectoryOperations,
                            PublishedLogQueries, EventSourcedApplication):
    name = "evaluation"
    # Models the API description cannot find by reading the code (shared.api):
    # the import entrypoints hand the payload through to shared.imports.
    API_MODELS = {"preview_import": ImportFile, "apply_import": ImportFile}
    # Ratings and assessments are read as of any moment: snapshots keep a
    # replay short however many events an organisation has accumulated.
    snapshotting_intervals = {Rating: 100, Assessment: 100, Scheme: 20}

    def __init__(self, settings: DatabaseSettings, clock=utcnow):
        super().__init__(settings)
        self.clock = clock
        self.directory = OrgDirectory(self, service="evaluation")
        self.directory.listen(self._on_org_event, types=(
            "organization_created", "organization_dissolved", "organization_merged"))
        self.members = MembersIndex(self)  # 锋领指数 from organisational-life records (issue 8)
        DERIVATION_PROVIDERS.update(Derivations(self).providers())
        self.read_model = EvaluationReadModel()
        self.programme = ProgrammeOperations(self)  # 三级联创: services/evaluation/programme
        self.linkage = Linkage(self)  # R1-R4 linkage rules (issue 8)
        Projector(self, [self.read_model, self.programme.read_model, IndexReadModel(),
                         LinkageReadModel()],
                  service="evaluation")
        self.spreadsheets = EvaluationSpreadsheets(self)  # backfill import, printed lists
        self._install_default_schemes()
        self.programme.install_defaults()
        self.members.install_default_scheme()

    # -- what the sub-domains share ------------------------------------------
    def _org(self, org_id, field: str = "org_id") -> dict:
        row = self.directory.org(org_id)
        if row is None:
            raise NotFound(f"{field}: organisation {org_id} is not known to evaluation "
                           "(not created, or its event has not arrived yet)")
        return row

    # -- operations --------------------------------------------------------------
    def consumer_status(self, caller: Caller) -> dict:
        """What this service has applied of other services' events (for ops)."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        return {"org_directory": self.directory.status(),
                "read_models": {"parked": self.projector.parking.summary()}}
