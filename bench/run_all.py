"""``make bench``: every benchmark in one run, beside raw baselines measured in
the same run, written to ``docs/benchmarks.md`` (and ``docs/benchmarks.json``,
whose previous figures the new page shows beside the new ones so that a
regression shows).

Everything runs in a throw-away RabbitMQ vhost and a ``lcbench_*`` database:
nothing reaches the services of ``make run``. Bounded: a few minutes on a
shared 2-core machine, plus the audit bench over 1,000,000 events (issue 11,
``bench.bench_audit``, about ten more minutes). The 1,000,000-event evaluation
bench stays separate (``make bench-evaluation``).

Run: ``.venv/bin/python -m bench.run_all [--quick]``
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402
import requests  # noqa: E402
from kombu import Connection, Exchange, Producer, Queue  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.bench_foundation import kombu_round_trip, raw_insert  # noqa: E402
from bench.common import PG, bench_db, summary, timed  # noqa: E402
from shared.identity import mint_token  # noqa: E402

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
SECRET = "bench-secret-0123456789-0123456789-abcdef"
DOCS = Path(__file__).resolve().parent.parent / "docs"


class NoopService:
    """The floor under any Nameko RPC: a method that does nothing."""

    name = "noop"

    @rpc
    def ping(self, **payload):
        return None


# -- infrastructure ------------------------------------------------------------
class Vhost:
    def __init__(self):
        self.name = f"lcbench_{uuid.uuid4().hex[:8]}"
        requests.put(f"{MANAGEMENT}/vhosts/{self.name}", auth=AUTH).raise_for_status()
        requests.put(f"{MANAGEMENT}/permissions/{self.name}/guest", auth=AUTH,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        self.uri = f"pyamqp://guest:guest@127.0.0.1:5672/{self.name}"

    def delete(self):
        requests.delete(f"{MANAGEMENT}/vhosts/{self.name}", auth=AUTH)


def machine(settings) -> dict:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    with psycopg.connect(settings.conninfo()) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    try:
        rabbit = requests.get(f"{MANAGEMENT}/overview", auth=AUTH).json().get("rabbitmq_version")
    except Exception:
        rabbit = "?"
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    versions = {p: metadata.version(p) for p in
                ("nameko", "eventsourcing", "psycopg", "kombu", "amqp", "eventlet")}
    try:
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                         cwd=DOCS.parent).strip()
    except Exception:
        commit = "?"
    return {"cores": os.cpu_count(), "memory": mem, "load (1/5/15 min) at start": load,
            "python": platform.python_version(), "postgresql": pg, "rabbitmq": rabbit,
            "commit": commit, **versions}


# -- baselines -------------------------------------------------------------------
def raw_publish_confirms(uri: str, n: int, batch: int | None) -> float:
    """Raw kombu publish with confirms to a durable queue: one wait per message
    (``batch`` None) or per ``batch`` messages. Returns messages/s."""
    exchange = Exchange("bench-raw", type="topic", durable=True)
    queue = Queue(f"bench-raw-{batch}", exchange, routing_key="#", durable=True)
    body = {"envelope_version": 1, "type": "double_leader_set", "data": {"x": "y" * 200}}
    if batch is None:
        with Connection(uri, transport_options={"confirm_publish": True}) as conn:
            producer = Producer(conn.channel(), exchange=exchange, serializer="json")
            queue(producer.channel).declare()
            started = time.perf_counter()
            for _ in range(n):
                producer.publish(body, routing_key="raw", delivery_mode=2)
            elapsed = time.perf_counter() - started
            queue(producer.channel).purge()
        return n / elapsed
    from shared.relay import ConfirmedPublisher

    with Connection(uri) as conn:
        queue(conn.channel()).declare()
    publisher = ConfirmedPublisher(uri, exchange)
    started = time.perf_counter()
    for i in range(0, n, batch):
        publisher.publish_all([(body, "raw", {})] * min(batch, n - i))
    elapsed = time.perf_counter() - started
    publisher.close()
    return n / elapsed


def rpc_rate(call, n: int, callers: int = 1) -> dict:
    """Samples of ``call`` (one per request) from ``callers`` green threads
    (then ``call(k)``, k = the caller's index, each with its own proxy)."""
    if callers == 1:
        samples = timed(call, n)
        return {**summary(samples), "rate": len(samples) / sum(samples)}
    per = n // callers
    samples: list[float] = []

    def caller(k):
        for _ in range(5):
            call(k)
        for _ in range(per):
            t = time.perf_counter()
            call(k)
            samples.append(time.perf_counter() - t)

    started = time.perf_counter()
    pool = eventlet.GreenPool(callers)
    for k in range(callers):
        pool.spawn(caller, k)
    pool.waitall()
    elapsed = time.perf_counter() - started
    return {**summary(samples), "rate": len(samples) / elapsed}


def raw_sequential_read(settings, table: str) -> float:
    """Rows/s of a plain ordered scan of the events table (all columns)."""
    with psycopg.connect(settings.conninfo()) as conn:
        started = time.perf_counter()
        rows = 0
        with conn.cursor(name="scan") as cur:
            cur.itersize = 2000
            cur.execute(f"SELECT notification_id, originator_id, originator_version, topic, "
                        f"state FROM {table} ORDER BY notification_id")
            for _ in cur:
                rows += 1
        return rows / (time.perf_counter() - started)


# -- the run ------------------------------------------------------------------------
def run(quick: bool) -> tuple[dict, list[dict]]:
    n = 150 if quick else 400
    events = 5_000 if quick else 20_000
    settings = bench_db("organizations")
    vhost = Vhost()
    rows: list[dict] = []
    info = machine(settings)

    def row(name, kind, value, unit, baseline=None, p99=None, median=None, note=""):
        ratio = None
        if baseline is not None:
            base = next(r for r in rows if r["name"] == baseline)
            ratio = (value / base["value"]) if kind == "rate" else (base["value"] / value)
        rows.append({"name": name, "kind": kind, "value": value, "unit": unit,
                     "baseline": baseline, "ratio": ratio, "p99_ms": p99,
                     "median_ms": median, "note": note})
        print(f"{name:60} {value:>12,.1f} {unit:10} "
              f"{'' if ratio is None else f'{ratio:.2f}x'}", flush=True)

    containers = []
    try:
        # Baselines.
        raw = summary(raw_insert(settings, n))
        row("raw psycopg INSERT + COMMIT", "baseline", 1000 / raw["median_ms"], "/s",
            p99=raw["p99_ms"], median=raw["median_ms"])
        kombu = summary(kombu_round_trip(n))
        row("raw kombu request/reply round trip", "baseline", 1000 / kombu["median_ms"], "/s",
            p99=kombu["p99_ms"], median=kombu["median_ms"])
        row("raw kombu publish, confirm each (durable queue)", "baseline",
            raw_publish_confirms(vhost.uri, min(events, 3000), None), "msg/s")
        row("raw kombu publish, confirms per 1,000 (durable queue)", "baseline",
            raw_publish_confirms(vhost.uri, events, 1000), "msg/s")

        config = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "max_workers": 10,
                  "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
        noop = ServiceContainer(NoopService, config)
        noop.start()
        containers.append(noop)
        with ClusterRpcProxy(config) as proxy:
            s = rpc_rate(lambda: proxy.noop.ping(), n)
            row("no-op Nameko RPC, sequential", "baseline", s["rate"], "calls/s",
                p99=s["p99_ms"], median=s["median_ms"])
        proxies = [ClusterRpcProxy(config) for _ in range(5)]
        started = [p.start() for p in proxies]
        s = rpc_rate(lambda k: started[k].noop.ping(), n * 2, callers=5)
        row("no-op Nameko RPC, 5 concurrent callers", "baseline", s["rate"], "calls/s",
            p99=s["p99_ms"], median=s["median_ms"])
        for p in proxies:
            p.stop()

        # The organizations service: a small tree and members.
        from services.organizations.service import OrganizationsService

        orgs_config = {**config, "DATABASE": {"dbname": settings.dbname, **PG,
                                              "pool_size": 4, "max_overflow": 6},
                       "RELAY": {"enabled": False}}
        orgs = ServiceContainer(OrganizationsService, orgs_config)
        orgs.start()
        containers.append(orgs)
        token = mint_token(SECRET, sub="bench", role="org_admin")
        with ClusterRpcProxy(config, context_data={"auth_token": token}) as proxy:
            o = proxy.organizations
            committee = o.create_organization(name="学校党委", kind="committee")
            colleges, branches = [], []
            for c in range(3):
                colleges.append(o.create_organization(
                    name=f"第{c + 1}学院党总支", kind="general_branch", parent_id=committee["id"]))
                for b in range(4):
                    branches.append(o.create_organization(
                        name=f"第{c + 1}学院第{b + 1}支部", kind="teacher_branch",
                        parent_id=colleges[-1]["id"]))
            members = [o.register_member(name=f"党员{i}", branch_id=branches[i % 12]["id"],
                                         category="teacher", status="full",
                                         joined_on="2010-07-01") for i in range(60)]
            o.assign_role(org_id=branches[0]["id"], member_id=members[0]["id"], role="secretary")
            reads = {
                "get_tree": lambda: o.get_tree(),
                "get_organization (college)": lambda: o.get_organization(colleges[0]["id"]),
                "get_path (branch)": lambda: o.get_path(branches[5]["id"]),
                "get_member": lambda: o.get_member(members[3]["id"]),
                "list_members (college)": lambda: o.list_members(org_id=colleges[1]["id"]),
                "double_leader_coverage": lambda: o.double_leader_coverage(),
            }
            for name, call in reads.items():
                s = rpc_rate(call, n)
                row(f"read RPC organizations.{name}", "rate", s["rate"], "calls/s",
                    "no-op Nameko RPC, sequential", p99=s["p99_ms"], median=s["median_ms"])
            i = iter(range(10 ** 9))
            s = rpc_rate(lambda: o.register_member(
                name=f"新党员{next(i)}", branch_id=branches[next(i) % 12]["id"],
                category="student", status="probationary", joined_on="2024-06-01"), n // 2)
            row("command register_member, sequential", "rate", s["rate"], "calls/s",
                "no-op Nameko RPC, sequential", p99=s["p99_ms"], median=s["median_ms"])
        proxies = [ClusterRpcProxy(config, context_data={"auth_token": token}) for _ in range(5)]
        started = [p.start() for p in proxies]

        def concurrent_register(k):
            j = next(i)
            started[k].organizations.register_member(
                name=f"并发党员{j}", branch_id=branches[j % 12]["id"], category="student",
                status="probationary", joined_on="2024-06-01")

        s = rpc_rate(concurrent_register, n, callers=5)
        row("command register_member, 5 concurrent callers", "rate", s["rate"], "calls/s",
            "no-op Nameko RPC, 5 concurrent callers", p99=s["p99_ms"], median=s["median_ms"])
        for p in proxies:
            p.stop()
        orgs.stop()
        containers.remove(orgs)

        # Relay and rebuild over a store of `events` more events.
        relay_and_rebuild(settings, vhost, events, row)
        event_flow(quick, row)
        relay_and_consumer_batches(quick, row)
        parking(quick, row)
        audit(quick, row)
        read_models(quick, row)
        imports(quick, row)
        rpc_targets(quick, row)
        cycle(quick, row)
    finally:
        for c in containers:
            c.kill()
        vhost.delete()
        with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')
    return info, rows


def relay_and_rebuild(settings, vhost, events, row):
    from services.organizations.application import OrganizationsApplication
    from shared.identity import Caller
    from shared.relay import Relay
    from shared.secrets import event_cipher_key

    app = OrganizationsApplication(settings.with_cipher(event_cipher_key("organizations", {})))
    admin = Caller("bench", "org_admin")
    held = [app.repository.get(r["id"]) for r in
            app.query("SELECT id FROM member_view ORDER BY id LIMIT 50")]
    for k in range(0, events, 1000):  # appended in bulk: the store, not the command path
        for j in range(1000):
            m = held[(k + j) % len(held)]
            m.set_double_leader(not m.double_leader, admin.as_actor())
        app.save(*held)
    app.projector.catch_up()
    total = app.recorder.max_notification_id()
    table = f"{app.recorder.events_table_name}"
    row("raw sequential read of the events table", "baseline",
        raw_sequential_read(settings, table), f"rows/s of {total:,}")

    # A durable queue bound, as a consumer's would be.
    from nameko.standalone.events import get_event_exchange

    with Connection(vhost.uri) as conn:
        exchange = get_event_exchange("organizations", {"AMQP_URI": vhost.uri})
        Queue("bench-evt-organizations", exchange, routing_key="#", durable=True)(
            conn.channel()).declare()
    relay = Relay(app, "organizations", {"AMQP_URI": vhost.uri}, "bench", batch_size=1000)
    started = time.perf_counter()
    while relay.step():
        pass
    elapsed = time.perf_counter() - started
    relay.release()
    row("relay: events decrypted, signed, published, confirmed", "rate",
        total / elapsed, f"events/s of {total:,}",
        "raw kombu publish, confirm each (durable queue)")
    started = time.perf_counter()
    applied = app.projector.rebuild()
    elapsed = time.perf_counter() - started
    row("rebuild_read_models (organizations)", "rate", applied / elapsed,
        f"events/s of {applied:,}", "raw sequential read of the events table")
    app.close()


def event_flow(quick: bool, row) -> None:
    """Commit → another service's inbox, bounded: ``bench.bench_notifications``
    (a real notifications container; its own vhost and database)."""
    burst, paced, fanout = (1000, 200, 100) if quick else (3000, 400, 300)
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_notifications", "--events", str(burst),
         "--paced", str(paced), "--rate", "100", "--fanout", str(fanout)],
        cwd=DOCS.parent, capture_output=True, text=True, timeout=900).stdout
    EVENT_FLOW_OUTPUT.append(out)
    for line in out.splitlines():
        m = re.search(r"all in inboxes after .* → ([\d,]+) events/s", line)
        if m:
            row("event flow: burst → notifications inbox", "rate",
                float(m.group(1).replace(",", "")), f"events/s of {burst:,}",
                "raw psycopg INSERT + COMMIT")
        m = re.search(r"→ ([\d,]+) notices/s", line)
        if m:
            row("event flow: fan-out ×7 → notices", "rate",
                float(m.group(1).replace(",", "")), f"notices/s of {fanout * 7:,}",
                "raw psycopg INSERT + COMMIT")
        m = re.match(r"paced commit → inbox p95 ([\d.]+) ms", line)
        if m:
            row("event flow: paced 100/s, commit → inbox p95", "latency", float(m.group(1)),
                "ms p95")


