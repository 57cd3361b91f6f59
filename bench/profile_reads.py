"""cProfile of one organizations read or command, in process, 200 calls:
.venv/bin/python -m bench.profile_reads get_organization|get_tree|list_members|double_leader_coverage|register_member"""
import warnings
warnings.filterwarnings("ignore")
import eventlet
eventlet.monkey_patch()
import shared  # noqa
import cProfile, pstats, sys
from bench.common import bench_db
from services.organizations.application import OrganizationsApplication
from shared.identity import Caller
from shared.secrets import event_cipher_key

settings = bench_db("perfreads")
app = OrganizationsApplication(settings.with_cipher(event_cipher_key("organizations", {})))
a = Caller("bench", "org_admin")
c = app.create_organization(a, {"name": "学校党委", "kind": "committee"})
cols = [app.create_organization(a, {"name": f"学院{i}", "kind": "general_branch", "parent_id": c["id"]}) for i in range(3)]
brs = [app.create_organization(a, {"name": f"支部{i}", "kind": "teacher_branch", "parent_id": cols[i % 3]["id"]}) for i in range(12)]
ms = [app.register_member(a, {"name": f"m{i}", "branch_id": brs[i % 12]["id"], "category": "teacher", "status": "full", "joined_on": "2010-07-01"}) for i in range(60)]
what = sys.argv[1]
calls = {"get_organization": lambda: app.get_organization(a, cols[0]["id"]),
         "get_tree": lambda: app.get_tree(a),
         "list_members": lambda: app.list_members(a, {"org_id": cols[1]["id"]}),
         "double_leader_coverage": lambda: app.double_leader_coverage(a),
         "register_member": lambda: app.register_member(a, {"name": "x", "branch_id": brs[0]["id"], "category": "teacher", "status": "full", "joined_on": "2010-07-01"})}
f = calls[what]
for _ in range(20):
    f()
pr = cProfile.Profile(); pr.enable()
for _ in range(200):
    f()
pr.disable()
pstats.Stats(pr).sort_stats(sys.argv[2] if len(sys.argv) > 2 else "tottime").print_stats(sys.argv[3] if len(sys.argv) > 3 else "", 40)
app.close()
