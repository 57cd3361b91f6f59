"""组织部 dashboard (组织部看板): the programme at a glance, server-rendered.

Every number comes from an RPC answer made with the viewer's own token and
links down (下钻) to the organisations behind it. The charts are SVG drawn
here, on the server: no script is sent to the browser.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import jinja2
import jwt

TEMPLATES = Path(__file__).parent / "templates"
STARS = ("5", "4", "3", "2", "1")
STAR_COLOURS = {"5": "#b71c1c", "4": "#e53935", "3": "#fb8c00", "2": "#fdd835", "1": "#9e9e9e",
                "unrated": "#cfd8dc"}
STAGE_ORDER = ("self_assessment", "review", "approval", "publicity", "appeal", "final",
               "dropped")
STAGE_ZH = {"self_assessment": "自评", "review": "审核", "approval": "审定", "publicity": "公示",
            "appeal": "申诉", "final": "已定级", "dropped": "已退出"}
COOKIE = "lianchuang_token"

env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                         autoescape=True, undefined=jinja2.StrictUndefined)


def token_expiry(token: str) -> int:
    """The ``exp`` of a token already verified (the cookie lives as long as the token)."""
    return int(jwt.decode(token, options={"verify_signature": False}).get("exp", 0))


def render(template: str, **context) -> str:
    return env.get_template(template).render(**context)


def link(**params) -> str:
    return "/dashboard/orgs?" + urlencode({k: v for k, v in params.items() if v is not None})


def open_cycle(call) -> dict | None:
    """The newest cycle with an organisation not yet final (else the newest)."""
    cycles = call("evaluation", "list_cycles")
    for cycle in cycles:
        board = call("evaluation", "progress_board", cycle_id=cycle["id"])
        if any(o["stage"] not in ("final", "dropped") for o in board["organizations"]):
            return board
    return call("evaluation", "progress_board", cycle_id=cycles[0]["id"]) if cycles else None


def star_bars(colleges: list[dict], width: int = 560, bar: int = 22, gap: int = 10) -> dict:
    """Stacked bars, one per college: each segment a star level, linked to its branches."""
    label_w, rows = 150, []
    widest = max((c["organizations"] for c in colleges), default=0) or 1
    scale = (width - label_w - 40) / widest
    for i, c in enumerate(colleges):
        y, x, segments = i * (bar + gap), label_w, []
        for key in STARS + ("unrated",):
            n = len(c["unrated"]) if key == "unrated" else len(c["by_stars"][key])
            if not n:
                continue
            w = n * scale
            segments.append({"x": round(x, 1), "w": round(w, 1), "n": n, "colour": STAR_COLOURS[key],
                             "title": f"{c['college_name']} {'未评定' if key == 'unrated' else '★' + key}: {n}",
                             "href": link(view="stars", college=c["college_id"], stars=key)})
            x += w
        rows.append({"y": y, "name": c["college_name"], "segments": segments,
                     "total": c["organizations"], "end": round(x + 6, 1)})
    return {"width": width, "height": max(len(rows) * (bar + gap), bar), "bar": bar,
            "label_w": label_w, "rows": rows}


def coverage_bars(colleges: list[dict], width: int = 560, bar: int = 18, gap: int = 10) -> dict:
    label_w, rows = 150, []
    full = width - label_w - 70
    for i, c in enumerate(colleges):
        share = c["covered"] / c["teacher_branches"] if c["teacher_branches"] else 0.0
        rows.append({"y": i * (bar + gap), "name": c["college_name"], "w": round(full * share, 1),
                     "full": full, "pct": f"{share:.0%}",
                     "href": link(view="double_leader", college=c["college_id"])})
    return {"width": width, "height": max(len(rows) * (bar + gap), bar), "bar": bar,
            "label_w": label_w, "rows": rows}


TASK_STATUS_ZH = {"unplanned": "未排期", "in_progress": "推进中", "overdue": "逾期",
                  "completed": "已完成"}


def optional(call, service: str, method: str):
    """The answer of a panel's query, or None where the service offers no such
    query (an older version) or cannot answer now: the page still shows the rest."""
    try:
        return call(service, method)
    except Exception as exc:
        if type(exc).__name__ in ("MethodNotFound", "NotFound", "Unavailable"):
            return None
        raise


def programme(call) -> dict | None:
    """三级联创: candidacies by title and tier, and the task book (任务书) by status;
    None when the evaluation service offers no programme (an older version)."""
    board = optional(call, "evaluation", "programme_dashboard")
    if board is None:
        return None
    titles = [{"title": t["title"], "title_zh": t["title_zh"],
               "tiers": [{"tier": tier["tier"], "tier_zh": tier["tier_zh"], "total": tier["total"],
                          "href": link(view="candidacies", title=t["title"], tier=tier["tier"])}
                         for tier in t["tiers"]]} for t in board["candidacies"]]
    book = board.get("task_book")
    tasks = None
    if book is not None:
        tasks = {"measures": book["measures"], "overdue": len(book["overdue"]),
                 "overdue_href": link(view="task_overdue"),
                 "statuses": [{"status": st, "zh": TASK_STATUS_ZH.get(st, st),
                               "count": book["by_status"][st]["count"]}
                              for st in book["by_status"]]}
    progress = board.get("targets")
    targets = None
    if progress:  # the plan's targets against what was achieved (目标与完成)
        targets = {"plan": progress["plan"]["name"],
                   "period": f"{progress['plan']['starts_on']} – {progress['plan']['ends_on']}",
                   "rows": [{"title": t["title"], "title_zh": t["title_zh"], "tier": t["tier"],
                             "tier_zh": t["tier_zh"],
                             "target": (str(t["target_min"]) if t["target_max"] in
                                        (None, t["target_min"])
                                        else f"{t['target_min']}–{t['target_max']}"),
                             "achieved": t["achieved"], "pursuing": t["pursuing"],
                             "met": t["met"],
                             "href": link(view="candidacies", title=t["title"], tier=t["tier"])}
                            for t in progress["targets"]]}
    return {"titles": titles, "tasks": tasks, "targets": targets,
            "trend": star_trend(board.get("star_trend"))}


RECTIFICATION_KINDS = {"major_problem": "重大问题", "low_stars": "★3及以下"}
RECTIFICATION_STAGES = {"open": "待整改", "planned": "整改中", "completed": "已完成待验收"}


def rectifications(call) -> dict | None:
    """整改 (三.4): the organisations owing a rectification not yet verified
    (整改验收), branches and colleges, by kind, by stage and overdue, each number
    linked to the organisations behind it; None when the evaluation service
    offers no such query (an older version)."""
    owing = optional(call, "evaluation", "rectifications_owing")
    if owing is None:
        return None
    school, colleges = owing["branches"]["school"], owing["colleges"]

    def both(*path) -> int:  # organisations: branches school-wide plus the colleges
        a, b = school, colleges
        for key in path:
            a, b = a[key], b[key]
        return a["count"] + b["count"]

    return {
        "total": both("owing"), "total_href": link(view="rect"),
        "rectifications": school["rectifications"] + colleges["rectifications"],
        "overdue": both("overdue"), "overdue_href": link(view="rect", overdue="1"),
        "kinds": [{"kind": k, "zh": zh, "count": both("by_kind", k),
                   "href": link(view="rect", kind=k)} for k, zh in RECTIFICATION_KINDS.items()],
        "stages": [{"stage": st, "zh": zh, "count": both("by_stage", st),
                    "href": link(view="rect", stage=st)}
                   for st, zh in RECTIFICATION_STAGES.items()],
        "colleges": [{"college_id": c["college_id"], "college_name": c["college_name"],
                      "owing": c["owing"]["count"], "overdue": c["overdue"]["count"],
                      "href": link(view="rect", college=c["college_id"])}
                     for c in owing["branches"]["colleges"]],
    }


def rectification_rows(owing: dict, params: dict) -> list[dict]:
    """The organisations behind a rectification number: of a kind, at a stage,
    overdue, or of one college's branches (as the page counts them)."""
    kind, stage, college = params.get("kind"), params.get("stage"), params.get("college")
    overdue = params.get("overdue") == "1"
    rows = []
    for o in owing["organizations"]:
        if college and not (o["level"] == 3 and o["college_id"] == college):
            continue
        owed = [r for r in o["rectifications"]
                if (not kind or r["kind"] == kind) and (not stage or r["stage"] == stage)
                and (not overdue or r["overdue"])]
        if owed:
            rows.append({"org_id": o["org_id"], "org_name": o["org_name"],
                         "note": "；".join(f"{r['kind_zh']} {r['stage_zh']}"
                                          + (f" 逾期（{r['rectification_due']}）"
                                             if r["overdue"] else "") for r in owed)})
    return rows


