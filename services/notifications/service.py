"""Notifications service (通知服务): nameko entrypoints only."""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

from nameko.dependency_providers import Config
from nameko.rpc import rpc

from shared.consumer import consumes
from shared.errors import EXPECTED_ERRORS
from shared.identity import Identity
from shared.metrics import RpcMetrics
from shared.runtime import EventStore, ObservableService
from services.notifications.application import NotificationsApplication

command = rpc(expected_exceptions=EXPECTED_ERRORS)


class NotificationsService(ObservableService):
    name = "notifications"

    config = Config()
    app = EventStore(NotificationsApplication)
    caller = Identity()
    rpc_metrics = RpcMetrics()

    @consumes("organizations")
    def on_organizations_event(self, envelope):
        self.app.directory.handle(envelope)

    @command
    def consumer_status(self):
        return self.app.consumer_status(self.caller())
