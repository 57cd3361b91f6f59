"""cProfile (CPU time) of ``evaluation.submit_self_assessment`` through a real
container and the broker, the caller in this process, as ``bench.bench_rpc``
calls it (200 branches, each secretary once):
.venv/bin/python -m bench.profile_submit [sort] [filter]"""
import warnings
warnings.filterwarnings("ignore")
import eventlet  # noqa: E402
eventlet.monkey_patch()
import shared  # noqa: E402,F401
import cProfile  # noqa: E402
import datetime as dt  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.bench_evaluation import entries, seed_directory  # noqa: E402
from bench.bench_rpc import service_config, store_of  # noqa: E402
from bench.common import bench_db  # noqa: E402
from bench.run_all import SECRET, Vhost  # noqa: E402
from services.evaluation.service import EvaluationService  # noqa: E402
from shared.identity import mint_token  # noqa: E402

sort = sys.argv[1] if len(sys.argv) > 1 else "cumulative"
only = sys.argv[2] if len(sys.argv) > 2 else "work/main/(shared|services)"
vhost = Vhost()
base = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "max_workers": 10,
        "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
db = bench_db("profile_submit")
container = ServiceContainer(EvaluationService, service_config(base, db, "p"))
container.start()
try:
    tree = seed_directory(store_of(container), 200)
    admin = mint_token(SECRET, sub="bench", role="org_admin", ttl=3600)
    soon = dt.datetime.now(dt.timezone.utc)
    proxy = ClusterRpcProxy(base, context_data={"auth_token": admin}, timeout=60)
    rpc = proxy.start()
    e = rpc.evaluation
    scheme = e.get_scheme("model_branch")["definition"]
    cycle = e.open_cycle(name="profile 2026", level=3, period="2026", deadlines={
        "self_assessment": (soon + dt.timedelta(days=10)).isoformat(),
        "review": (soon + dt.timedelta(days=20)).isoformat(),
        "approval": (soon + dt.timedelta(days=30)).isoformat()})
    rng = random.Random(7)
    calls = []
    for branch, _ in tree["branches"]:
        token = mint_token(SECRET, sub=tree["secretaries"][branch], role="branch_secretary",
                           org=str(branch), ttl=3600)
        calls.append((token, branch, entries(scheme, rng)))
    for token, branch, payload in calls[:20]:  # warm-up
        proxy._worker_ctx.data["auth_token"] = token
        e.submit_self_assessment(cycle_id=cycle["id"], org_id=str(branch), **payload)
    prof = cProfile.Profile(time.process_time)
    started, cpu = time.perf_counter(), time.process_time()
    prof.enable()
    for token, branch, payload in calls[20:]:
        proxy._worker_ctx.data["auth_token"] = token
        e.submit_self_assessment(cycle_id=cycle["id"], org_id=str(branch), **payload)
    prof.disable()
    n = len(calls) - 20
    print(f"{n} calls: {(time.process_time() - cpu) / n * 1e3:.2f} ms CPU per call (profiled), "
          f"{(time.perf_counter() - started) / n * 1e3:.2f} ms wall")
    pstats.Stats(prof).sort_stats(sort).print_stats(only, 45)
    proxy.stop()
finally:
    container.stop()
    vhost.delete()
