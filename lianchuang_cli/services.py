"""The three services as the command line sees them: name, config file, database."""
from __future__ import annotations

from pathlib import Path

import yaml

from shared.config import DatabaseSettings

SERVICES = ("organizations", "evaluation", "notifications")
_ROOT = Path(__file__).resolve().parent.parent / "services"


def load_config(service: str) -> dict:
    """The service's ``config.yaml`` with ``${VAR:default}`` resolved, as
    ``nameko run`` reads it."""
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    with open(_ROOT / service / "config.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def database(service: str) -> DatabaseSettings:
    return DatabaseSettings.from_config(load_config(service))


def chosen(service: str | None) -> tuple[str, ...]:
    return (service,) if service else SERVICES


def application(service: str):
    """The service's application on its database (as its own role, with its
    cipher key: secrets as the service reads them, see shared.secrets)."""
    if service == "organizations":
        from services.organizations.application import OrganizationsApplication as App
    elif service == "evaluation":
        from services.evaluation.application import EvaluationApplication as App
    else:
        from services.notifications.application import NotificationsApplication as App
    from shared.config import DatabaseSettings
    from shared.secrets import event_cipher_key

    import os

    config = load_config(service)
    # The stored events are encrypted with the service's key (<SERVICE>_CIPHER_KEY).
    key = event_cipher_key(service, config)
    # eventsourcing reads os.environ too and prefers "<APP NAME>_CIPHER_KEY" there
    # over the derived key it is given: the secret of that name must not reach it.
    os.environ.pop(f"{service.upper()}_CIPHER_KEY", None)
    return App(DatabaseSettings.from_config(config).with_cipher(key))
