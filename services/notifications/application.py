"""Notifications (通知): rules from events to notices, inbox, email and webhooks (issue 4).

It keeps its own org directory from the organizations service's events.
"""
from __future__ import annotations

from shared.config import DatabaseSettings
from shared.directory import OrgDirectory
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller
from shared.projection import Projector
from shared.store import EventSourcedApplication


class NotificationsApplication(EventSourcedApplication):
    name = "notifications"

    def __init__(self, settings: DatabaseSettings):
        super().__init__(settings)
        self.directory = OrgDirectory(self, service="notifications")
        Projector(self, [], service="notifications")

    def consumer_status(self, caller: Caller) -> dict:
        """What this service has applied of other services' events (for ops)."""
        caller.require_role(ORG_ADMIN, OPS, AUDITOR)
        return {"org_directory": self.directory.status()}
