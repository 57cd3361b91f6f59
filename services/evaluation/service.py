"""Evaluation service (评价服务): nameko entrypoints only."""
import shared  # noqa: F401  (sets PSYCOPG_WAIT_FUNC before psycopg loads)

from nameko.dependency_providers import Config
from nameko.rpc import rpc

from shared.consumer import consumes
from shared.errors import EXPECTED_ERRORS
from shared.identity import Identity
from shared.metrics import RpcMetrics
from shared.runtime import EventStore, ObservableService
from services.evaluation.application import EvaluationApplication

command = rpc(expected_exceptions=EXPECTED_ERRORS)


class EvaluationService(ObservableService):
    name = "evaluation"

    config = Config()
    app = EventStore(EvaluationApplication)
    caller = Identity()
    rpc_metrics = RpcMetrics()

    @consumes("organizations")
    def on_organizations_event(self, envelope):
        self.app.directory.handle(envelope)

    @command
    def consumer_status(self):
        return self.app.consumer_status(self.caller())
