"""py-spy target: one read RPC (or the no-op) called in a loop for ``secs``
seconds, the service in this process as ``bench.bench_rpc`` runs it:
.venv/bin/python -m bench.profile_rpc_reads get_path|noop [secs]
(then ``py-spy record -p PID``)."""
import warnings
warnings.filterwarnings("ignore")
import eventlet
eventlet.monkey_patch()
import shared  # noqa
import os, sys, time
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy
from bench.common import bench_db
from bench.run_all import SECRET, NoopService, Vhost
from bench.bench_rpc import service_config
from shared.identity import mint_token
from services.organizations.service import OrganizationsService

what = sys.argv[1]
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 20
vhost = Vhost()
base = {"AMQP_URI": vhost.uri, "AUTH_SECRET": SECRET, "max_workers": 10,
        "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
db = bench_db("profreads")
containers = [ServiceContainer(NoopService, {**base, "INSTANCE": "n"}),
              ServiceContainer(OrganizationsService, service_config(base, db, "o"))]
for c in containers:
    c.start()
admin = mint_token(SECRET, sub="bench", role="org_admin", ttl=3600)
try:
    with ClusterRpcProxy(base, context_data={"auth_token": admin}, timeout=60) as rpc:
        o = rpc.organizations
        committee = o.create_organization(name="学校党委", kind="committee")
        college = o.create_organization(name="学院", kind="general_branch", parent_id=committee["id"])
        branch = o.create_organization(name="支部", kind="teacher_branch", parent_id=college["id"])
        calls = {"noop": lambda: rpc.noop.ping(),
                 "get_path": lambda: o.get_path(org_id=branch["id"]),
                 "get_organization": lambda: o.get_organization(org_id=college["id"]),
                 "register_member": lambda: o.register_member(
                     name="党员", branch_id=branch["id"], category="teacher", status="full",
                     joined_on="2010-07-01")}
        f = calls[what]
        for _ in range(50):
            f()
        print("PID", os.getpid(), "ready", flush=True)
        prof = None
        if os.environ.get("CPROFILE"):
            import cProfile, pstats
            # CPTIMER=cpu: CPU time (what the call costs this process), not wall time
            timer = time.process_time if os.environ.get("CPTIMER") == "cpu" else None
            prof = cProfile.Profile(timer) if timer else cProfile.Profile()
            prof.enable()
        t, n, cpu = time.perf_counter(), 0, time.process_time()
        while time.perf_counter() - t < secs:
            f(); n += 1
        el = time.perf_counter() - t
        if prof:
            prof.disable()
            st = pstats.Stats(prof); print("calls per RPC", st.total_calls / n)
            if os.environ.get("CPDUMP"):  # the raw stats, to compare two calls' profiles
                st.dump_stats(os.environ["CPDUMP"]); print("RPCS", n)
            st.sort_stats(os.environ["CPROFILE"]).print_stats(os.environ.get("CPFILTER", ""), 60)
        print(f"{what}: {n / el:.1f}/s, {(time.process_time() - cpu) / n * 1e3:.2f} ms CPU per call")
finally:
    for c in containers:
        c.stop()
    vhost.delete()
