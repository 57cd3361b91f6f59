"""Settings read from a service's nameko config (YAML with ``${VAR:default}``)."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DatabaseSettings:
    """One service's own PostgreSQL database; no service reads another's."""

    dbname: str
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    # eventsourcing asks for a password even when the server trusts the client.
    password: str = "postgres"
    pool_size: int = 4
    max_overflow: int = 6

    @classmethod
    def from_config(cls, config: dict) -> "DatabaseSettings":
        db = dict(config.get("DATABASE") or {})
        if not db.get("dbname"):
            raise RuntimeError("DATABASE.dbname is not configured")
        return cls(
            dbname=str(db["dbname"]),
            host=str(db.get("host") or "127.0.0.1"),
            port=int(db.get("port") or 5432),
            user=str(db.get("user") or "postgres"),
            password=str(db.get("password") or "postgres"),
            pool_size=int(db.get("pool_size") or 4),
            max_overflow=int(db.get("max_overflow") or 6),
        )

    def conninfo(self, dbname: str | None = None) -> str:
        return (f"host={self.host} port={self.port} user={self.user} "
                f"password={self.password} dbname={dbname or self.dbname}")

    def with_dbname(self, dbname: str) -> "DatabaseSettings":
        return replace(self, dbname=dbname)

    def eventsourcing_env(self) -> dict:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_POOL_SIZE": str(self.pool_size),
            "POSTGRES_MAX_OVERFLOW": str(self.max_overflow),
            "POSTGRES_PRE_PING": "y",
            # Never POSTGRES_ENABLE_DB_FUNCTIONS: its insert skips the table lock
            # that keeps notification ids in commit order, which the relay relies on.
        }


def service_instance(config: dict) -> str:
    """A name for this running instance (metrics label, relay leadership)."""
    import os
    import socket

    return str(config.get("INSTANCE") or f"{socket.gethostname()}-{os.getpid()}")
