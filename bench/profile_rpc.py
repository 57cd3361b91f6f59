"""cProfile of one organizations RPC through a real container and the broker
(the worker and the caller in this process), 200 calls after 20 warm-up calls:
.venv/bin/python -m bench.profile_rpc noop|get_path|get_organization|list_departments|register_member [sort] [filter]
e.g. ``register_member tottime`` or ``list_departments cumulative 'shared/|services/'``."""
import warnings; warnings.filterwarnings("ignore")
import eventlet; eventlet.monkey_patch()
import shared, sys, cProfile, pstats
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy
from bench.common import PG, bench_db
from bench.run_all import SECRET, NoopService, Vhost
from shared.identity import mint_token
from services.organizations.service import OrganizationsService
what = sys.argv[1]
vh = Vhost()
base = {"AMQP_URI": vh.uri, "AUTH_SECRET": SECRET, "max_workers": 10, "WEB_SERVER_ADDRESS": "127.0.0.1:0"}
db = bench_db("profile_rpc")
c = ServiceContainer(OrganizationsService, {**base, "RELAY": {"enabled": False}, "DATABASE": {"dbname": db.dbname, **PG}})
c.start()
n = ServiceContainer(NoopService, base); n.start()
admin = mint_token(SECRET, sub="bench", role="org_admin", ttl=3600)
try:
  with ClusterRpcProxy(base, context_data={"auth_token": admin}, timeout=60) as rpc:
    o = rpc.organizations
    com = o.create_organization(name="学校党委", kind="committee")
    col = o.create_organization(name="学院", kind="general_branch", parent_id=com["id"])
    brs = [o.create_organization(name=f"支部{i}", kind="teacher_branch", parent_id=col["id"]) for i in range(8)]
    ms = [o.register_member(name=f"m{i}", branch_id=brs[i % 8]["id"], category="teacher", status="full", joined_on="2010-07-01") for i in range(40)]
    import itertools; k = itertools.count()
    calls = {"noop": lambda: rpc.noop.ping(), "get_path": lambda: o.get_path(brs[3]["id"]),
             "get_organization": lambda: o.get_organization(col["id"]),
             "list_departments": lambda: o.list_departments(),
             "register_member": lambda: o.register_member(name=f"x{next(k)}", branch_id=brs[next(k) % 8]["id"], category="teacher", status="full", joined_on="2010-07-01")}
    f = calls[what]
    for _ in range(20): f()
    pr = cProfile.Profile(); pr.enable()
    for _ in range(200): f()
    pr.disable()
    st = pstats.Stats(pr)
    st.sort_stats(sys.argv[2] if len(sys.argv) > 2 else "tottime").print_stats(sys.argv[3] if len(sys.argv) > 3 else "", 40)
finally:
  c.kill(); n.kill(); vh.delete()
