"""Private broker and database processes for fault cases that kill them.

The machine's own RabbitMQ and PostgreSQL serve every other test (and
developers' `make run`); a case that kills a server gets its own on a loopback
port, in a temporary folder, stopped at the end of the case.
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from shared.config import DatabaseSettings
from tests.conftest import free_port, service_config

def _postgres_bin() -> str | None:
    """The newest installed PostgreSQL server's binaries (Debian layout)."""
    root = "/usr/lib/postgresql"
    if not os.path.isdir(root):
        return None
    versions = sorted((v for v in os.listdir(root) if v.isdigit()), key=int, reverse=True)
    return next((f"{root}/{v}/bin" for v in versions if os.path.exists(f"{root}/{v}/bin/initdb")),
                None)


PG_BIN = _postgres_bin()
RABBIT_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, up: bool, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_open(port) == up:
            return
        time.sleep(0.2)
    raise AssertionError(f"port {port} not {'up' if up else 'down'} after {timeout}s")


class PrivateRabbit:
    """A RabbitMQ node of its own (no plugins) that a test may kill -9."""

    def __init__(self, folder: str):
        self.folder = folder
        self.port = free_port()
        self.uri = f"pyamqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None
        with open(os.path.join(folder, "enabled_plugins"), "w") as f:
            f.write("[].")
        self.env = dict(os.environ, HOME=folder, RABBITMQ_NODENAME=f"lcfault{self.port}@localhost",
                        RABBITMQ_NODE_PORT=str(self.port),
                        RABBITMQ_DIST_PORT=str(free_port()),
                        RABBITMQ_MNESIA_BASE=os.path.join(folder, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(folder, "log"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(folder, "enabled_plugins"),
                        RABBITMQ_CONFIG_FILE=os.path.join(folder, "none"))

    def start(self) -> None:
        log = open(os.path.join(self.folder, "server.log"), "ab")
        self.process = subprocess.Popen([RABBIT_SERVER], env=self.env, cwd=self.folder,
                                        stdout=log, stderr=log, start_new_session=True)
        wait_port(self.port, True, 90)

    def kill(self) -> None:
        """SIGKILL the whole node (its process group): a crash, not a shutdown."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None
        wait_port(self.port, False, 10)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth) that a test may restart."""

    def __init__(self, folder: str):
        self.folder = folder
        self.port = free_port()
        self.data = os.path.join(folder, "data")
        shutil.chown(folder, "postgres")
        self._as_postgres(f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres")

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self._as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data, "-w", "-l",
                          os.path.join(self.folder, "server.log"), "-o",
                          f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                          "-c max_connections=200", "start")

    def crash(self) -> None:
        """Stop at once, as a crash would (immediate mode: no checkpoint)."""
        self._as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")


@pytest.fixture
def private_rabbit():
    if not os.path.exists(RABBIT_SERVER):
        pytest.fail("RabbitMQ's server is not installed (scripts/ensure-infra.sh installs it)")
    folder = tempfile.mkdtemp(prefix="lcrabbit-")
    os.chmod(folder, 0o777)
    rabbit = PrivateRabbit(folder)
    rabbit.start()
    try:
        yield rabbit
    finally:
        rabbit.kill() if rabbit.process else None
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def private_postgres():
    if PG_BIN is None:
        pytest.fail("PostgreSQL's server binaries are not installed")
    folder = tempfile.mkdtemp(prefix="lcpg-")
    pg = PrivatePostgres(folder)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def fault_config(amqp_uri: str, dbname: str, pg_port: int = 5432, **extra) -> dict:
    """The tests' service config on a private broker and/or database."""
    settings = DatabaseSettings(dbname=dbname, port=pg_port, pool_size=2)
    config = service_config({"AMQP_URI": amqp_uri}, settings, **extra)
    config["DATABASE"]["port"] = pg_port
    return config
