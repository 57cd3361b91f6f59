"""cProfile (CPU time) of organizations' ``Projector.rebuild`` over a store of
member changes, as ``make bench`` measures it (``relay_and_rebuild``):
.venv/bin/python -m bench.profile_org_rebuild [events] [sort]"""
import warnings
warnings.filterwarnings("ignore")
import eventlet  # noqa: E402
eventlet.monkey_patch()
import shared  # noqa: E402,F401
import cProfile  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402

from bench.common import bench_db, small_tree  # noqa: E402
from services.organizations.application import OrganizationsApplication  # noqa: E402
from shared.identity import Caller  # noqa: E402
from shared.secrets import event_cipher_key  # noqa: E402

events = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
sort = sys.argv[2] if len(sys.argv) > 2 else "tottime"
settings = bench_db("profile_org_rebuild")
app = OrganizationsApplication(settings.with_cipher(event_cipher_key("organizations", {})))
try:
    admin = Caller("bench", "org_admin")
    _, _, branch = small_tree(app, admin)
    ids = [app.register_member(admin, {"name": f"党员{i}", "branch_id": branch["id"],
                                       "category": "teacher", "status": "full",
                                       "joined_on": "2010-07-01"})["id"] for i in range(50)]
    held = [app.repository.get(__import__("uuid").UUID(i)) for i in ids]
    for k in range(0, events, 1000):
        for j in range(1000):
            m = held[(k + j) % len(held)]
            m.set_double_leader(not m.double_leader, admin.as_actor())
        app.save(*held)
    app.projector.catch_up()
    prof = cProfile.Profile(time.process_time)
    started = time.perf_counter()
    prof.enable()
    applied = app.projector.rebuild()
    prof.disable()
    elapsed = time.perf_counter() - started
    print(f"rebuild: {applied:,} events in {elapsed:.2f} s (profiled) = {applied / elapsed:,.0f}/s")
    pstats.Stats(prof).sort_stats(sort).print_stats(30)
finally:
    app.close()
    with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{settings.dbname}" WITH (FORCE)')