def star_trend(trend: dict | None, width: int = 560, height: int = 120) -> dict | None:
    """The star distribution over cycles (五.2, 三.4): per branch cycle, the share at
    ★4 and above and the count at ★3 and below, school-wide and per college, each
    linked to the branches behind it; bars of the school's share, drawn here."""
    if not trend or not trend["school"]["branches"]:
        return None
    names = {c["cycle_id"]: c for c in trend["cycles"]}
    rows = []
    step = width / max(len(trend["school"]["branches"]), 1)
    for i, f in enumerate(trend["school"]["branches"]):
        cycle = names[f["cycle_id"]]
        share = f["four_or_above"]["share"]
        rows.append({"cycle_id": f["cycle_id"], "name": cycle["name"], "period": cycle["period"],
                     "rated": f["rated"], "share": f"{share:.0%}",
                     "high": f["four_or_above"]["count"], "low": f["three_or_below"]["count"],
                     "high_href": link(view="trend_high", cycle=f["cycle_id"]),
                     "low_href": link(view="trend_low", cycle=f["cycle_id"]),
                     "x": round(i * step + 8, 1), "w": round(step - 16, 1),
                     "h": round((height - 20) * share, 1)})
    colleges = [{"college_id": c["college_id"], "college_name": c["college_name"],
                 "cells": [{"cycle_id": f["cycle_id"],
                            "share": f"{f['four_or_above']['share']:.0%}" if f["rated"] else "—",
                            "low": f["three_or_below"]["count"],
                            "high_href": link(view="trend_high", cycle=f["cycle_id"],
                                              college=c["college_id"]),
                            "low_href": link(view="trend_low", cycle=f["cycle_id"],
                                             college=c["college_id"])}
                           for f in c["cycles"]]} for c in trend["colleges"]]
    return {"rows": rows, "colleges": colleges, "width": width, "height": height}


