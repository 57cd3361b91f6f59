"""cProfile of the relay publishing 10,000 events (a throw-away vhost and database):
.venv/bin/python -m bench.profile_relay [noprof]   (noprof: the rate alone)."""
import warnings
warnings.filterwarnings("ignore")
import eventlet
eventlet.monkey_patch()
import shared  # noqa
import cProfile, pstats, time, uuid, sys
from bench.common import bench_db
from bench.run_all import Vhost
from services.organizations.application import OrganizationsApplication
from shared.identity import Caller
from shared.relay import Relay
from shared.secrets import event_cipher_key
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

settings = bench_db("perfprof")
vhost = Vhost()
app = OrganizationsApplication(settings.with_cipher(event_cipher_key("organizations", {})))
admin = Caller("bench", "org_admin")
c = app.create_organization(admin, {"name": "学校党委", "kind": "committee"})
co = app.create_organization(admin, {"name": "学院", "kind": "general_branch", "parent_id": c["id"]})
b = app.create_organization(admin, {"name": "支部", "kind": "teacher_branch", "parent_id": co["id"]})
ms = [app.register_member(admin, {"name": f"m{i}", "branch_id": b["id"], "category": "teacher", "status": "full", "joined_on": "2010-07-01"}) for i in range(20)]
held = [app.repository.get(uuid.UUID(m["id"])) for m in ms]
for k in range(10):
    for j in range(1000):
        m = held[j % 20]; m.set_double_leader(not m.double_leader, admin.as_actor())
    app.save(*held)
with Connection(vhost.uri) as conn:
    ex = get_event_exchange("organizations", {"AMQP_URI": vhost.uri})
    Queue("q", ex, routing_key="#", durable=True)(conn.channel()).declare()
relay = Relay(app, "organizations", {"AMQP_URI": vhost.uri}, "bench", batch_size=1000)
mode = sys.argv[1] if len(sys.argv) > 1 else "prof"
t, cpu = time.perf_counter(), time.process_time()
if mode == "prof":
    pr = cProfile.Profile(); pr.enable()
while relay.step():
    pass
el, cpu = time.perf_counter() - t, time.process_time() - cpu
if mode == "prof":
    pr.disable()
    pstats.Stats(pr).sort_stats(sys.argv[2] if len(sys.argv) > 2 else "cumulative").print_stats(35)
n = app.recorder.max_notification_id()
# The relay's own CPU per event steadies the figure on a shared machine.
print(f"events/s {n / el:,.0f} (relay process CPU: {cpu / n * 1e6:.0f} µs/event)")
relay.release(); app.close(); vhost.delete()