def relay_and_consumer_batches(quick: bool, row) -> None:
    """The relay beside raw kombu publish-with-confirms, and commit → another
    service's inbox (a burst) beside raw INSERT + COMMIT, each baseline measured
    in the same subprocess run: ``bench.bench_flow`` (its own vhost and databases)."""
    events, burst = (5_000, 2_000) if quick else (20_000, 10_000)
    out = subprocess.run([sys.executable, "-m", "bench.bench_flow", "--events", str(events),
                          "--burst", str(burst), "--json"], cwd=DOCS.parent,
                         capture_output=True, text=True, timeout=1800).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        print("bench_flow printed no figures", flush=True)
        return
    f = json.loads(lines[-1])
    row("raw kombu publish, confirm each (flow bench)", "baseline",
        f["kombu_confirm_each_per_s"], "msg/s")
    row("raw kombu publish, confirms per 1,000 (flow bench)", "baseline",
        f["kombu_confirm_batched_per_s"], "msg/s")
    row("raw psycopg INSERT + COMMIT (flow bench)", "baseline",
        f["raw_insert_commit_per_s"], "/s")
    row("relay, confirmed and saved (flow bench)", "rate", f["relay_per_s"],
        f"events/s of {f['relay_events']:,}", "raw kombu publish, confirms per 1,000 (flow bench)",
        note=f"{f['relay_per_s'] / f['kombu_confirm_each_per_s']:.2f}x confirm each")
    row("event flow: commit → notifications' directory inbox, burst", "rate",
        f["flow_per_s"], f"events/s of {burst:,}", "raw psycopg INSERT + COMMIT (flow bench)",
        median=f["flow_p50_ms"], p99=f["flow_p99_ms"])
    row("event flow: burst, commit → applied p95", "latency", f["flow_p95_ms"],
        f"ms p95 of {burst:,}")


