"""Foundation benchmark: the platform's overhead beside its raw baselines.

  raw kombu request/reply round trip   vs  organizations read RPC (get_organization)
  raw psycopg INSERT + COMMIT          vs  one event appended through the application
                                           (and the whole command: load, append, read model)

Run: .venv/bin/python -m bench.bench_foundation [N]  (or: make bench)   (needs local PostgreSQL and RabbitMQ)
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import sys  # noqa: E402
import uuid  # noqa: E402

import psycopg  # noqa: E402
from kombu import Connection, Exchange, Producer, Queue  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import PG, bench_db, print_table, small_tree, summary, timed  # noqa: E402
from services.organizations.application import OrganizationsApplication  # noqa: E402
from services.organizations.service import OrganizationsService  # noqa: E402
from shared.identity import Caller, mint_token  # noqa: E402

AMQP = "pyamqp://guest:guest@127.0.0.1:5672/"
SECRET = "bench-secret-0123456789-0123456789-abcdef"


def kombu_round_trip(n):
    """A bare request/reply over RabbitMQ: responder and caller in this process."""
    exchange = Exchange("bench-rpc", type="direct", auto_delete=True)
    requests_q = Queue("bench-rpc-requests", exchange, routing_key="req", auto_delete=True)
    reply_q = Queue(f"bench-reply-{uuid.uuid4().hex}", exclusive=True, auto_delete=True)
    server_conn, client_conn = Connection(AMQP), Connection(AMQP)

    def on_request(body, message):
        Producer(server_conn.default_channel).publish(
            {"result": body}, routing_key=message.properties["reply_to"],
            correlation_id=message.properties["correlation_id"], serializer="json")
        message.ack()

    def serve():
        with server_conn.Consumer(requests_q, callbacks=[on_request]):
            while True:
                try:
                    server_conn.drain_events(timeout=1)
                except Exception:
                    pass

    requests_q(server_conn.default_channel).declare()
    server = eventlet.spawn(serve)
    replies = []
    consumer = client_conn.Consumer(reply_q, callbacks=[lambda b, m: (replies.append(b), m.ack())])
    consumer.consume()
    producer = Producer(client_conn.default_channel)

    def call():
        producer.publish({"org_id": "x"}, exchange=exchange, routing_key="req",
                         reply_to=reply_q.name, correlation_id=uuid.uuid4().hex,
                         serializer="json")
        while not replies:
            client_conn.drain_events(timeout=5)
        replies.clear()

    samples = timed(call, n)
    server.kill()  # its connection goes with the process
    consumer.cancel()
    client_conn.release()
    return samples


def raw_insert(settings, n):
    conn = psycopg.connect(settings.conninfo())
    conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, "
                 "originator_id uuid, version int, topic text, state bytea)")
    conn.commit()
    payload = b'{"actor":{"sub":"bench","role":"org_admin"},"double_leader":true}'

    def insert():
        conn.execute("INSERT INTO bench_raw (originator_id, version, topic, state) "
                      "VALUES (%s, 1, 'bench', %s)", (uuid.uuid4(), payload))
        conn.commit()

    samples = timed(insert, n)
    conn.close()
    return samples


def main(n=500):
    settings = bench_db("organizations")
    app = OrganizationsApplication(settings)
    admin = Caller("bench", "org_admin")
    _, college, branch = small_tree(app, admin)
    member = app.register_member(admin, {"name": "张三", "branch_id": branch["id"],
                                         "category": "teacher", "status": "full",
                                         "joined_on": "2010-07-01"})
    from services.organizations.domain import Member

    held = app.repository.get(uuid.UUID(member["id"]))

    def append_event():
        # one new event on an aggregate already in memory: the store's append alone
        held.set_double_leader(not held.double_leader, admin.as_actor())
        app.save(held)

    def whole_command():
        # validate, load the branch, append, bring read models up to date, read back
        app.register_member(admin, {"name": "李四", "branch_id": branch["id"],
                                    "category": "teacher", "status": "full",
                                    "joined_on": "2010-07-01"})

    results = []
    raw = summary(raw_insert(settings, n))
    results.append(("raw psycopg INSERT + COMMIT (baseline)", raw, None))
    results.append(("event append via application (save)", summary(timed(append_event, n)), raw))
    results.append(("register_member command (load, save, read model, read)",
                    summary(timed(whole_command, n)), raw))
    app.close()

    config = {"AMQP_URI": AMQP, "AUTH_SECRET": SECRET, "WEB_SERVER_ADDRESS": "127.0.0.1:18001",
              "DATABASE": {"dbname": settings.dbname, **PG}, "RELAY": {"enabled": True}}
    container = ServiceContainer(OrganizationsService, config)
    container.start()
    kombu = summary(kombu_round_trip(n))
    results.append(("raw kombu request/reply round trip (baseline)", kombu, None))
    token = mint_token(SECRET, sub="bench", role="org_admin")
    with ClusterRpcProxy({"AMQP_URI": AMQP}, context_data={"auth_token": token}) as rpc:
        results.append(("organizations.get_organization RPC",
                        summary(timed(lambda: rpc.organizations.get_organization(college["id"]), n)),
                        kombu))
        results.append(("organizations.get_path RPC",
                        summary(timed(lambda: rpc.organizations.get_path(branch["id"]), n)), kombu))
    container.stop()
    print(f"\nFoundation benchmark, {n} samples each (ratios against the baseline above them)\n")
    print_table(results)
    assert Member  # imported for the aggregate class registry


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
