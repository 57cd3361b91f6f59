"""Demo evaluation data on top of the demo university: last year's branch star
rating (2025年度), finished, so every branch has a rating and a few sit at ★3 or
below; this year's cycle (2026年度) open, with some self-assessments in.

Loaded through the evaluation RPC (branch secretaries submit, 组织部 reviews and
approves); cycles are looked up by name first, so running it again changes nothing.
"""
from __future__ import annotations

import datetime as dt
import random
import time

LAST_YEAR = "2025年度党支部星级考评（演示）"
THIS_YEAR = "2026年度党支部星级考评（演示）"


def _entries(scheme: dict, fraction: float, appraisal: float) -> dict:
    return {"scores": {i["code"]: round(i["max_score"] * fraction, 1)
                       for i in scheme["indicators"]},
            "evidence": {i["code"]: [f"demo://{i['code']}"] for i in scheme["indicators"]
                         if i["evidence"]},
            "appraisal": appraisal}


def _in(days: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).isoformat()


def load(admin, as_secretary, branch_count: int, role_count: int = 0,
         wait: float = 60.0) -> dict:
    """``admin``: an org_admin proxy; ``as_secretary(branch_id)``: the proxy of the
    branch's secretary (a token naming the member in office). ``branch_count``,
    ``role_count``: organisations and roles the directory should hold: evaluation
    honours a secretary's token only once its directory shows the role."""
    deadline = time.time() + wait
    while True:
        directory = admin.evaluation.consumer_status()["org_directory"]
        if directory["organizations"] >= branch_count and directory["roles"] >= role_count:
            break
        if time.time() > deadline:
            raise RuntimeError("evaluation has not received the organisation tree yet")
        time.sleep(0.5)
    existing = {c["name"] for c in admin.evaluation.list_cycles()}
    created = {"cycles": 0, "ratings": 0}
    scheme = admin.evaluation.get_scheme("model_branch")["definition"]
    rng = random.Random(2025)
    if LAST_YEAR not in existing:
        cycle = admin.evaluation.open_cycle(
            name=LAST_YEAR, level=3, period="2025", publicity_days=1 / 86400,
            deadlines={"self_assessment": _in(30), "review": _in(45), "approval": _in(60)},
            reason="演示数据 demo data")
        org_ids = [o["org_id"] for o in admin.evaluation.progress_board(cycle["id"])["organizations"]]
        for org_id in org_ids:
            fraction = rng.uniform(0.6, 0.98)
            as_secretary(org_id).evaluation.submit_self_assessment(
                cycle_id=cycle["id"], org_id=org_id, **_entries(scheme, min(fraction + .03, 1), 85))
            admin.evaluation.submit_review(cycle_id=cycle["id"], org_id=org_id,
                                           **_entries(scheme, fraction, rng.uniform(70, 95)))
        admin.evaluation.approve(cycle_id=cycle["id"], org_ids=org_ids)
        time.sleep(1.2)  # the demo's publicity window is one second
        admin.evaluation.close_publicity(cycle_id=cycle["id"], org_ids=org_ids)
        created["cycles"] += 1
        created["ratings"] = len(org_ids)
    if THIS_YEAR not in existing:
        cycle = admin.evaluation.open_cycle(
            name=THIS_YEAR, level=3, period="2026",
            deadlines={"self_assessment": _in(14), "review": _in(28), "approval": _in(42)},
            reason="演示数据 demo data")
        org_ids = [o["org_id"] for o in admin.evaluation.progress_board(cycle["id"])["organizations"]]
        for org_id in org_ids[::3]:
            as_secretary(org_id).evaluation.submit_self_assessment(
                cycle_id=cycle["id"], org_id=org_id, **_entries(scheme, rng.uniform(.7, .95), 85))
        created["cycles"] += 1
    return created
