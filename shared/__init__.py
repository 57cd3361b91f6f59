"""Lianchuang (联创) platform code shared by every service.

Importing this package first makes psycopg cooperate with eventlet: psycopg's
binary build otherwise blocks every green thread of a service while one worker
waits on the database. The variable must be set before psycopg is imported.
"""
import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import warnings

# eventlet announces its own deprecation on import; nameko 2 depends on it.
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

# ... and waits without a trip through eventlet's hub when the socket is ready
# at once (shared.pgwait: pipelined statements were four times dearer).
from shared import pgwait as _pgwait  # noqa: E402

_pgwait.install()