def parking(quick: bool, row) -> None:
    """The projector's per-event savepoints (parking), bounded:
    ``bench.bench_parking`` beside its raw replay."""
    events = 2000 if quick else 4000
    out = subprocess.run([sys.executable, "-m", "bench.bench_parking", str(events), "2"],
                         cwd=DOCS.parent, capture_output=True, text=True, timeout=900).stdout
    PARKING_OUTPUT.append(out)


def audit(quick: bool, row) -> None:
    """Issue 11: verifying the hash chain beside a raw sequential read of the same
    rows, and as-of lookups through RPC beside a no-op RPC interleaved with them,
    each over 1,000,000 stored events (100,000 in a quick run): ``bench.bench_audit``
    (its own database and vhost); its ``RESULT`` lines become rows here."""
    events = 100_000 if quick else 1_000_000
    out = subprocess.run([sys.executable, "-m", "bench.bench_audit", "--events", str(events),
                          "--lookups", "200" if quick else "500"],
                         cwd=DOCS.parent, capture_output=True, text=True, timeout=3600).stdout
    AUDIT_OUTPUT.append("\n".join(line for line in out.splitlines()
                                  if not line.startswith("RESULT ")))
    for line in out.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            row(r["name"], r["kind"], r["value"], r["unit"], r["baseline"], p99=r["p99_ms"],
                median=r["median_ms"])


