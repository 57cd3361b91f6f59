"""Domain helpers shared by every bounded context (pure: no I/O)."""
from __future__ import annotations

import datetime as dt
import uuid

from shared.errors import ValidationError

# Namespace for ids derived from natural keys (name claims, demo data).
LIANCHUANG_NS = uuid.UUID("6f1c8f5e-3c2a-4b7e-9a43-5d1f0e2b7a10")


def derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(LIANCHUANG_NS, "/".join(str(p) for p in parts))


def require(condition: bool, field: str, message: str) -> None:
    """Raise a ValidationError naming ``field`` unless ``condition`` holds."""
    if not condition:
        raise ValidationError.single(field, message)


def parse_date(value, field: str) -> str:
    """An ISO date (YYYY-MM-DD) as text, as events record it."""
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except (TypeError, ValueError):
        raise ValidationError.single(field, f"not a date (YYYY-MM-DD): {value!r}")


def parse_moment(value, field: str) -> dt.datetime:
    """An ISO timestamp (or date, meaning its start in UTC), timezone-aware."""
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except (TypeError, ValueError):
            raise ValidationError.single(field, f"not an ISO timestamp: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def end_of_day_moment(value, field: str = "as_of") -> dt.datetime:
    """``as_of`` of a dashboard answer: an ISO timestamp, or a date meaning the end
    of that day (UTC), so that everything recorded on it counts."""
    moment = parse_moment(value, field)
    if isinstance(value, str) and len(value.strip()) == 10:
        moment += dt.timedelta(days=1, microseconds=-1)
    return moment


def today() -> str:
    return dt.date.today().isoformat()
