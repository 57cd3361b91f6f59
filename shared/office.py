"""Offices (职务): a secretary's authority comes from the records, not the token alone.

A ``college_secretary`` (二级学院党组织书记) or ``branch_secretary`` (党支部书记) token
names an organisation (``org``) and a person (``sub``, the member id). It is
honoured only while the organisation records show that member holding the office
there now:

* ``college_secretary`` ⇒ the ``secretary`` (书记) of the level-2 organisation
  (党总支 / 二级学院党委) named by ``org``;
* ``branch_secretary`` ⇒ the ``secretary`` (书记) of the branch (党支部, level 3)
  named by ``org``.

A deputy secretary (副书记) does not count: the secretary is the one accountable
holder of an organisation (one at a time, ``assign_role`` refuses a second), the
person who signs its self-assessment (自评) and appeals (申诉) and to whom
notices go; a deputy acting for them would need a delegation on record, which
the system does not keep. 组织部 assigns the secretary role to whoever acts.

Organizations reads its own ``org_roles`` read model; evaluation and
notifications read their directory copy (``dir_roles``, ``shared.directory``),
so a revocation or transfer takes effect in a consuming service as soon as it
has applied that event. Every service resolves its caller through
``OfficeIdentity``, so the three behave alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional
from uuid import UUID

from nameko.extensions import DependencyProvider

from shared.errors import Forbidden
from shared.identity import BRANCH_SECRETARY, COLLEGE_SECRETARY, Caller, Identity

# token role -> (level of the organisation it names, roles in the records that hold it)
OFFICES = {
    COLLEGE_SECRETARY: (2, ("secretary",)),
    BRANCH_SECRETARY: (3, ("secretary",)),
}
LEVEL_ZH = {2: "二级学院党组织", 3: "党支部"}


@dataclass(frozen=True)
class Office:
    """What the records show of one organisation: its level, whether it is
    active, and the member ids holding the asked roles now."""

    level: int
    active: bool
    holders: frozenset


# lookup(org_id, roles) -> the organisation's Office, or None when it is unknown
OfficeLookup = Callable[[str, tuple], Optional[Office]]


def read_office(app, org_id: str, roles: tuple, orgs: str, role_table: str) -> Office | None:
    """An ``OfficeLookup`` over a service's own tables: ``orgs`` (``id, level,
    status``) and ``role_table`` (``org_id, member_id, role``) — organizations'
    read model or a consumer's directory copy. Table names are code, never input."""
    row = app.query_one(
        f"SELECT o.level, o.status, array(SELECT r.member_id::text FROM {role_table} r "
        f"WHERE r.org_id = o.id AND r.role = ANY(%s)) AS holders "
        f"FROM {orgs} o WHERE o.id = %s", (list(roles), org_id))
    if row is None:
        return None
    return Office(level=row["level"], active=row["status"] == "active",
                  holders=frozenset(row["holders"]))


def _canonical(value) -> str | None:
    try:
        return str(UUID(str(value)))
    except (TypeError, ValueError, AttributeError):
        return None


def confirm_office(caller: Caller, lookup: OfficeLookup) -> Caller:
    """The caller, if its role needs no office or the records show it holding
    that office now; otherwise ``Forbidden``."""
    office_spec = OFFICES.get(caller.role)
    if office_spec is None:
        return caller
    level, roles = office_spec
    org_id, member_id = _canonical(caller.org), _canonical(caller.sub)
    if org_id is None:
        raise Forbidden(f"a {caller.role} token must name an organisation id; "
                        f"{caller.org!r} is not one")
    if member_id is None:
        raise Forbidden(f"a {caller.role} token's sub must be the member id of the "
                        f"secretary (书记); {caller.sub!r} is not one")
    office = lookup(org_id, roles)
    if office is None or not office.active:
        raise Forbidden(f"organisation {org_id} is not an active organisation in the records")
    if office.level != level:
        raise Forbidden(f"a {caller.role} acts for a level-{level} organisation "
                        f"({LEVEL_ZH[level]}); {org_id} is at level {office.level}")
    if member_id not in {str(h) for h in office.holders}:
        raise Forbidden(f"the records do not show member {member_id} as secretary (书记) "
                        f"of organisation {org_id} now")
    return caller


class OfficeIdentity(Identity):
    """``Identity`` whose secretaries must hold the office in the service's own
    records: the application (the service's ``EventStore`` dependency) offers
    ``office(org_id, roles) -> Office | None``."""

    def setup(self):
        super().setup()
        from shared.runtime import EventStore  # runtime imports the relay; keep it lazy

        self._store: DependencyProvider = next(
            d for d in self.container.dependencies if isinstance(d, EventStore))

    def get_dependency(self, worker_ctx):
        resolve = super().get_dependency(worker_ctx)
        store = self._store

        def caller() -> Caller:
            return confirm_office(resolve(), store.app.office)

        return caller
