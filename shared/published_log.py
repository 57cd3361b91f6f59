"""Reading a service's own event log over RPC, as the relay publishes it:
for consuming services catching up on what they missed (a whole page of the
log, or one aggregate's events after a version) and for auditors' replays."""
from __future__ import annotations

from uuid import UUID

from pydantic import Field

from shared.commands import Command, Position, Version
from shared.identity import AUDITOR, OPS, ORG_ADMIN, Caller

LOG_READERS = (ORG_ADMIN, AUDITOR, OPS)


class ReadEvents(Command):
    after_position: Position = 0
    limit: int = Field(default=500, ge=1, le=5000)


class ReadAggregateEvents(Command):
    aggregate_id: UUID
    after_version: Version = 0


class PublishedLogQueries:
    """Mixed into an ``EventSourcedApplication``."""

    def read_events(self, caller: Caller, payload: dict) -> list[dict]:
        """A page of the store's events in order, each as its envelope."""
        caller.require_role(*LOG_READERS)
        cmd = ReadEvents.parse(payload)
        return self.read_envelopes(cmd.after_position, cmd.limit)

    def read_aggregate_events(self, caller: Caller, payload: dict) -> list[dict]:
        """One aggregate's events after ``after_version``, each as its envelope."""
        caller.require_role(*LOG_READERS)
        cmd = ReadAggregateEvents.parse(payload)
        return self.read_aggregate_envelopes(cmd.aggregate_id, cmd.after_version)
