"""Schemes (评价指标体系) and evaluation cycles (考评周期), and who may act on an
assessment (scope): the ground the workflow (``application.py``) and the star
ratings (``stars.py``) stand on.

Organisations come from the service's own ``OrgDirectory`` (organizations'
events); new ones join open cycles of their level and dissolved or merged ones
drop out through a directory listener (``_on_org_event``).
"""
from __future__ import annotations

import datetime as dt
from uuid import uuid4

import orjson

from shared.errors import Conflict, Forbidden, NotFound, ValidationError
from shared.identity import (AUDITOR, BRANCH_SECRETARY, COLLEGE_SECRETARY, MEMBER, ORG_ADMIN,
                             ROLES, Caller)
from services.evaluation.ratings.domain import Assessment, Cycle, Rating, Scheme
from services.evaluation.ratings.commands import (PublishScheme, OpenCycle, CycleOrg, SchemeRef,
                                                  CycleRef)
from services.evaluation.schemes import (RATED_LEVELS, default_schemes, parse_scheme_text,
                                         validate_scheme)

SYSTEM_ACTOR = {"sub": "system", "role": "system"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CycleOperations:
    """Schemes, cycles and scope checks, mixed into the evaluation application."""

    # -- helpers -------------------------------------------------------------
    def _install_default_schemes(self) -> None:
        """Publish the shipped defaults once (version 1 of each)."""
        for definition in default_schemes():
            scheme_uuid = Scheme.id_for(definition["scheme_id"])
            if self.exists(scheme_uuid):
                continue
            scheme = Scheme.register(definition["scheme_id"], definition["level"], SYSTEM_ACTOR)
            scheme.publish(definition, SYSTEM_ACTOR, "shipped default (seed 二-四)")
            try:
                self.commit(scheme)
            except Conflict:
                pass  # another instance installed it at the same moment

    def _scheme_for(self, scheme_id: str | None, level: int) -> Scheme:
        if scheme_id is None:
            rows = self.query("SELECT DISTINCT scheme_id FROM eval_schemes WHERE level = %s "
                              "ORDER BY scheme_id", (level,))
            if len(rows) != 1:
                raise ValidationError.single(
                    "scheme_id", f"{len(rows)} schemes exist for level {level}: name one of "
                    + ", ".join(r["scheme_id"] for r in rows))
            scheme_id = rows[0]["scheme_id"]
        try:  # one load (an existence check first loaded it twice)
            return self.load(Scheme.id_for(scheme_id), Scheme, "scheme")
        except NotFound:
            raise ValidationError.single("scheme_id", f"no scheme {scheme_id!r}") from None

    def _cycle(self, cycle_id) -> Cycle:
        return self.load(cycle_id, Cycle, "cycle")

    def _assessment(self, cycle: Cycle, org_id, expected_version: int | None = None
                    ) -> Assessment:
        if not cycle.includes(org_id):
            raise NotFound(f"organisation {org_id} is not in cycle {cycle.name}")
        a = self.load(Assessment.id_for(cycle.id, org_id), Assessment, "assessment")
        if expected_version is not None and a.version != expected_version:
            raise Conflict(f"the assessment of {a.org_name} changed (version {a.version}, "
                           f"you read {expected_version}); reload and try again")
        return a

    def _definition(self, cycle: Cycle) -> dict:
        """The scheme version (评价指标体系) the cycle was opened under, the caller's
        own copy. A published version never changes (a change is a new
        version), so it is kept once read, as JSON: loading the scheme for every
        submission copied the whole aggregate out of the library's cache."""
        if not cycle.scheme_version:
            return self._scheme_for(cycle.scheme_id, cycle.level).definition(None)
        known = self.__dict__.setdefault("_published_definitions", {})
        key = (cycle.scheme_id, cycle.level, cycle.scheme_version)
        stored = known.get(key)
        if stored is None:
            stored = known[key] = orjson.dumps(self._scheme_for(
                cycle.scheme_id, cycle.level).definition(cycle.scheme_version))
        return orjson.loads(stored)

    def _rating(self, org_id, org_name: str, level: int) -> Rating:
        rating_id = Rating.id_for(org_id)
        if self.exists(rating_id):
            return self.load(rating_id, Rating, "rating")
        return Rating.open_for(org_id, org_name, level, SYSTEM_ACTOR)

    # -- scope ---------------------------------------------------------------
    def _is_secretary_of(self, caller: Caller, a: Assessment) -> bool:
        if a.level == 3:
            return caller.role == BRANCH_SECRETARY and caller.org == a.org_id
        if a.level == 2:
            return caller.role == COLLEGE_SECRETARY and caller.org == a.org_id
        return caller.role == ORG_ADMIN  # the committee's own self-check

    def _may_submit(self, caller: Caller, a: Assessment) -> None:
        if not self._is_secretary_of(caller, a):
            who = {3: "the branch's secretary (branch_secretary of this branch)",
                   2: "the college's secretary (college_secretary of this college)",
                   1: "组织部 (org_admin)"}[a.level]
            raise Forbidden(f"only {who} submits the self-assessment (自评) of {a.org_name}")

    def _may_review(self, caller: Caller, a: Assessment) -> None:
        if caller.role == ORG_ADMIN:
            return
        if a.level == 3 and caller.role == COLLEGE_SECRETARY and caller.org == a.college_id:
            return
        raise Forbidden("a college secretary reviews (审核) its own college's branches only; "
                        "colleges and the committee are reviewed by 组织部 (org_admin)")

    def _may_read_assessment(self, caller: Caller, a: Assessment) -> None:
        if caller.role in (ORG_ADMIN, AUDITOR):
            return
        if self._is_secretary_of(caller, a):
            return
        if caller.role == COLLEGE_SECRETARY and caller.org == a.college_id:
            return
        if caller.role == MEMBER and a.stage in ("publicity", "final", "appeal") \
                and self._member_belongs(caller.sub, a):
            return
        raise Forbidden(f"role '{caller.role}' may not read the assessment of {a.org_name}")

    def _member_belongs(self, member_id: str, a: Assessment) -> bool:
        row = self.query_one("SELECT branch_id FROM dir_members WHERE id::text = %s AND active",
                             (member_id,))
        if row is None or row["branch_id"] is None:
            return False
        branch = str(row["branch_id"])
        if a.level == 3:
            return branch == a.org_id
        if a.level == 2:
            return self.directory.college_of(branch) == a.org_id
        return True

    # -- schemes -------------------------------------------------------------
    def publish_scheme(self, caller: Caller, payload: dict) -> dict:
        """Load a scheme from a file's text (YAML/JSON) or a mapping; every error at once."""
        caller.require_role(ORG_ADMIN)
        cmd = PublishScheme.parse(payload)
        if (cmd.definition is None) == (cmd.text is None):
            raise ValidationError.single("definition", "give either definition or text")
        data = cmd.definition if cmd.definition is not None else \
            parse_scheme_text(cmd.text, cmd.format)
        definition = validate_scheme(data)
        if cmd.dry_run:
            return {"valid": True, "scheme_id": definition["scheme_id"],
                    "level": definition["level"], "published": False}
        scheme_uuid = Scheme.id_for(definition["scheme_id"])
        if self.exists(scheme_uuid):
            scheme = self.load(scheme_uuid, Scheme, "scheme")
        else:
            scheme = Scheme.register(definition["scheme_id"], definition["level"],
                                     caller.as_actor())
        version = scheme.publish(definition, caller.as_actor(), cmd.reason)
        return self.commit(scheme, result=lambda: self.get_scheme(caller, definition["scheme_id"], version))

    def get_scheme(self, caller: Caller, scheme_id: str, version: int | None = None) -> dict:
        caller.require_role(*ROLES)
        query = SchemeRef.of(scheme_id=scheme_id, version=version)
        scheme_id, version = query.scheme_id, query.version
        if version is None:
            row = self.query_one("SELECT * FROM eval_schemes WHERE scheme_id = %s "
                                 "ORDER BY version DESC LIMIT 1", (scheme_id,))
        else:
            row = self.query_one("SELECT * FROM eval_schemes WHERE scheme_id = %s AND "
                                 "version = %s", (scheme_id, int(version)))
        if row is None:
            raise NotFound(f"scheme {scheme_id} version {version or 'latest'} not found")
        return {"scheme_id": row["scheme_id"], "version": row["version"], "level": row["level"],
                "title": row["title"], "published_at": row["published_at"].isoformat(),
                "published_by": row["actor"], "definition": row["definition"]}

    def list_schemes(self, caller: Caller) -> list[dict]:
        caller.require_role(*ROLES)
        return [{"scheme_id": r["scheme_id"], "level": r["level"], "title": r["title"],
                 "latest_version": r["version"], "published_at": r["published_at"].isoformat()}
                for r in self.query(
                    "SELECT DISTINCT ON (scheme_id) * FROM eval_schemes "
                    "ORDER BY scheme_id, version DESC")]

    # -- cycles --------------------------------------------------------------
    def open_cycle(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = OpenCycle.parse(payload)
        if cmd.level not in RATED_LEVELS:
            raise ValidationError.single(
                "level", "star ratings are for grassroots organisations (levels 2 and 3); the "
                "university committee pursues its title (示范高校), not stars")
        scheme = self._scheme_for(cmd.scheme_id, cmd.level)
        if scheme.level != cmd.level:
            raise ValidationError.single("scheme_id", f"scheme {scheme.scheme_id} is for "
                                         f"level {scheme.level}, not {cmd.level}")
        definition = scheme.definition()
        if cmd.college_id is not None:
            college = self._org(cmd.college_id, "college_id")
            if college["level"] != 2 or cmd.level != 3:
                raise ValidationError.single("college_id", "limits a branch (level 3) cycle to "
                                             "the branches of one college (level 2)")
        orgs = self._cycle_orgs(cmd)
        now = self.clock()
        cycle = Cycle.open(
            uuid4(), cmd.name, cmd.level, cmd.period, [o["id"] for o in orgs], cmd.deadlines,
            scheme.scheme_id, scheme.latest_version,
            cmd.publicity_days if cmd.publicity_days is not None else definition["publicity_days"],
            cmd.appeal_days if cmd.appeal_days is not None else definition["appeal_days"],
            cmd.auto_add, cmd.college_id, now, caller.as_actor(), cmd.reason)
        assessments = [Assessment.start(cycle.id, o["id"], o["name"], o["level"],
                                        self._college_of_row(o), caller.as_actor())
                       for o in orgs]
        return self.commit(cycle, *assessments, result=lambda: self.get_cycle(caller, cycle.id))

    def _college_of_row(self, row: dict) -> str | None:
        if row["level"] == 2:
            return str(row["id"])
        if row["level"] == 3:
            return str(row["parent_id"])
        return None

    def _cycle_orgs(self, cmd: OpenCycle) -> list[dict]:
        if cmd.org_ids is None:
            sql = "SELECT * FROM dir_orgs WHERE level = %s AND status = 'active'"
            params: list = [cmd.level]
            if cmd.college_id is not None:
                sql += " AND parent_id = %s"
                params.append(str(cmd.college_id))
            rows = self.query(sql + " ORDER BY name", params)
            if not rows:
                raise ValidationError.single("org_ids", f"no active level-{cmd.level} "
                                             "organisations to evaluate")
            return rows
        errors, rows = [], []
        for i, org_id in enumerate(cmd.org_ids):
            row = self.directory.org(org_id)
            if row is None:
                errors.append({"field": f"org_ids[{i}]", "message": f"unknown organisation {org_id}"})
            elif row["status"] != "active":
                errors.append({"field": f"org_ids[{i}]", "message": f"{row['name']} is {row['status']}"})
            elif row["level"] != cmd.level:
                errors.append({"field": f"org_ids[{i}]",
                               "message": f"{row['name']} is level {row['level']}, not {cmd.level}"})
            elif cmd.college_id is not None and str(row["parent_id"]) != str(cmd.college_id):
                errors.append({"field": f"org_ids[{i}]",
                               "message": f"{row['name']} is not a branch of college_id"})
            else:
                rows.append(row)
        if errors:
            raise ValidationError(errors)
        return rows

    def add_cycle_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = CycleOrg.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        org = self._org(cmd.org_id)
        if org["status"] != "active" or org["level"] != cycle.level:
            raise ValidationError.single("org_id", f"{org['name']} is {org['status']}, level "
                                         f"{org['level']}; the cycle is for level {cycle.level}")
        self._add_to_cycle(cycle, org, caller.as_actor(), cmd.reason)
        return self.get_cycle(caller, cycle.id)

    def _add_to_cycle(self, cycle: Cycle, org: dict, actor: dict, reason) -> None:
        added = cycle.add_organization(org["id"], org["name"], actor, reason)
        assessment_id = Assessment.id_for(cycle.id, org["id"])
        if not added and self.exists(assessment_id):
            return  # already in (a redelivered event, or added by hand)
        pending = [cycle]
        if not self.exists(assessment_id):
            pending.append(Assessment.start(cycle.id, org["id"], org["name"], org["level"],
                                            self._college_of_row(org), actor, reason))
        self.commit(*pending)

    def drop_cycle_organization(self, caller: Caller, payload: dict) -> dict:
        caller.require_role(ORG_ADMIN)
        cmd = CycleOrg.parse(payload)
        cycle = self._cycle(cmd.cycle_id)
        if not cycle.includes(cmd.org_id):
            raise ValidationError.single("org_id", "is not in this cycle")
        self._drop_from_cycle(cycle, str(cmd.org_id), caller.as_actor(), cmd.reason)
        return self.get_cycle(caller, cycle.id)

    def _drop_from_cycle(self, cycle: Cycle, org_id: str, actor: dict, reason) -> None:
        a = self.load(Assessment.id_for(cycle.id, org_id), Assessment, "assessment")
        if not a.drop(actor, reason):
            raise ValidationError.single("org_id", f"{a.org_name} has a final result in this "
                                         "cycle; it stays on record")
        cycle.drop_organization(org_id, actor, reason)
        self.commit(cycle, a)

    def _on_org_event(self, curs, envelope: dict) -> None:
        """Directory listener: new organisations join open cycles of their level
        (auto_add); dissolved or merged ones drop out. Idempotent, so a
        redelivered event changes nothing twice."""
        kind = envelope["type"]
        if kind == "organization_created":
            data = envelope["data"]
            if data["level"] not in (2, 3):
                return
            curs.execute(
                "SELECT id FROM eval_cycles WHERE level = %s AND auto_add "
                "AND (deadlines->>'approval')::timestamptz > now() "
                "AND (college_id IS NULL OR college_id = %s)",
                (data["level"], data["parent_id"]))
            org = {"id": envelope["originator_id"], "name": data["name"],
                   "level": data["level"], "parent_id": data["parent_id"]}
            for row in curs.fetchall():
                cycle = self._cycle(row["id"])
                self._add_to_cycle(cycle, org, envelope.get("actor") or SYSTEM_ACTOR,
                                   "新建组织 created after the cycle opened")
        elif kind in ("organization_dissolved", "organization_merged"):
            curs.execute("SELECT cycle_id FROM eval_assessments WHERE org_id = %s "
                         "AND stage NOT IN ('final', 'dropped', 'appeal')",
                         (envelope["originator_id"],))
            for row in curs.fetchall():
                cycle = self._cycle(row["cycle_id"])
                if cycle.includes(envelope["originator_id"]):
                    self._drop_from_cycle(cycle, envelope["originator_id"],
                                          envelope.get("actor") or SYSTEM_ACTOR,
                                          f"组织撤销 {kind.split('_')[1]}")

    def get_cycle(self, caller: Caller, cycle_id) -> dict:
        caller.require_role(*ROLES)
        cycle_id = CycleRef.of(cycle_id=cycle_id).cycle_id
        cycle = self._cycle(cycle_id)
        return {"id": str(cycle.id), "name": cycle.name, "level": cycle.level,
                "period": cycle.period, "scheme_id": cycle.scheme_id,
                "scheme_version": cycle.scheme_version, "deadlines": cycle.deadlines,
                "publicity_days": cycle.publicity_days, "appeal_days": cycle.appeal_days,
                "auto_add": cycle.auto_add, "college_id": cycle.college_id,
                "org_ids": [o for o in cycle.org_ids if o not in cycle.dropped],
                "dropped": list(cycle.dropped), "version": cycle.version,
                "opened_at": cycle.created_on.isoformat()}

    def list_cycles(self, caller: Caller) -> list[dict]:
        caller.require_role(*ROLES)
        return [{"id": str(r["id"]), "name": r["name"], "level": r["level"],
                 "period": r["period"], "scheme_id": r["scheme_id"],
                 "scheme_version": r["scheme_version"], "opened_at": r["opened_at"].isoformat()}
                for r in self.query("SELECT * FROM eval_cycles ORDER BY opened_at DESC")]
