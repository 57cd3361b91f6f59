"""Organisations' commands and queries (组织管理的命令与查询): what each RPC accepts,
as small pydantic models that name every bad field (see ``shared.commands``)."""
from __future__ import annotations

import datetime as dt
from typing import Literal, Optional
from uuid import UUID

from pydantic import Field

from shared.commands import (CollegeFilter, Command, Moment, Name, OrgRef, Page, Query,
                             Reason, RequiredReason, text_type)
from services.organizations.domain import (E_BRANCH_BASES, MEMBER_CATEGORIES, MEMBER_STATUSES,
                                           ORG_KINDS, ORG_ROLES)

OrgKind = Literal[tuple(ORG_KINDS)]  # type: ignore[valid-type]
Basis = Literal[tuple(E_BRANCH_BASES)]  # type: ignore[valid-type]
Category = Literal[tuple(MEMBER_CATEGORIES)]  # type: ignore[valid-type]
Status = Literal[tuple(MEMBER_STATUSES)]  # type: ignore[valid-type]
Role = Literal[tuple(ORG_ROLES)]  # type: ignore[valid-type]
StaffNo = text_type(40)


# -- commands ---------------------------------------------------------------
class CreateOrganization(Command):
    name: Name
    kind: OrgKind
    parent_id: Optional[UUID] = None
    basis: Optional[Basis] = None
    reason: Optional[Reason] = None
    org_id: Optional[UUID] = None


class RenameOrganization(Command):
    org_id: UUID
    name: Name
    reason: Optional[Reason] = None


class MoveOrganization(Command):
    org_id: UUID
    parent_id: UUID
    reason: Optional[Reason] = None


class MergeBranches(Command):
    source_id: UUID
    target_id: UUID
    reason: RequiredReason


class DissolveOrganization(Command):
    org_id: UUID
    reason: RequiredReason


class RegisterMember(Command):
    name: Name
    branch_id: UUID
    category: Category
    status: Status
    joined_on: dt.date
    full_on: Optional[dt.date] = None
    double_leader: bool = False
    staff_no: Optional[StaffNo] = None
    reason: Optional[Reason] = None
    member_id: Optional[UUID] = None


class TransferMember(Command):
    member_id: UUID
    to_branch_id: UUID
    effective_on: dt.date
    reason: Optional[Reason] = None


class ConvertMember(Command):
    member_id: UUID
    effective_on: dt.date
    reason: Optional[Reason] = None


class ChangeCategory(Command):
    member_id: UUID
    category: Category
    effective_on: dt.date
    reason: Optional[Reason] = None


class SetDoubleLeader(Command):
    member_id: UUID
    double_leader: bool
    reason: Optional[Reason] = None


class MemberLeaves(Command):
    member_id: UUID
    effective_on: dt.date
    reason: RequiredReason


class AssignRole(Command):
    org_id: UUID
    member_id: UUID
    role: Role
    reason: Optional[Reason] = None


class RevokeRole(Command):
    org_id: UUID
    member_id: UUID
    role: Role
    reason: Optional[Reason] = None


class ListMembers(Query):
    org_id: UUID
    page: Page = 1
    page_size: int = Field(default=50, ge=1, le=500)
    category: Optional[Category] = None
    status: Optional[Status] = None
    name_contains: Optional[Name] = None
    include_left: bool = False
    as_of: Optional[Moment] = None  # ISO date or timestamp: the members then


# -- queries ----------------------------------------------------------------
class MemberQuery(Query):
    member_id: UUID
    as_of: Optional[Moment] = None  # the member then
    replay: bool = False  # as of: replay the store instead of reading member_history


class OrgAsOf(Query):
    org_id: UUID
    as_of: Optional[Moment] = None


class CoverageQuery(CollegeFilter):
    """双带头人 coverage (R5): one college, as of a moment."""
    as_of: Optional[Moment] = None


class TreeQuery(Query):
    as_of: Optional[Moment] = None
    include_closed: bool = False


class AggregateRef(Query):
    """An organisation's or member's id (export_history)."""
    aggregate_id: UUID