def read_models(quick: bool, row) -> None:
    """The rating read model's catch-up and rebuild beside a raw sequential read
    of the same rows: ``bench.bench_readmodels`` (its own database)."""
    events = 20_000 if quick else 200_000
    out = subprocess.run([sys.executable, "-m", "bench.bench_readmodels", "--events",
                          str(events)], cwd=DOCS.parent, capture_output=True, text=True,
                         timeout=1800).stdout
    for line in out.splitlines():
        if line.startswith("RESULTS "):
            for r in json.loads(line[len("RESULTS "):]):
                row(r["name"], "rate" if r["baseline"] else "baseline", r["value"], r["unit"],
                    r["baseline"])


def imports(quick: bool, row) -> None:
    """Issue 10: a roster of 30,000 members (3,000 in a quick run) previewed and
    applied, beside an openpyxl read plus a raw psycopg COPY of the same rows
    (``bench.bench_imports``, its own database); seconds, lower is better."""
    members = 3_000 if quick else 30_000
    out = subprocess.run([sys.executable, "-m", "bench.bench_imports",
                          str(members)], cwd=DOCS.parent, capture_output=True, text=True,
                         timeout=1800).stdout
    IMPORTS_OUTPUT.append(out)
    figures = dict(re.findall(r"^(raw: openpyxl read \+ psycopg COPY|preview \(nothing written\)"
                              r"|apply \(one recorded import\))\s+([\d.]+)", out, re.M))
    if len(figures) != 3:
        print("bench_imports printed no figures", flush=True)
        return
    raw = f"raw: openpyxl read + psycopg COPY of {members:,} members"
    row(raw, "baseline", float(figures["raw: openpyxl read + psycopg COPY"]), "s")
    for name in ("preview (nothing written)", "apply (one recorded import)"):
        target = "" if quick else " (target < 10 s)"
        row(f"import {members:,} members: {name}{target}", "latency",
            float(figures[name]), "s", raw)


