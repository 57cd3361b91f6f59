"""Small helpers for tests that look inside services' databases and containers."""
import psycopg
from psycopg.rows import dict_row

from shared.runtime import EventStore


def rows(settings, sql, params=()):
    with psycopg.connect(settings.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def event_store(container) -> EventStore:
    return next(d for d in container.dependencies if isinstance(d, EventStore))


def build_tree(admin, branches=3, members_per_branch=5):
    """A committee, one college, ``branches`` teacher branches with members."""
    committee = admin.create_organization(name="学校党委", kind="committee")
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    branch_ids, member_ids = [], []
    for b in range(branches):
        branch = admin.create_organization(name=f"教工第{b + 1}党支部", kind="teacher_branch",
                                           parent_id=college["id"])
        branch_ids.append(branch["id"])
        for m in range(members_per_branch):
            member = admin.register_member(name=f"党员{b}-{m}", branch_id=branch["id"],
                                           category="teacher", status="full",
                                           joined_on="2010-07-01")
            member_ids.append(member["id"])
    return {"committee": committee["id"], "college": college["id"], "branches": branch_ids,
            "members": member_ids}


def stored_events(settings, service: str) -> list[dict]:
    """The raw rows of a service's event store (eventsourcing's ``<app name>_events``)."""
    return rows(settings, f'SELECT * FROM "{service}_events" ORDER BY notification_id')


def learn_departments(app, departments=None) -> dict:
    """A consuming application's directory learns organizations' departments (the
    shipped defaults unless given) from the events organizations stores for
    them, as the relay would deliver them (envelopes, through its inbox).
    Returns the aggregates by code, for later events (rename, retire)."""
    from services.organizations.departments.domain import Department, load_defaults

    added = {}
    for d in departments or load_defaults():
        department = Department.add(d["code"], d["name"], {"sub": "zzb", "role": "org_admin"})
        deliver_events(app, department)
        added[d["code"]] = department
    return added


def deliver_events(app, *aggregates) -> None:
    """Deliver aggregates' pending events to ``app``'s directory as envelopes."""
    from shared.envelope import build_envelope

    for aggregate in aggregates:
        for event in aggregate.collect_events():
            app.directory.inbox.process(build_envelope(event, None, "organizations"),
                                        app.directory.apply)
