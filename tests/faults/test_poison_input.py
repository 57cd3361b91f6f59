"""Fault suite: a NUL, a NaN and a 1 MB string through every mutating method of
the three services. Each is refused with a ValidationError naming the field,
nothing is stored, and the service stays healthy and answering (issue 7: one
NUL character used to freeze a service's read models for good)."""
import json
import math
import typing
import urllib.request

import pytest

from shared.errors import ValidationError
from tests.helpers import event_store, rows
from tests.rpc_catalogue import (CATALOGUE, MUTATING, ROLE_FOR, _strip, check_complete,
                                 fields, is_number, is_text, valid_payload)

pytestmark = pytest.mark.faults

POISONS = {"nul": "毒\x00药", "nan": math.nan, "1mb": "长" * (1 << 20)}


def _shaped(tp, value):
    """The poison where a field of this type holds its values (in a list, a map)."""
    origin = typing.get_origin(tp)
    if origin is list:
        return [_shaped(_strip(typing.get_args(tp)[0])[0], value)]
    if origin is dict:
        return {"c1": _shaped(_strip(typing.get_args(tp)[1])[0], value)}
    return value


def _target(model, poison: str) -> str:
    types_ = fields(model)
    wanted = is_number if poison == "nan" else is_text
    return next((n for n, tp in types_.items() if wanted(tp)),
                next((n for n, tp in types_.items() if is_text(tp)), next(iter(types_))))


def _healthy(container) -> bool:
    url = f"http://{container.config['WEB_SERVER_ADDRESS']}/health"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status == 200 and json.load(response)["status"] == "ok"


def _poison_every_mutating_method(service, container, rpc_as, snapshot):
    check_complete(service)
    before = snapshot()
    tried = 0
    for method in MUTATING[service]:
        model = CATALOGUE[service][method]
        caller = getattr(rpc_as(ROLE_FOR.get(method, "org_admin")), service)
        for poison, value in POISONS.items():
            target = _target(model, poison)
            payload = dict(valid_payload(model))
            payload[target] = _shaped(fields(model)[target], value)
            with pytest.raises(ValidationError) as refused:
                getattr(caller, method)(**payload)
            named = [f for f in refused.value.fields
                     if f == target or f.startswith((f"{target}.", f"{target}["))]
            assert named, f"{method} with {poison} in {target}: {refused.value}"
            if poison == "1mb" and typing.get_origin(fields(model)[target]) is None \
                    and is_text(fields(model)[target]):
                assert "at most" in str(refused.value), str(refused.value)[:200]
            tried += 1
    assert snapshot() == before, f"{service}: a refused call stored something"
    assert _healthy(container)
    return tried


def _events(container):
    app = event_store(container).app
    return lambda: app.recorder.max_notification_id()


def test_poison_into_organizations(start_service, rpc_as):
    container = start_service("organizations")
    admin = rpc_as("org_admin").organizations
    committee = admin.create_organization(name="学校党委", kind="committee")
    tried = _poison_every_mutating_method("organizations", container, rpc_as,
                                          _events(container))
    assert tried == 3 * len(MUTATING["organizations"])
    # still applying commands and projecting them
    college = admin.create_organization(name="机电学院党总支", kind="general_branch",
                                        parent_id=committee["id"])
    assert admin.get_organization(college["id"])["path"][0]["id"] == committee["id"]


def test_poison_into_evaluation(start_service, rpc_as):
    container = start_service("evaluation")
    _poison_every_mutating_method("evaluation", container, rpc_as, _events(container))
    admin = rpc_as("org_admin").evaluation
    definition = admin.get_scheme(admin.list_schemes()[0]["scheme_id"])["definition"]
    definition["title"] += "（修订）"
    assert admin.publish_scheme(definition=definition, reason="修订 revised")["version"] == 2


def test_poison_into_notifications(start_service, rpc_as, databases):
    container = start_service("notifications")
    admin = rpc_as("org_admin").notifications
    admin.register_contact(recipient_id="ops-1", name="值班员", kind="staff",
                           email="ops@example.edu.cn")
    events = _events(container)
    db = databases["notifications"]

    def snapshot():
        return (events(), rows(db, "SELECT recipient_id, name, email, groups, preferences, "
                                   "active FROM contacts ORDER BY recipient_id"),
                rows(db, "SELECT count(*) AS n, count(read_at) AS r FROM notices"))

    _poison_every_mutating_method("notifications", container, rpc_as, snapshot)
    assert admin.update_contact(recipient_id="ops-1", name="值班员甲")["name"] == "值班员甲"
