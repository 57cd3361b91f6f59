"""Tamper evidence over RPC (防篡改): verify a service's hash chain, publish
the chain's head at intervals so another service or an outside notary can
anchor it (see ``shared.chain`` and docs/events.md), and rebuild the read
models with a report of how they differed (``shared.rebuild``)."""
from __future__ import annotations

import logging
from uuid import UUID

import eventlet
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from shared import chain
from shared.commands import Query
from shared.domain import derived_id
from shared.entrypoints import command, query
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller
from shared.rebuild import rebuild_compared

log = logging.getLogger(__name__)

CHAIN_CHECKERS = (AUDITOR, OPS)


class VerifyChain(Query):
    independent: bool = False


class Rebuild(Query):
    dry_run: bool = False


class ChainHead(Aggregate):
    """The hash chain's head at one moment (哈希链头), one aggregate per
    published head. Published as ``chain_head_published`` by the relay."""

    @staticmethod
    def create_id(service: str, position: int, **_) -> UUID:
        return derived_id("chain-head", service, position)

    @event("Published")
    def __init__(self, service: str, position: int, hash: str, actor: dict, reason: str):
        self.service = service
        self.position = position
        self.hash = hash


HEAD_REASON = "定期公布哈希链头 (the chain head, published for anchoring)"


class AuditQueries:
    """Mixed into an ``EventSourcedApplication``: the chain check and head,
    and the compared rebuild of its read models."""

    def verify_chain(self, caller: Caller, payload: dict | None = None) -> dict:
        """Recompute this service's hash chain; every broken link by position
        and event id (auditor 纪委办, ops). ``independent``: hash every event
        here rather than in PostgreSQL."""
        caller.require_role(*CHAIN_CHECKERS)
        cmd = VerifyChain.parse(payload or {})
        with self.datastore.get_connection() as conn:
            report = chain.verify(conn, self.recorder.events_table_name,
                                  independent=cmd.independent,
                                  connect=self.datastore.get_connection)
        report["service"] = self.name
        return report

    def rebuild_read_models(self, caller: Caller, payload: dict | None = None) -> dict:
        """Rebuild every read model from the store, reporting each difference
        from the live one before swapping; ``dry_run`` reports and keeps the
        live ones (org_admin, ops)."""
        caller.require_role(ORG_ADMIN, OPS)
        cmd = Rebuild.parse(payload or {})
        report = rebuild_compared(self.projector, apply=not cmd.dry_run)
        report["service"] = self.name
        return report

    def chain_head(self) -> dict:
        with self.datastore.get_connection() as conn:
            return chain.head(conn)

    def publish_chain_head(self) -> dict | None:
        """Record the head as a ``chain_head_published`` event unless nothing
        but the last published head was stored since. Instances racing on the
        same head record it once (its id derives from the position)."""
        head = self.chain_head()
        if head["position"] == 0:
            return None
        last = self.query_one(f'SELECT topic FROM "{self.recorder.events_table_name}" '
                              "WHERE notification_id = %s", (head["position"],))
        if last and last["topic"] == get_topic(ChainHead.Published):
            return None
        try:
            self.save(ChainHead(service=self.name, position=head["position"], hash=head["hash"],
                                actor={"sub": f"service:{self.name}", "role": OPS},
                                reason=HEAD_REASON))
        except IntegrityError:
            return None
        return head


class AuditService:
    """Mixin for a nameko service whose ``app`` mixes in ``AuditQueries``."""

    @query
    def verify_chain(self, **payload):
        return self.app.verify_chain(self.caller(), payload)

    @command
    def rebuild_read_models(self, **payload):
        return self.app.rebuild_read_models(self.caller(), payload)


def publish_heads_forever(app, stopping, interval: float) -> None:
    """Background follower: publish the chain head every ``interval`` seconds."""
    while not stopping.ready():
        stopping.wait(interval)
        if stopping.ready():
            return
        try:
            app.publish_chain_head()
        except Exception:  # keep going; logged and retried next interval
            log.exception("publishing the chain head failed")
        eventlet.sleep(0)