def overview(call) -> dict:
    """What the page shows; ``call(service, method, **kwargs)`` carries the viewer's token."""
    stars = call("evaluation", "star_distribution")
    coverage = call("organizations", "double_leader_coverage")
    board = open_cycle(call)
    branches = stars["branches"]
    colleges_level = stars.get("colleges")
    low = {"branches": branches["school"]["three_or_below"]["count"],
           "colleges": colleges_level["three_or_below"]["count"] if colleges_level else 0}
    low["total"] = low["branches"] + low["colleges"]
    low["rated"] = branches["school"]["rated"] + (colleges_level["rated"] if colleges_level else 0)
    low["share"] = f"{low['total'] / low['rated']:.0%}" if low["rated"] else "—"
    progress = None
    if board is not None:
        stages = [{"stage": s, "zh": STAGE_ZH[s], "count": board["by_stage"][s]["count"],
                   "href": link(view="stage", cycle=board["cycle_id"], stage=s)}
                  for s in STAGE_ORDER if s in board["by_stage"]]
        total = len(board["organizations"])
        done = sum(st["count"] for st in stages if st["stage"] in ("final", "dropped"))
        progress = {"cycle_id": board["cycle_id"], "name": board["name"], "total": total,
                    "done": done, "stages": stages, "overdue": len(board["overdue"]),
                    "overdue_href": link(view="overdue", cycle=board["cycle_id"]),
                    "bar": [{"x": 0, **st} for st in stages]}
        x = 0.0
        for seg in progress["bar"]:
            seg["x"] = round(x, 1)
            seg["w"] = round(540 * seg["count"] / total, 1) if total else 0
            x += seg["w"]
    return {
        "colleges": branches["colleges"],
        "school": branches["school"],
        "star_chart": star_bars(branches["colleges"]),
        "low": low,
        "low_href": link(view="low"),
        "coverage": coverage,
        "coverage_chart": coverage_bars(coverage["colleges"]),
        "coverage_href": link(view="double_leader"),
        "progress": progress,
        "programme": programme(call),
        "rectifications": rectifications(call),
        "stars": STARS,
        "colours": STAR_COLOURS,
        "link": link,
    }


