"""Notifications service (通知服务): nameko entrypoints only.

Every method takes the caller from the signed token in context data; the
application checks role and scope. See docs/rpc.md.
"""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

import logging

from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from nameko.timer import Timer

from shared.api import ApiDescription
from shared.streams import SourceLog, consumes
from shared.audit import AuditService
from shared.entrypoints import CommandContext, command, query
from shared.history import AuditReadsService
from shared.logs import CallLog
from shared.metrics import RpcMetrics
from shared.office import OfficeIdentity
from shared.runtime import EventStore, ObservableService, ParkedEventsService
from services.notifications.application import NotificationsApplication
from services.notifications.delivery import DeliveryLoop

log = logging.getLogger(__name__)


def _enabled(value) -> bool:
    return value not in (False, "false", "no", "0", 0)


class NotificationStore(EventStore):
    """The event store, configured from ``NOTIFICATIONS``, plus the delivery loop
    thread (unless ``NOTIFICATIONS.delivery.enabled`` is false)."""

    def setup(self):
        super().setup()
        self.app.configure(self.container.config, self.instance)
        settings = self.app.config_section("delivery")
        self.delivery = DeliveryLoop(self.app, settings, self.instance) \
            if _enabled(settings.get("enabled", True)) else None

    def start(self):
        super().start()
        if self.delivery is not None:
            self.container.spawn_managed_thread(lambda: self.delivery.run_forever(self.stopping))


class ConfiguredTimer(Timer):
    """A timer whose interval is read from config (seconds) when the service starts."""

    def __init__(self, path: tuple, default: float, **kwargs):
        self.path = path
        super().__init__(interval=default, **kwargs)

    def setup(self):
        value = self.container.config
        for key in self.path:
            value = (value or {}).get(key) if isinstance(value, dict) else None
        if value not in (None, ""):
            self.interval = float(value)


class NotificationsService(ApiDescription, AuditService, AuditReadsService,
                           ParkedEventsService, ObservableService):
    name = "notifications"

    config = Config()
    app = NotificationStore(NotificationsApplication)
    caller = OfficeIdentity()
    command_context = CommandContext()
    rpc_metrics = RpcMetrics()
    call_log = CallLog()
    organizations_log = SourceLog("organizations")
    evaluation_log = SourceLog("evaluation")
    organizations = RpcProxy("organizations")

    # -- events ----------------------------------------------------------------
    @consumes("organizations")
    def on_organizations_event(self, envelopes):
        return self.app.directory.handle_batch(envelopes, fill_gap=self.organizations_log)

    @consumes("evaluation")
    def on_evaluation_event(self, envelopes):
        return self.app.on_events(envelopes, fill_gap=self.evaluation_log)

    @ConfiguredTimer.decorator(("NOTIFICATIONS", "deadline", "check_interval"), 600.0)
    def stage_deadline_timer(self):
        """考评截止提醒: remind whoever has not submitted a stage due within N days."""
        reminded = self.app.check_deadlines()
        if reminded:
            log.info("stage deadline reminders raised: %d", reminded)

    # -- contacts (联系人) -------------------------------------------------------
    @command
    def register_contact(self, **payload):
        return self.app.register_contact(self.caller(), payload)

    @command
    def update_contact(self, **payload):
        return self.app.update_contact(self.caller(), payload)

    @command
    def set_preferences(self, **payload):
        return self.app.set_preferences(self.caller(), payload)

    @command
    def deactivate_contact(self, **payload):
        return self.app.deactivate_contact(self.caller(), payload)

    @query
    def get_contact(self, **payload):
        return self.app.get_contact(self.caller(), payload)

    @query
    def get_contact_history(self, **payload):
        return self.app.get_contact_history(self.caller(), payload)

    @query
    def list_contacts(self, **payload):
        return self.app.list_contacts(self.caller(), payload)

    # -- inbox (站内信) ------------------------------------------------------------
    @query
    def list_inbox(self, **payload):
        return self.app.list_inbox(self.caller(), payload)

    @query
    def unread_count(self):
        return self.app.unread_count(self.caller())

    @command
    def mark_read(self, **payload):
        return self.app.mark_read(self.caller(), payload)

    # -- ops -----------------------------------------------------------------------
    @query
    def list_dead_letters(self, **payload):
        return self.app.list_dead_letters(self.caller(), payload)

    @command
    def retry_dead_letter(self, **payload):
        return self.app.retry_dead_letter(self.caller(), payload)

    @query
    def list_deliveries(self, **payload):
        return self.app.list_deliveries(self.caller(), payload)

    @command
    def backfill_directory(self):
        return self.app.backfill_directory(
            self.caller(), lambda after, limit: self.organizations_log.verified(
                self.organizations.read_events(after_position=after, limit=limit)))
