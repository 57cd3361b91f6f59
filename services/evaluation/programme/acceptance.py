"""验收 (acceptance) of a candidacy against its title's standard, scored with the
existing scheme machinery (``services/evaluation/schemes.py``): the level's
scheme (六个过硬 level 1, 五个到位 level 2, 七个有力 level 3) in its latest
published version, indicator scores with evidence, bonus, deductions, vetoes
and 评议 as in a cycle's assessment. The result decides 达标 or 未达标 by the
rule in ``acceptance.yaml`` (``domain.judge_acceptance``); a 未达标 is the
organisation's 创建未达标 of that year (``creation_shortfall``, R1).

A mixin of ``ProgrammeOperations`` (``self.app``: evaluation's application).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional
from uuid import UUID

import yaml
from pydantic import Field

from shared.commands import (Command, Evidence, Key, Query, RequiredEvidence, RequiredReason,
                             Version)
from shared.errors import Conflict, NotFound, ValidationError
from shared.identity import ORG_ADMIN, ROLES, Caller
from services.evaluation.programme.domain import STAGE_ZH, TITLES, Candidacy
from services.evaluation.schemes import DERIVATION_PROVIDERS, check_entries, score

ACCEPTANCE_RULES_FILE = Path(__file__).with_name("acceptance.yaml")
CODES_MAX = 200
Codes = Annotated[list[Key], Field(max_length=CODES_MAX)]


def load_acceptance_rules(path: Path = ACCEPTANCE_RULES_FILE) -> dict:
    """title code -> {pass_mark, dimension_floor} (the shipped 验收达标规则)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))["titles"]


class ScoreAcceptance(Command):
    candidacy_id: UUID
    scheme_id: Optional[Key] = None
    scores: Annotated[dict[Key, float], Field(max_length=CODES_MAX)] = Field(
        default_factory=dict)
    evidence: Annotated[dict[Key, Evidence], Field(max_length=CODES_MAX)] = Field(
        default_factory=dict)
    bonus: Codes = Field(default_factory=list)
    deductions: Codes = Field(default_factory=list)
    vetoes: Codes = Field(default_factory=list)
    appraisal: Optional[float] = None
    documents: RequiredEvidence
    on: Optional[dt.date] = None
    reason: RequiredReason
    held_until: Optional[dt.date] = None
    expected_version: Optional[Version] = None


class AcceptanceRef(Query):
    candidacy_id: UUID


class AcceptanceOperations:

    def _acceptance_scheme(self, level: int, scheme_id: str | None) -> dict:
        """The latest published version of the level's scheme (or the one named)."""
        rows = self.app.query(
            "SELECT DISTINCT ON (scheme_id) scheme_id, version, level, definition "
            "FROM eval_schemes WHERE level = %s ORDER BY scheme_id, version DESC", (level,))
        if scheme_id is not None:
            rows = [r for r in rows if r["scheme_id"] == scheme_id]
            if not rows:
                raise ValidationError.single("scheme_id", f"no level-{level} scheme "
                                             f"{scheme_id!r}")
        elif len(rows) != 1:
            raise ValidationError.single(
                "scheme_id", f"{len(rows)} schemes exist for level {level}: name one of "
                + ", ".join(r["scheme_id"] for r in rows))
        return rows[0]

    def _acceptance_derive(self, org_id: str, year: int):
        """Derived indicators from the organisation's records of the acceptance's year."""
        answers: dict = {}
        context = {"cycle_id": None, "period": str(year), "asked": {}}

        def derive(indicator: dict):
            if indicator["code"] not in answers:
                provider = DERIVATION_PROVIDERS.get(indicator.get("source"))
                answers[indicator["code"]] = provider(org_id, context) if provider else None
            return answers[indicator["code"]]
        return derive

    def score_acceptance(self, caller: Caller, payload: dict) -> dict:
        """验收: score a candidacy at 验收 against its title's standard; the result
        moves it to 达标 or 未达标 (``acceptance.yaml``) in the same save."""
        caller.require_role(ORG_ADMIN)
        cmd = ScoreAcceptance.parse(payload)
        candidacy = self.app.load(cmd.candidacy_id, Candidacy, "candidacy")
        if cmd.expected_version is not None and candidacy.version != cmd.expected_version:
            raise Conflict(f"the candidacy of {candidacy.org_name} changed (version "
                           f"{candidacy.version}, you read {cmd.expected_version}); reload")
        candidacy.require_at_acceptance()  # before any scoring: refused naming the stage
        row = self._acceptance_scheme(candidacy.level, cmd.scheme_id)
        definition = row["definition"]
        on = (cmd.on or self.app.clock().date())
        derive = self._acceptance_derive(candidacy.org_id, on.year)
        entries = {"scores": dict(cmd.scores),
                   "evidence": {k: list(v) for k, v in cmd.evidence.items()},
                   "bonus": list(cmd.bonus), "deductions": list(cmd.deductions),
                   "vetoes": list(cmd.vetoes), "appraisal": cmd.appraisal}
        derived = {}
        for ind in definition["indicators"]:
            if ind["scoring"] == "derived":
                value = derive(ind)
                if value is not None:
                    derived[ind["code"]] = value["explanation"] if isinstance(value, dict) \
                        else "from records"
        errors = check_entries(definition, entries, derived=derived)
        if errors:
            raise ValidationError(errors)
        result = score(definition, entries, derive)
        rule = load_acceptance_rules()[candidacy.title]
        candidacy.score_acceptance(
            {"scheme_id": row["scheme_id"], "version": row["version"], "level": row["level"]},
            entries, result, rule, on.isoformat(), caller.as_actor(), cmd.reason,
            list(cmd.documents), held_until=cmd.held_until.isoformat() if cmd.held_until
            else None)
        return self.app.commit(candidacy,
                               result=lambda: self.get_acceptance(caller, candidacy.id))

    def get_acceptance(self, caller: Caller, candidacy_id) -> dict:
        """A candidacy's acceptance(s) with score, band, breakdown, the rule and
        its findings, and the stage it led to."""
        caller.require_role(*ROLES)
        candidacy_id = AcceptanceRef.of(candidacy_id=candidacy_id).candidacy_id
        c = self.app.query_one("SELECT * FROM prog_candidacies WHERE id = %s", (candidacy_id,))
        if c is None:
            raise NotFound(f"candidacy {candidacy_id} not found")
        acceptances = [
            {"scheme_id": r["scheme_id"], "scheme_version": r["scheme_version"],
             "score": r["score"], "band_stars": r["band_stars"], "outcome": r["outcome"],
             "outcome_zh": STAGE_ZH[r["outcome"]], "rule": r["rule"],
             "findings": r["findings"], "breakdown": r["breakdown"], "entries": r["entries"],
             "on": r["on_date"].isoformat(), "actor": r["actor"], "reason": r["reason"],
             "evidence": r["evidence"], "recorded_at": r["recorded_at"].isoformat()}
            for r in self.app.query("SELECT * FROM prog_acceptances WHERE candidacy_id = %s "
                                    "ORDER BY version", (candidacy_id,))]
        return {"candidacy_id": str(candidacy_id), "org_id": str(c["org_id"]),
                "org_name": c["org_name"], "title": c["title"],
                "title_zh": TITLES[c["level"]][1], "standard": TITLES[c["level"]][2],
                "tier": c["tier"], "stage": c["stage"], "stage_zh": STAGE_ZH[c["stage"]],
                "held_from": c["held_from"].isoformat() if c["held_from"] else None,
                "held_until": c["held_until"].isoformat() if c["held_until"] else None,
                "acceptances": acceptances}
