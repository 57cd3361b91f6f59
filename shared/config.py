"""Settings read from a service's nameko config (YAML with ``${VAR:default}``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace


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
    max_overflow: int = 20
    # How long a worker waits for a pooled connection before the caller gets
    # ``Unavailable``: waiting is bounded, never a hang.
    pool_timeout: float = 5.0
    # Encrypts stored events at rest (eventsourcing's AES-GCM cipher, base64 AES
    # key, shared.secrets.event_cipher_key); None stores them in plain text.
    cipher_key: str | None = field(default=None, repr=False)
    # The service's own PostgreSQL role (``lianchuang_<service>_svc``, made by
    # ``lianchuang db setup``): when set the service connects as it, and
    # ``user`` is only the administrator that setup runs as.
    role: str = ""

    @classmethod
    def from_config(cls, config: dict) -> "DatabaseSettings":
        db = dict(config.get("DATABASE") or {})
        if not db.get("dbname"):
            raise RuntimeError("DATABASE.dbname is not configured")
        pool_size = int(db.get("pool_size") or 4)
        max_overflow = int(db.get("max_overflow") or 20)
        # A worker holds at most two connections at once (a consumer's inbox
        # transaction while its effect saves events); the projector, the relay
        # and /health take one each. Below that the pool could run dry with
        # every worker waiting on another: raise the overflow rather than risk it.
        needed = connections_needed(int(config.get("max_workers") or 10))
        max_overflow = max(max_overflow, needed - pool_size)
        return cls(
            dbname=str(db["dbname"]),
            host=str(db.get("host") or "127.0.0.1"),
            port=int(db.get("port") or 5432),
            user=str(db.get("user") or "postgres"),
            password=str(db.get("password") or "postgres"),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=float(db.get("pool_timeout") or 5.0),
            role=str(db.get("role") or ""),
        )

    @property
    def login(self) -> str:
        """Who the service connects as: its own role, else ``user``."""
        return self.role or self.user

    def admin(self) -> "DatabaseSettings":
        """The same database as the administrator (setup, maintenance)."""
        return replace(self, role="")

    def conninfo(self, dbname: str | None = None) -> str:
        return (f"host={self.host} port={self.port} user={self.login} "
                f"password={self.password} dbname={dbname or self.dbname}")

    def with_dbname(self, dbname: str) -> "DatabaseSettings":
        return replace(self, dbname=dbname)

    def eventsourcing_env(self) -> dict:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            # The library's recorder plus the hook commands record their key in.
            "APPLICATION_RECORDER_TOPIC": "shared.store:CommandRecorder",
            # The library's JSON format, read with orjson (read models decode
            # every event of a rebuild: shared.transcoding).
            "TRANSCODER_TOPIC": "shared.transcoding:JSONTranscoder",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.login,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_POOL_SIZE": str(self.pool_size),
            "POSTGRES_MAX_OVERFLOW": str(self.max_overflow),
            # Checked only after idling: shared.store._check_when_idle replaces the
            # library's check-every-checkout in every service's application.
            "POSTGRES_PRE_PING": "y",
            # Aggregates stay cached between commands and are fast-forwarded
            # with the events stored since (one indexed read, usually empty; other
            # instances' writes included) instead of replayed from their last
            # snapshot each time; each caller gets a deep copy, so a command that
            # fails leaves the cached one as stored. Version clashes are still
            # the store's unique key, so a stale copy can never overwrite.
            "AGGREGATE_CACHE_MAXSIZE": "2000",
            "AGGREGATE_CACHE_FASTFORWARD": "y",
            "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(self.pool_timeout))),
            # A transaction left idle (a worker killed mid-command) is ended by
            # the server instead of holding its locks for good.
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
            # A service role cannot (and need not) create the store's tables:
            # ``lianchuang db setup`` made them as the administrator.
            "CREATE_TABLE": "n" if self.role else "y",
            # Never POSTGRES_ENABLE_DB_FUNCTIONS: its insert skips the table lock
            # that keeps notification ids in commit order, which the relay relies on.
            **self._cipher_env(),
        }

    def _cipher_env(self) -> dict:
        if not self.cipher_key:
            return {}
        # The library's AES-GCM format, its key schedule made once (shared.transcoding).
        return {"CIPHER_TOPIC": "shared.transcoding:AESCipher",
                "CIPHER_KEY": self.cipher_key}

    def with_cipher(self, cipher_key: str | None) -> "DatabaseSettings":
        return replace(self, cipher_key=cipher_key)


def connections_needed(max_workers: int) -> int:
    """Pooled connections that let every worker and background thread proceed."""
    return 2 * max_workers + 4


def service_instance(config: dict) -> str:
    """A name for this running instance (metrics label, relay leadership)."""
    import os
    import socket

    return str(config.get("INSTANCE") or f"{socket.gethostname()}-{os.getpid()}")