def rpc_targets(quick: bool, row) -> None:
    """Reads and commands against the no-op RPC under the same concurrency
    (``bench.bench_rpc``: two instances of each service, 20 callers)."""
    out = subprocess.run([sys.executable, "-m", "bench.bench_rpc", "--n",
                          "100" if quick else "300"],
                         cwd=DOCS.parent, capture_output=True, text=True, timeout=1800).stdout
    RPC_OUTPUT.append(out)
    line = re.compile(r"^(?P<name>\S.*?)\s+(?P<rate>[\d.]+)/s\s+p50\s+(?P<p50>[\d.]+)\s+p99\s+"
                      r"(?P<p99>[\d.]+) ms")
    baselines = {}
    for text in out.splitlines():
        m = line.match(text)
        if not m:
            continue
        name, rate = f"bench_rpc: {m['name']}", float(m["rate"])
        if "(baseline)" in name:
            row(name, "baseline", rate, "calls/s", p99=float(m["p99"]), median=float(m["p50"]))
            baselines["concurrent" if "callers" in name else "sequential"] = name
        elif baselines:
            which = "concurrent" if "callers" in name else "sequential"
            row(name, "rate", rate, "calls/s", baselines[which], p99=float(m["p99"]),
                median=float(m["p50"]))


def cycle(quick: bool, row) -> None:
    """A whole evaluation cycle, notices included (``bench.bench_cycle``)."""
    branches = 200 if quick else 1000
    out = subprocess.run([sys.executable, "-m", "bench.bench_cycle", "--branches",
                          str(branches)],
                         cwd=DOCS.parent, capture_output=True, text=True, timeout=3600).stdout
    CYCLE_OUTPUT.append(out)
    m = re.search(r"^end to end \(s\): ([\d.]+)", out, re.M)
    if m:
        row(f"evaluation cycle for {branches:,} branches, notices included (target < 60 s)",
            "latency", float(m.group(1)), "s end to end")


EVENT_FLOW_OUTPUT: list[str] = []
PARKING_OUTPUT: list[str] = []
AUDIT_OUTPUT: list[str] = []
RPC_OUTPUT: list[str] = []
CYCLE_OUTPUT: list[str] = []
IMPORTS_OUTPUT: list[str] = []


# -- the page ---------------------------------------------------------------------
def fmt(v, digits=1):
    return "" if v is None else f"{v:,.{digits}f}"


