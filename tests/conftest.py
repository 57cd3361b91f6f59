# Green threads first: without this plain pytest hangs on nameko's AMQP waits.
import eventlet

eventlet.monkey_patch()

import shared  # noqa: E402,F401  (PSYCOPG_WAIT_FUNC before psycopg is imported)

import contextlib  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from shared.config import DatabaseSettings  # noqa: E402
from shared.identity import mint_token  # noqa: E402
from shared.dbsetup import empty_stored_events, service_role, setup_service_database  # noqa: E402,E501

SECRET = "test-secret-for-lianchuang-tests-only-0123456789"
# Per source service: the HMAC key its relay signs events with (shared.secrets).
EVENT_KEYS = {s: f"test-event-key-of-{s}-0123456789-abcdefghij" for s in
              ("organizations", "evaluation", "notifications")}
SERVICES = ("organizations", "evaluation", "notifications")
PG = dict(host=os.environ.get("POSTGRES_HOST", "127.0.0.1"),
          port=int(os.environ.get("POSTGRES_PORT", "5432")),
          user=os.environ.get("POSTGRES_USER", "postgres"),
          password=os.environ.get("POSTGRES_PASSWORD", "postgres"))
# One set of databases per test run (several runs may share a machine).
RUN_ID = os.environ.get("LIANCHUANG_TEST_RUN", f"{os.getpid()}")


def db_settings(service: str) -> DatabaseSettings:
    return DatabaseSettings(dbname=f"lctest_{RUN_ID}_{service}", pool_size=2, max_overflow=8,
                            role=service_role(service), **PG)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def databases():
    """Each service's own database for this test run, set up as in production
    (the service connects as its own role), dropped at the end."""
    settings = {s: db_settings(s) for s in SERVICES}
    for service, s in settings.items():
        setup_service_database(s, service)
    yield settings
    admin = settings["organizations"].admin()
    with psycopg.connect(admin.conninfo("postgres"), autocommit=True) as conn:
        for s in settings.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{s.dbname}" WITH (FORCE)')


def wipe(settings: DatabaseSettings) -> None:
    """Empty every table (and reset sequences): each test starts from nothing.
    Stored events go the documented maintenance way (the append-only trigger
    refuses even a superuser otherwise)."""
    with psycopg.connect(settings.admin().conninfo(), autocommit=True) as conn:
        guarded = empty_stored_events(conn)
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> ALL(%s)", (guarded,)).fetchall()]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                         + " RESTART IDENTITY CASCADE")


@pytest.fixture
def clean_databases(databases):
    for s in databases.values():
        wipe(s)
    return databases


def service_config(rabbit_config, settings: DatabaseSettings, **extra) -> dict:
    config = {
        "AMQP_URI": rabbit_config["AMQP_URI"],
        "AUTH_SECRET": SECRET,
        "EVENT_SIGNING_KEYS": dict(EVENT_KEYS),
        **{f"{s.upper()}_CIPHER_KEY": f"test-cipher-key-of-{s}-0123456789-abcdefgh"
           for s in SERVICES},
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "DATABASE": {"dbname": settings.dbname, "pool_size": settings.pool_size,
                     "max_overflow": settings.max_overflow, "role": settings.role, **PG},
        "RELAY": {"poll_interval": 0.05, "batch_size": 200},
        "PROJECTIONS": {"poll_interval": 0.2},
        "max_workers": 10,
    }
    config.update(extra)
    return config


@pytest.fixture
def start_service(container_factory, rabbit_config, clean_databases):
    """start_service("organizations", INSTANCE="a") -> a running container."""
    from services.evaluation.service import EvaluationService
    from services.notifications.service import NotificationsService
    from services.organizations.service import OrganizationsService

    classes = {"organizations": OrganizationsService, "evaluation": EvaluationService,
               "notifications": NotificationsService}

    def start(name: str, **extra):
        config = service_config(rabbit_config, clean_databases[name], **extra)
        container = container_factory(classes[name], config)
        container.start()
        return container

    return start


def token(role: str, sub: str = "tester", org=None, ttl: int = 3600) -> str:
    return mint_token(SECRET, sub=sub, role=role, org=str(org) if org else None, ttl=ttl)


@pytest.fixture
def rpc_as(rabbit_config):
    """rpc_as("org_admin") -> a cluster proxy carrying that caller's token."""
    stack = contextlib.ExitStack()

    def proxy(role=None, sub="tester", org=None, raw_token=None, ttl=3600):
        context = {}
        if raw_token is not None:
            context["auth_token"] = raw_token
        elif role is not None:
            context["auth_token"] = token(role, sub, org, ttl)
        return stack.enter_context(ClusterRpcProxy(
            {"AMQP_URI": rabbit_config["AMQP_URI"]}, context_data=context, timeout=30))

    with stack:
        yield proxy


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = ""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        eventlet.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")


@pytest.fixture
def start_gateway(container_factory, rabbit_config):
    """start_gateway(**GATEWAY settings) -> the gateway's base URL (http://127.0.0.1:port)."""
    from services.gateway.service import GatewayService

    def start(**gateway):
        address = f"127.0.0.1:{free_port()}"
        config = {"AMQP_URI": rabbit_config["AMQP_URI"], "AUTH_SECRET": SECRET,
                  "WEB_SERVER_ADDRESS": address, "GATEWAY": {"rpc_timeout": 20, **gateway}}
        container_factory(GatewayService, config).start()
        return f"http://{address}"

    return start


@pytest.fixture
def gateway(start_service, start_gateway):
    """The three services and the gateway in front of them -> the gateway's base URL."""
    for name in SERVICES:
        start_service(name)
    return start_gateway()