def drill_down(call, params: dict) -> dict:
    """The organisations behind one number: ``{"title", "rows": [{org_id, org_name, note}]}``."""
    view = params.get("view")
    college = params.get("college")
    if view in ("stars", "low", "high"):
        stars = call("evaluation", "star_distribution")
        colleges = stars["branches"]["colleges"]
        if college:
            colleges = [c for c in colleges if c["college_id"] == college]
        name = colleges[0]["college_name"] if college and colleges else "全校"
        if view == "stars":
            key = params.get("stars", "")
            if key not in STARS + ("unrated", "all"):
                return {"title": "未知星级 unknown star level", "rows": []}
            keys = STARS + ("unrated",) if key == "all" else (key,)
            rows = [dict(o, note=f"{c['college_name']} "
                         + ("未评定" if k == "unrated" else f"★{k}"))
                    for c in colleges for k in keys
                    for o in (c["unrated"] if k == "unrated" else c["by_stars"][k])]
            label = {"unrated": "未评定", "all": "全部"}.get(key, f"★{key}")
            return {"title": f"{name} {label} 党支部", "rows": rows}
        if view == "high":
            rows = [dict(o, note=f"{c['college_name']} ★{o['stars']}") for c in colleges
                    for o in c["four_or_above"]["organizations"]]
            return {"title": f"{name} ★4及以上党支部", "rows": rows}
        rows = [dict(o, note=f"{c['college_name']} ★{o['stars']}") for c in colleges
                for o in c["three_or_below"]["organizations"]]
        if not college and stars.get("colleges"):
            rows += [dict(o, note=f"二级党组织 ★{o['stars']}")
                     for o in stars["colleges"]["three_or_below"]["organizations"]]
        return {"title": "★3及以下的党组织", "rows": rows}
    if view == "double_leader":
        coverage = call("organizations", "double_leader_coverage")
        rows = [{"org_id": b["branch_id"], "org_name": b["branch_name"],
                 "note": f"{c['college_name']} · {b['why']}"}
                for c in coverage["colleges"] if not college or c["college_id"] == college
                for b in c["lacking"]]
        return {"title": "书记非双带头人的教工党支部", "rows": rows}
    if view in ("stage", "overdue") and params.get("cycle"):
        board = call("evaluation", "progress_board", cycle_id=params["cycle"])
        if view == "stage":
            stage = params.get("stage")
            rows = [{"org_id": o["org_id"], "org_name": o["org_name"],
                     "note": f"截止 {o['due'][:10]}" if o["due"] else ""}
                    for o in board["organizations"] if o["stage"] == stage]
            return {"title": f"{board['name']} · {STAGE_ZH.get(stage, stage)}", "rows": rows}
        rows = [{"org_id": o["org_id"], "org_name": o["org_name"],
                 "note": f"{STAGE_ZH.get(o['stage'], o['stage'])} 截止 {o['due'][:10]}"}
                for o in board["overdue"]]
        return {"title": f"{board['name']} · 逾期", "rows": rows}
    if view == "candidacies":
        found = call("evaluation", "list_candidacies", title=params.get("title"),
                     tier=params.get("tier"))
        rows = [{"org_id": c["org_id"], "org_name": c["org_name"],
                 "note": f"{c['title_zh']} {c['tier_zh']} · {c['stage_zh']}"} for c in found]
        return {"title": "创建培育对象", "rows": rows}
    if view in ("trend_high", "trend_low") and params.get("cycle"):
        trend = call("evaluation", "star_trend", college_id=college)
        cycle = next((c for c in trend["cycles"] if c["cycle_id"] == params["cycle"]), None)
        if cycle is None:
            return {"title": "未知的考评周期 unknown cycle", "rows": []}
        key = "four_or_above" if view == "trend_high" else "three_or_below"
        index = trend["cycles"].index(cycle)
        behind = [o for o in trend["organizations"] if o["level"] == 3
                  and (not college or o["college_id"] == college)
                  and o["stars"][index] is not None
                  and (o["stars"][index] >= 4) == (key == "four_or_above")]
        rows = [{"org_id": o["org_id"], "org_name": o["org_name"],
                 "note": f"★{o['stars'][index]}"} for o in behind]
        label = "★4及以上" if view == "trend_high" else "★3及以下"
        return {"title": f"{cycle['name']} · {label}党支部", "rows": rows}
    if view == "rect":
        owing = call("evaluation", "rectifications_owing")
        label = ("逾期" if params.get("overdue") == "1" else
                 RECTIFICATION_KINDS.get(params.get("kind"))
                 or RECTIFICATION_STAGES.get(params.get("stage")) or "")
        return {"title": f"待整改的党组织{' · ' + label if label else ''}",
                "rows": rectification_rows(owing, params)}
    if view == "task_overdue":
        book = call("evaluation", "programme_dashboard")["task_book"] or {"overdue": []}
        rows = [{"org_id": "", "org_name": f"{o['number']}. {o['title']}",
                 "note": f"{o['lead_department']} · {o['milestone']} 截止 {o['due_on']}"}
                for o in book["overdue"]]
        return {"title": "任务书逾期节点", "rows": rows}
    return {"title": "未知的下钻 unknown drill-down", "rows": []}