def ratio(v):
    return "" if v is None else f"{v:.2f}×"


def write(info: dict, rows: list[dict], previous: dict | None, quick: bool) -> None:
    prev_rows = {r["name"]: r for r in (previous or {}).get("rows", [])}
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks (`make bench`)", "",
        f"Written by `make bench` ({'quick' if quick else 'full'} run) on {when}. "
        "Every figure below was measured in this one run, beside its raw baseline "
        "measured in the same run; read the ratios (the machine is shared, so absolute "
        "figures move with its load). The previous run's figures stay beside the new ones "
        "(from `docs/benchmarks.json`) so a regression shows.", "",
        "The 1,000,000-event evaluation bench is separate: `make bench-evaluation`.", "",
        "## Machine", "", "| | |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        "", "## Figures", "",
        "Rates are per second (higher is better); ratio = rate ÷ baseline's rate. "
        "Latencies in ms are per call, measured by the caller.", "",
        "| measure | now | unit | median ms | p99 ms | baseline | ratio | previous | "
        "prev. ratio |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        p = prev_rows.get(r["name"], {})
        lines.append(
            f"| {r['name']} | {fmt(r['value'])} | {r['unit']} | {fmt(r['median_ms'], 2)} | "
            f"{fmt(r['p99_ms'], 2)} | {r['baseline'] or '(baseline)'} | "
            f"{ratio(r.get('ratio'))} | {fmt(p.get('value'))} | {ratio(p.get('ratio'))} |")
    if EVENT_FLOW_OUTPUT:
        lines += ["", "## Event flow (notifications bench, as printed)", "", "```",
                  EVENT_FLOW_OUTPUT[0].strip(), "```"]
    if PARKING_OUTPUT:
        lines += ["", "## Projector savepoints (parking bench, as printed)", "", "```",
                  PARKING_OUTPUT[0].strip(), "```"]
    if AUDIT_OUTPUT:
        lines += ["", "## Audit: chain verify and as-of lookups (audit bench, as printed)", "",
                  "```", AUDIT_OUTPUT[0].strip(), "```"]
    for title, output in (("Imports (bench_imports, as printed)", IMPORTS_OUTPUT),
                          ("Reads and commands (bench_rpc, as printed)", RPC_OUTPUT),
                          ("Evaluation cycle (bench_cycle, as printed)", CYCLE_OUTPUT)):
        if output:
            lines += ["", f"## {title}", "", "```", output[0].strip(), "```"]
    if previous:
        lines += ["", f"Previous run: {previous.get('when', '?')} "
                      f"(commit {previous.get('machine', {}).get('commit', '?')})."]
    lines += ["", "## Targets (issue 12)", "",
              "- relay ≥ 10,000 events/s with confirms;",
              "- event flow (commit → another service's inbox) ≥ 5,000 events/s per consumer, "
              "p95 < 500 ms for a 10,000-event burst;",
              "- read RPCs ≥ 0.80× the no-op Nameko RPC, p99 < 5 ms;",
              "- commands p99 < 15 ms sequential; concurrent ≥ 0.50× the no-op under the "
              "same concurrency;",
              "- read-model catch-up and rebuild ≥ 200,000 events/s (about a third of a raw "
              "sequential read);",
              "- an evaluation cycle for 1,000 branches, notices included, under 60 s.",
              "", "## Targets (issue 11)", "",
              "- `audit verify` over 1,000,000 events ≥ 200,000 events/s, beside a raw "
              "sequential read of the same rows;",
              "- as-of lookups through RPC with 1,000,000 events in the store: p99 < 5 ms, "
              "beside a no-op RPC.",
              "", "## Targets (issue 10)", "",
              "- an import of 30,000 members, preview and apply, each under 10 s, beside a "
              "raw psycopg COPY of the same rows.",
              ""]
    (DOCS / "benchmarks.md").write_text("\n".join(lines))
    (DOCS / "benchmarks.json").write_text(json.dumps(
        {"when": when, "quick": quick, "machine": info, "rows": rows}, indent=1,
        ensure_ascii=False) + "\n")
    print(f"wrote {DOCS / 'benchmarks.md'}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples, 5,000 events")
    args = parser.parse_args()
    previous = None
    path = DOCS / "benchmarks.json"
    if path.exists():
        previous = json.loads(path.read_text())
    info, rows = run(args.quick)
    write(info, rows, previous, args.quick)


if __name__ == "__main__":
    main()
