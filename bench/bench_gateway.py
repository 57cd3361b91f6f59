"""Gateway benchmark (HTTP 网关): what HTTP/JSON costs beside the RPC it wraps.

  organizations.get_organization over nameko RPC (baseline)
  the same through the gateway: POST /api/v1/organizations/get_organization
  (Bearer check, body read, schema check, RPC, JSON answer)
  a refused call (400, schema check only: no RPC)

Run: .venv/bin/python -m bench.bench_gateway [N]   (needs local PostgreSQL and RabbitMQ;
BENCH_AMQP_URI picks another virtual host)
"""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import shared  # noqa: E402,F401

import os  # noqa: E402
import sys  # noqa: E402

import requests  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.common import PG, bench_db, print_table, summary, timed  # noqa: E402
from services.gateway.service import GatewayService  # noqa: E402
from services.organizations.service import OrganizationsService  # noqa: E402
from shared.identity import mint_token  # noqa: E402

AMQP = os.environ.get("BENCH_AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672/")
SECRET = "bench-secret-0123456789-0123456789-abcdef"


def main(n=300):
    settings = bench_db("gateway_organizations")
    organizations = ServiceContainer(OrganizationsService, {
        "AMQP_URI": AMQP, "AUTH_SECRET": SECRET, "WEB_SERVER_ADDRESS": "127.0.0.1:18021",
        "DATABASE": {"dbname": settings.dbname, **PG}, "RELAY": {"enabled": False}})
    gateway = ServiceContainer(GatewayService, {
        "AMQP_URI": AMQP, "AUTH_SECRET": SECRET, "WEB_SERVER_ADDRESS": "127.0.0.1:18020",
        "GATEWAY": {"services": ["organizations"]}})
    organizations.start()
    gateway.start()
    token = mint_token(SECRET, sub="bench", role="org_admin", ttl=3600)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    url = "http://127.0.0.1:18020/api/v1/organizations/get_organization"
    results = []
    with ClusterRpcProxy({"AMQP_URI": AMQP}, context_data={"auth_token": token}) as rpc:
        committee = rpc.organizations.create_organization(name="学校党委", kind="committee")
        rpc_calls = summary(timed(lambda: rpc.organizations.get_organization(committee["id"]), n))
    results.append(("organizations.get_organization over RPC (baseline)", rpc_calls, None))

    def over_http():
        response = session.post(url, json={"org_id": committee["id"]}, timeout=30)
        assert response.status_code == 200, response.text

    def refused():
        assert session.post(url, json={"org_id": "nope"}, timeout=30).status_code == 400

    results.append(("the same through the gateway (HTTP, JSON, schema, RPC)",
                    summary(timed(over_http, n)), rpc_calls))
    results.append(("a refused body (400 at the gateway, no RPC)",
                    summary(timed(refused, n)), rpc_calls))
    gateway.stop()
    organizations.stop()
    print(f"\nGateway benchmark, {n} samples each (ratios against the RPC baseline)\n")
    print_table(results)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
