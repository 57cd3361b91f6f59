"""How organisations' read-model rows are answered (组织与党员的返回格式): the
shapes every query and command of organizations returns."""
from __future__ import annotations

import datetime as dt
from uuid import UUID

from shared.domain import derived_id
from services.organizations.domain import (E_BRANCH_BASES, MEMBER_CATEGORIES, MEMBER_STATUSES,
                                           ORG_KINDS, ORG_ROLES)


def demo_id(*parts) -> UUID:
    return derived_id("demo", *parts)


def _s(value):
    return None if value is None else str(value) if not isinstance(value, dt.date) \
        else value.isoformat()


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _roll_up_member_counts(node: dict, in_branch: dict[str, int],
                           key: str = "member_count") -> int:
    """Set ``key`` (a head count) on a node and its subtree; returns the node's count."""
    node[key] = in_branch.get(node["id"], 0) + sum(
        _roll_up_member_counts(child, in_branch, key) for child in node["children"])
    return node[key]


def _org_ref(r) -> dict:
    return {"id": str(r["id"]), "name": r["name"], "level": r["level"], "kind": r["kind"]}


def _org_out(r) -> dict:
    return {"id": str(r["id"]), "name": r["name"], "kind": r["kind"],
            "kind_zh": ORG_KINDS[r["kind"]][1], "level": r["level"],
            "parent_id": _s(r["parent_id"]), "basis": r["basis"],
            "basis_zh": E_BRANCH_BASES.get(r["basis"]) if r["basis"] else None,
            "status": r["status"], "merged_into": _s(r["merged_into"]),
            "created_at": r["created_at"].isoformat(), "updated_at": r["updated_at"].isoformat(),
            "version": r["version"]}


def _history_ref(r) -> dict:
    return {"id": str(r["org_id"]), "name": r["name"], "level": r["level"], "kind": r["kind"]}


def _history_out(r) -> dict:
    return {"id": str(r["org_id"]), "name": r["name"], "kind": r["kind"],
            "kind_zh": ORG_KINDS[r["kind"]][1], "level": r["level"],
            "parent_id": _s(r["parent_id"]), "basis": r["basis"], "status": r["status"],
            "version": r["version"], "valid_from": r["valid_from"].isoformat(),
            "valid_to": r["valid_to"].isoformat() if r["valid_to"] else None}


def _member_out(r) -> dict:
    return {"id": str(r["id"]), "name": r["name"], "branch_id": _s(r["branch_id"]),
            "branch_name": r.get("branch_name"), "category": r["category"],
            "category_zh": MEMBER_CATEGORIES[r["category"]], "status": r["status"],
            "status_zh": MEMBER_STATUSES[r["status"]], "joined_on": _s(r["joined_on"]),
            "full_on": _s(r["full_on"]), "double_leader": r["double_leader"],
            "staff_no": r["staff_no"], "active": r["active"], "left_on": _s(r["left_on"])}
