"""Evaluation (考评): schemes, cycles, fortress index and star ratings (issue 3).

It keeps its own org directory from the organizations service's events.
"""
from __future__ import annotations

from shared.config import DatabaseSettings
from shared.directory import OrgDirectory
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller
from shared.projection import Projector
from shared.store import EventSourcedApplication


class EvaluationApplication(EventSourcedApplication):
    name = "evaluation"

    def __init__(self, settings: DatabaseSettings):
        super().__init__(settings)
        self.directory = OrgDirectory(self, service="evaluation")
        Projector(self, [], service="evaluation")

    def consumer_status(self, caller: Caller) -> dict:
        """What this service has applied of other services' events (for ops)."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        return {"org_directory": self.directory.status()}
