"""Members (党员) in evaluation: the pioneer index (锋领指数) per member per year.

* Records arrive from organizations through the directory's inbox (exactly
  once, in order) into ``pi_*`` tables; nothing is typed in twice.
* org_admin publishes the index scheme (data, versioned) and closes a year
  (年度关账): every member's index is published as an event with its breakdown.
  A record that arrives or is corrected later for a closed year revises the
  index with an event naming that record as its cause.
* Privacy: a member's index reaches the member, the secretaries of their branch
  and its college, org_admin (组织部) and auditors (纪委办), and no one else.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Optional
from uuid import UUID

from psycopg.rows import tuple_row
from pydantic import Field

from shared.commands import Command, Mapping, Moment, Query, Reason, Version
from shared.domain import parse_moment
from shared.history import HistoryFilters
from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, MEMBER, ORG_ADMIN, Caller
from services.evaluation.members.domain import (IndexScheme, MemberYear, PioneerIndex,
                                                compute_index, default_index_scheme,
                                                validate_index_scheme)
from services.evaluation.members.projections import CONSUMED_DDL, RECORD_EVENTS, apply_record

SYSTEM_ACTOR = {"sub": "system", "role": "system"}
RECORD_ZH = {"checkup": "党性体检", "appraisal": "民主评议", "team": "项目攻坚团队",
             "course_project": "课程思政示范项目", "pledge": "亮诺践诺", "violation": "红线底线违规"}
PUBLISH_BATCH = 500
INDEX_LABELS = {"pioneer_index_published": "锋领指数发布 (年度关账)",
                "pioneer_index_revised": "锋领指数修订 (记录变更)"}


# A member's index as of %(at)s (the period in force, if any: ``version`` NULL
# when none) beside what the directory knows of the member now, in one statement.
INDEX_AS_OF = """
SELECT m.id IS NOT NULL AS member_known, m.branch_id::text AS member_branch, h.*
FROM (SELECT 1) one
LEFT JOIN dir_members m ON m.id = %(member)s
LEFT JOIN LATERAL (SELECT * FROM pi_index_history WHERE member_id = %(member)s
                   AND year = %(year)s AND valid_from <= %(at)s
                   ORDER BY valid_from DESC, version DESC LIMIT 1) h ON true"""


# Whether there is an index to answer with at %(at)s (its audit read is recorded).
INDEX_EXISTS = """EXISTS (SELECT 1 FROM pi_index_history WHERE member_id = %(member)s
                   AND year = %(year)s AND valid_from <= %(at)s)"""


class PublishIndexScheme(Command):
    definition: Mapping
    reason: Optional[Reason] = None


class CloseYear(Command):
    year: int = Field(ge=2000, le=2200)
    reason: Optional[Reason] = None


class MemberIndex(Command):
    member_id: UUID
    year: int = Field(ge=2000, le=2200)


class MemberIndexQuery(MemberIndex):
    as_of: Optional[Moment] = None  # the index as it stood then
    replay: bool = False  # with as_of: replayed from the store, not the read model


class IndexHistoryQuery(HistoryFilters):
    member_id: UUID
    year: int = Field(ge=2000, le=2200)


class IndexSchemeRef(Query):
    version: Optional[Version] = None


Run = Callable[[str, tuple], list[dict]]


def _label(row: dict) -> str:
    d = row["details"]
    what = d.get("grade") or d.get("result") or d.get("team") or d.get("title") \
        or d.get("content") or d.get("line") or ""
    status = d.get("status")
    return f"{RECORD_ZH.get(row['kind'], row['kind'])} {row['on']} {what}" + \
        (f" ({status})" if status and status != what else "")


class MembersIndex:
    """The members part of the evaluation application (``app.members``)."""

    def __init__(self, app, scheme_id: str = "pioneer_index"):
        self.app = app
        self.scheme_id = scheme_id
        with app.transaction() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext('members_ddl'))")
            for statement in CONSUMED_DDL:
                curs.execute(statement)
        app.directory.listen(self.on_record_event, types=RECORD_EVENTS)

    def install_default_scheme(self) -> None:
        definition = default_index_scheme()
        scheme_uuid = IndexScheme.id_for(definition["scheme_id"])
        if self.app.exists(scheme_uuid):
            return
        scheme = IndexScheme(id=scheme_uuid, scheme_id=definition["scheme_id"],
                             actor=SYSTEM_ACTOR)
        scheme.publish(definition, SYSTEM_ACTOR, "shipped default (seed 三.4, 五.2)")
        try:
            self.app.commit(scheme)
        except Conflict:
            pass  # another instance installed it at the same moment

    # -- the scheme ----------------------------------------------------------------
    def scheme(self, version: int | None = None) -> tuple[dict, int]:
        sql = "SELECT * FROM pi_schemes WHERE scheme_id = %s"
        params: list = [self.scheme_id]
        if version is not None:
            sql += " AND version = %s"
            params.append(version)
        row = self.app.query_one(sql + " ORDER BY version DESC LIMIT 1", params)
        if row is None:
            raise NotFound(f"index scheme {self.scheme_id} version {version or 'latest'}")
        return row["definition"], row["version"]

    def publish_index_scheme(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = PublishIndexScheme.parse(payload)
        definition = validate_index_scheme(cmd.definition)
        scheme_uuid = IndexScheme.id_for(definition["scheme_id"])
        if self.app.exists(scheme_uuid):
            scheme = self.app.load(scheme_uuid, IndexScheme, "index scheme")
        else:
            scheme = IndexScheme(id=scheme_uuid, scheme_id=definition["scheme_id"],
                                 actor=caller.as_actor())
        version = scheme.publish(definition, caller.as_actor(), cmd.reason)
        return self.app.commit(scheme, result=lambda: {
            "scheme_id": definition["scheme_id"], "version": version, "definition": definition})

    def get_index_scheme(self, caller: Caller, version: int | None = None) -> dict:
        caller.require_role(ORG_ADMIN, AUDITOR, COLLEGE_SECRETARY, BRANCH_SECRETARY, MEMBER)
        definition, version = self.scheme(IndexSchemeRef.of(version=version).version)
        return {"scheme_id": self.scheme_id, "version": version, "definition": definition}

    # -- facts -------------------------------------------------------------------------
    def facts(self, year: int, member_ids: list[str] | None = None,
              run: Run | None = None) -> dict[str, dict]:
        """Every member's facts for a year (or only those given): the meetings
        they were listed at (with the topic) and their records (with a label).

        The year's meetings are read once; each member's listing is then just
        (member, meeting, status), so the million rows of a large year stay small."""
        where, params = "year = %s", [year]
        if member_ids is not None:
            where += " AND member_id = ANY(%s::uuid[])"
            params.append(list(member_ids))
        listed = self._rows(f"SELECT member_id::text, record_id, status FROM pi_attendance "
                            f"WHERE {where}", tuple(params), run)
        wanted = None if member_ids is None else list({r[1] for r in listed})
        meetings = {rid: (kind, on, topic) for rid, kind, on, topic in self._rows(
            "SELECT record_id, kind, held_on::text, topic FROM pi_meetings WHERE year = %s"
            + ("" if wanted is None else " AND record_id = ANY(%s)"),
            (year,) if wanted is None else (year, wanted), run)}
        records = self._rows(
            f"SELECT member_id::text, record_id, kind, on_date::text, details "
            f"FROM pi_records WHERE {where}", tuple(params), run)
        out: dict[str, dict] = {}
        for member_id, record_id, status in listed:
            facts = out.get(member_id)
            if facts is None:
                facts = out[member_id] = {"meetings": [], "records": []}
            kind, on, topic = meetings[record_id]
            facts["meetings"].append({"record_id": record_id, "kind": kind, "on": on,
                                      "status": status, "topic": topic})
        for member_id, record_id, kind, on, details in records:
            row = {"record_id": record_id, "kind": kind, "on": on, "details": details}
            row["label"] = _label(row)
            out.setdefault(member_id, {"meetings": [], "records": []})["records"].append(row)
        return out

    def _rows(self, sql: str, params: tuple, run: Run | None) -> list[tuple]:
        """Rows as tuples: through ``run`` (the inbox's cursor) or a plain read."""
        if run is not None:
            return [tuple(r.values()) for r in run(sql, params)]
        with self.app.datastore.transaction(commit=False) as curs:
            curs.row_factory = tuple_row
            curs.execute(sql, params)
            return curs.fetchall()

    def _placement(self, member_ids: list[str] | None, run: Run) -> dict[str, dict]:
        """Each member's branch and college now (from the directory)."""
        sql = ("SELECT m.id::text AS member_id, m.name, m.branch_id::text AS branch_id, "
               "o.parent_id::text AS college_id, m.active FROM dir_members m "
               "LEFT JOIN dir_orgs o ON o.id = m.branch_id")
        params: tuple = ()
        if member_ids is not None:
            sql += " WHERE m.id = ANY(%s::uuid[])"
            params = (list(member_ids),)
        return {r["member_id"]: r for r in run(sql, params)}

    def compute_all(self, year: int, scheme: dict | None = None,
                    member_ids: list[str] | None = None, run: Run | None = None) -> dict:
        """member_id -> (result, branch_id, college_id, name) for every member active
        now or with records that year (or only those given)."""
        run = run or self.app.query
        scheme = scheme or self.scheme()[0]
        facts = self.facts(year, member_ids, run)
        placement = self._placement(member_ids, run)
        members = {m for m, p in placement.items() if p["active"]} | set(facts)
        if member_ids is not None:
            members &= set(member_ids)
        empty = {"meetings": [], "records": []}
        out = {}
        for member_id in members:
            place = placement.get(member_id) or {}
            result = compute_index(scheme, facts.get(member_id, empty))
            branch = place.get("branch_id") or _last_branch(facts.get(member_id), run)
            out[member_id] = (result, branch, place.get("college_id"), place.get("name"))
        return out

    # -- the year's close ------------------------------------------------------------------
    def close_year(self, caller: Caller, payload: dict) -> dict:
        """年度关账: publish every member's index for the year with its breakdown.

        The indices are saved in batches after the close itself; a close that
        was interrupted is finished by calling it again (it publishes only the
        indices still missing, under the scheme version the close named)."""
        caller.require_role(ORG_ADMIN)
        cmd = CloseYear.parse(payload)
        if cmd.year > dt.date.today().year:
            raise ValidationError.single("year", f"{cmd.year} has not begun")
        closed = self.app.query_one("SELECT scheme_version FROM pi_years WHERE year = %s",
                                    (cmd.year,))
        if closed is not None:
            scheme, version = self.scheme(closed["scheme_version"])
        else:
            scheme, version = self.scheme()
        results = self.compute_all(cmd.year, scheme)
        published_before = {r["m"] for r in self.app.query(
            "SELECT member_id::text AS m FROM pi_indices WHERE year = %s", (cmd.year,))}
        missing = {m: r for m, r in results.items() if m not in published_before}
        if closed is not None and not missing:
            raise ValidationError.single("year", f"{cmd.year} is already closed; later records "
                                         "revise the indices one by one")
        if closed is None:
            self.app.commit(MemberYear(
                id=MemberYear.id_for(cmd.year), year=cmd.year, scheme_id=self.scheme_id,
                scheme_version=version, members=len(results), actor=caller.as_actor(),
                reason=cmd.reason))
        pending, published, zeroed = [], 0, 0
        for member_id, (result, branch, college, name) in sorted(missing.items()):
            pending.append(PioneerIndex(
                id=PioneerIndex.id_for(member_id, cmd.year), member_id=member_id,
                member_name=name, year=cmd.year, branch_id=branch, college_id=college,
                score=result["score"], zeroed=result["zeroed"], zeroed_by=result["zeroed_by"],
                breakdown=result, scheme_id=self.scheme_id, scheme_version=version,
                actor=caller.as_actor(), reason=cmd.reason or f"{cmd.year} 年度锋领指数"))
            zeroed += result["zeroed"]
            if len(pending) >= PUBLISH_BATCH:
                self.app.commit(*pending)
                published += len(pending)
                pending = []
        if pending:
            self.app.commit(*pending)
            published += len(pending)
        return {"year": cmd.year, "scheme_id": self.scheme_id, "scheme_version": version,
                "published": published, "zeroed": zeroed,
                "already_published": len(published_before)}

    # -- later records ---------------------------------------------------------------------
    def on_record_event(self, curs, envelope: dict) -> None:
        """Directory listener: apply a record event; in a closed year, revise the
        indices it changes, naming it as the cause."""
        applied = apply_record(curs, envelope)
        if applied is None:
            return
        years, members = applied

        def run(sql, params=()):
            curs.execute(sql, params)
            return list(curs.fetchall())

        for year in sorted(years):
            closed = run("SELECT scheme_version FROM pi_years WHERE year = %s", (year,))
            if not closed or not members:
                continue
            scheme, _ = self.scheme(closed[0]["scheme_version"])
            cause = {"event_id": envelope["event_id"], "type": envelope["type"],
                     "record_id": envelope["data"]["record_id"],
                     "reason": envelope.get("reason"), "actor": envelope.get("actor")}
            self._revise(year, sorted(members), scheme, cause, run)

    def _revise(self, year: int, members: list[str], scheme: dict, cause: dict,
                run: Run) -> None:
        results = self.compute_all(year, scheme, members, run)
        changed = []
        for member_id, (result, branch, college, _) in results.items():
            index_id = PioneerIndex.id_for(member_id, year)
            if not self.app.exists(index_id):
                continue  # a member who joined after the close has no index that year
            index = self.app.load(index_id, PioneerIndex, "pioneer index")
            if index.revise(result, branch, college, cause, SYSTEM_ACTOR,
                            f"记录变更 {cause['type']}"):
                changed.append(index)
        if changed:
            self.app.commit(*changed)

    # -- reading -----------------------------------------------------------------------------
    def may_read(self, caller: Caller, member_id: str, branch_ids: set[str]) -> None:
        """A member's index and records: the member, the secretaries of their branch
        and its college, org_admin and auditors; no one else."""
        if caller.role in (ORG_ADMIN, AUDITOR):
            return
        if caller.role == MEMBER and caller.sub == str(member_id):
            return
        branch_ids = {b for b in branch_ids if b}
        if caller.role == BRANCH_SECRETARY and caller.org in branch_ids:
            return
        if caller.role == COLLEGE_SECRETARY and caller.org in {
                self.app.directory.college_of(b) for b in branch_ids}:
            return
        raise Forbidden("a member's pioneer index (锋领指数) is read by the member, the "
                        "secretaries of their branch and college, 组织部 and 纪委办 only")

    def get_member_index(self, caller: Caller, payload: dict) -> dict:
        """The published index with every point's records behind it; for a year
        not yet closed, the index so far (provisional). With ``as_of``, the
        index as published and revised by then (see ``index_as_of``)."""
        cmd = MemberIndexQuery.parse(payload)
        if cmd.as_of is not None:
            return self.index_as_of(caller, cmd)
        member_id = str(cmd.member_id)
        member = self.app.query_one("SELECT branch_id::text AS branch_id FROM dir_members "
                                    "WHERE id = %s", (member_id,))
        row = self.app.query_one("SELECT * FROM pi_indices WHERE member_id = %s AND year = %s",
                                 (member_id, cmd.year))
        if member is None and row is None:
            raise NotFound(f"member {member_id} is not known to evaluation")
        branches = {(member or {}).get("branch_id"),
                    str(row["branch_id"]) if row and row["branch_id"] else None}
        self.may_read(caller, member_id, branches)
        if row is not None:
            return {"member_id": member_id, "year": cmd.year, "published": True,
                    "score": row["score"], "zeroed": row["zeroed"],
                    "breakdown": row["breakdown"], "scheme_id": row["scheme_id"],
                    "scheme_version": row["scheme_version"], "revisions": row["revisions"],
                    "last_cause": row["last_cause"],
                    "published_at": row["published_at"].isoformat(),
                    "updated_at": row["updated_at"].isoformat()}
        scheme, version = self.scheme()
        facts = self.facts(cmd.year, [member_id]).get(member_id,
                                                      {"meetings": [], "records": []})
        result = compute_index(scheme, facts)
        return {"member_id": member_id, "year": cmd.year, "published": False,
                "score": result["score"], "zeroed": result["zeroed"], "breakdown": result,
                "scheme_id": self.scheme_id, "scheme_version": version, "revisions": 0,
                "last_cause": None}

    def index_as_of(self, caller: Caller, cmd: MemberIndexQuery) -> dict:
        """A member's 锋领指数 for a year as it stood at a moment: the last state
        published or revised by then, from ``pi_index_history`` (its validity
        periods), or with ``replay`` (org_admin, auditor) from the index's own
        events in the store; both answer alike. Before the year's close the
        index was not published: NotFound. The read is recorded (audit read)."""
        moment = parse_moment(cmd.as_of, "as_of")
        member_id = str(cmd.member_id)
        if cmd.replay:
            caller.require_role(ORG_ADMIN, AUDITOR)
            then = self._index_replayed(member_id, cmd.year, moment)
            member = self.app.query_one("SELECT branch_id::text AS branch_id FROM dir_members "
                                        "WHERE id = %s", (member_id,))
        else:
            params = {"member": member_id, "year": cmd.year, "at": moment}
            row, recorded = None, False
            if caller.role in (ORG_ADMIN, AUDITOR) or (caller.role == MEMBER
                                                       and caller.sub == member_id):
                # May read whatever the answer: the read and its audit record in one
                # round trip (recorded only where there is an index to answer with).
                rows = self.app.record_audit_read_with(
                    caller, member_id, "get_member_index", self._read_filters(cmd),
                    only_if=INDEX_EXISTS, then=INDEX_AS_OF, params=params)
                if rows is not None:
                    row, recorded = rows[0], True
            if row is None:
                # One statement: the period in force then, and the member's branch now.
                row = self.app.query_one(INDEX_AS_OF, params)
            member = {"branch_id": row["member_branch"]} if row["member_known"] else None
            then = row if row["version"] is not None else None
        branches = {(member or {}).get("branch_id"),
                    str(then["branch_id"]) if then and then["branch_id"] else None}
        if then is None and member is None:
            raise NotFound(f"member {member_id} is not known to evaluation")
        self.may_read(caller, member_id, branches)
        if then is None:
            raise NotFound(f"no pioneer index (锋领指数) of member {member_id} for {cmd.year} "
                           f"was published by {moment.isoformat()}")
        if cmd.replay or not recorded:
            self.app.record_audit_read(caller, member_id, "get_member_index",
                                       self._read_filters(cmd))
        return {"member_id": member_id, "year": cmd.year, "as_of": moment.isoformat(),
                "published": True, "score": then["score"], "zeroed": then["zeroed"],
                "breakdown": then["breakdown"], "scheme_id": then["scheme_id"],
                "scheme_version": then["scheme_version"], "revisions": then["revisions"],
                "last_cause": then["last_cause"],
                "branch_id": str(then["branch_id"]) if then["branch_id"] else None,
                "published_at": then["published_at"].isoformat(),
                "since": then["valid_from"].isoformat(), "version": then["version"],
                "answered_by": "replay" if cmd.replay else "read_model"}

    @staticmethod
    def _read_filters(cmd: MemberIndexQuery) -> dict:
        return {"year": cmd.year, "as_of": cmd.as_of, "replay": cmd.replay}

    def _index_replayed(self, member_id: str, year: int, moment: dt.datetime) -> dict | None:
        index = self.app.state_as_of(PioneerIndex.id_for(member_id, year), moment,
                                     "pioneer index")
        if not isinstance(index, PioneerIndex):
            return None
        return {"score": index.score, "zeroed": index.zeroed, "breakdown": index.breakdown,
                "scheme_id": index.scheme_id, "scheme_version": index.scheme_version,
                "revisions": index.revisions, "last_cause": index.last_cause,
                "branch_id": index.branch_id, "published_at": index.created_on,
                "valid_from": index.modified_on, "version": index.version}

    def index_history(self, caller: Caller, payload: dict) -> list[dict] | dict:
        """Every event of a member's index for a year (published, each revision and
        its cause) with Chinese labels, filtered by time and kind, as JSON, CSV or
        .xlsx (``shared.history``); the read is recorded (audit read)."""
        cmd = IndexHistoryQuery.parse(payload)
        row = self.app.query_one("SELECT branch_id::text AS b FROM pi_indices WHERE "
                                 "member_id = %s AND year = %s", (str(cmd.member_id), cmd.year))
        member = self.app.query_one("SELECT branch_id::text AS b FROM dir_members WHERE id = %s",
                                    (str(cmd.member_id),))
        self.may_read(caller, str(cmd.member_id), {(row or {}).get("b"), (member or {}).get("b")})
        if row is None:
            raise NotFound(f"no published index for {cmd.member_id} in {cmd.year}")
        filters = cmd.model_dump(mode="json", exclude={"member_id", "year"}, exclude_none=True)
        return self.app.audited_history(
            caller, {"aggregate_id": PioneerIndex.id_for(cmd.member_id, cmd.year), **filters},
            INDEX_LABELS, "pioneer index", subject_id=cmd.member_id)


def _last_branch(facts: dict | None, run: Run) -> str | None:
    """A member who has left: the branch of their last record that year."""
    if not facts:
        return None
    latest = max(facts["meetings"] + facts["records"], key=lambda r: r["on"], default=None)
    if latest is None:
        return None
    table = "pi_attendance" if latest in facts["meetings"] else "pi_records"
    rows = run(f"SELECT branch_id::text AS b FROM {table} WHERE record_id = %s",
               (latest["record_id"],))
    return rows[0]["b"] if rows else None
