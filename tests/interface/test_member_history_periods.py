"""``member_history`` (a member's states with their validity periods, 历史名册)
against the member's own events: live (each command's page) and rebuilt from
zero (every event in one page, the row changes folded between transfers and
leavings applied one by one), every period equals the member's state at that
version, from that event's time to the next one's."""
import random

from services.organizations.application import OrganizationsApplication
from services.organizations.asof.projections import _COLUMNS
from shared.identity import Caller

ADMIN = Caller("zuzhibu", "org_admin")


def expected_periods(app, member_ids) -> dict:
    """(member, version) -> (state, valid_from, valid_to), from the aggregate at
    each of its versions (what the events say, not what a read model does)."""
    out = {}
    for member_id in member_ids:
        latest = app.repository.get(member_id)
        versions = [app.repository.get(member_id, version=v) for v in range(1, latest.version + 1)]
        for i, m in enumerate(versions):
            state = tuple(str(getattr(m, c, None)) if getattr(m, c, None) is not None else None
                          for c in _COLUMNS)
            until = versions[i + 1].modified_on if i + 1 < len(versions) else None
            out[(str(member_id), m.version)] = (state, m.modified_on, until)
    return out


def stored_periods(app) -> dict:
    return {(str(r["member_id"]), r["version"]): (
        tuple(str(r[c]) if r[c] is not None else None for c in _COLUMNS),
        r["valid_from"], r["valid_to"]) for r in app.query("SELECT * FROM member_history")}


def test_member_periods_live_and_rebuilt_equal_the_members_states(clean_databases):
    app = OrganizationsApplication(clean_databases["organizations"])
    try:
        committee = app.create_organization(ADMIN, {"name": "学校党委", "kind": "committee"})
        college = app.create_organization(ADMIN, {"name": "机电学院党总支",
                                                  "kind": "general_branch",
                                                  "parent_id": committee["id"]})
        branches = [app.create_organization(ADMIN, {
            "name": f"教工{i}支部", "kind": "teacher_branch", "parent_id": college["id"]})["id"]
            for i in range(3)]
        members = [app.register_member(ADMIN, {
            "name": f"党员{i}", "branch_id": branches[i % 3], "category": "teacher",
            "status": "probationary", "joined_on": "2024-07-01"})["id"] for i in range(6)]
        rng = random.Random(5)
        where = {m: branches[i % 3] for i, m in enumerate(members)}
        converted, active = set(), set(members)
        leader = {m: False for m in members}
        category = {m: "teacher" for m in members}
        for step in range(60):
            m = rng.choice(sorted(active))
            kind = rng.choice(["double_leader", "category", "transfer", "convert", "leave"]
                              if step > 40 else ["double_leader", "category", "transfer",
                                                 "convert"])
            if kind == "double_leader":
                leader[m] = not leader[m]
                app.set_double_leader(ADMIN, {"member_id": m, "double_leader": leader[m]})
            elif kind == "category":
                category[m] = rng.choice([c for c in ("teacher", "student", "staff")
                                          if c != category[m]])
                app.change_member_category(ADMIN, {"member_id": m, "category": category[m],
                                                   "effective_on": "2025-03-01"})
            elif kind == "transfer":
                to = rng.choice([b for b in branches if b != where[m]])
                app.transfer_member(ADMIN, {"member_id": m, "to_branch_id": to,
                                            "effective_on": "2025-04-01"})
                where[m] = to
            elif kind == "convert" and m not in converted:
                app.convert_member_to_full(ADMIN, {"member_id": m, "effective_on": "2025-07-01"})
                converted.add(m)
            elif kind == "leave" and len(active) > 2:
                app.member_leaves(ADMIN, {"member_id": m, "effective_on": "2025-09-01",
                                          "reason": "退休"})
                active.discard(m)
        expected = expected_periods(app, [__import__("uuid").UUID(m) for m in members])
        assert len(expected) > 50
        assert stored_periods(app) == expected  # live: one command's events a page
        app.projector.rebuild()  # every event in one page: the row changes folded
        assert stored_periods(app) == expected
    finally:
        app.close()
