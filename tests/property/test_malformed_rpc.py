"""Property-based: every RPC method of the three services, driven through real
RPC with malformed input (wrong types, NUL, lone surrogates, control
characters, U+202E, NaN, ±Infinity, huge integers, over-long strings,
malformed ids, unknown or missing arguments), always answers with one of the
documented errors and never changes anything.

Each generated call carries at least one value that must be refused (a poison
value in one of the method's arguments, an unknown argument, or a poison
positional argument), so no call may succeed; the other arguments are a mix of
well-formed values, omissions and more hostile values."""
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.helpers import build_tree, event_store, rows
from tests.rpc_catalogue import CATALOGUE, check_complete, fields, is_id, valid_value

DOCUMENTED = {"ValidationError", "NotFound", "Forbidden", "Unauthenticated", "Conflict"}
EXAMPLES_PER_METHOD = 8

POISON_CHARS = ["\x00", "\ud800", "\udfff", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x85",
                "\x9b", "\u202e", "\u202a", "\u2066", "\u2069", "\u200f", "\u061c"]
plain = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=12)
poison_text = st.builds(
    lambda a, c, b: a + c + b, plain,
    st.sampled_from(POISON_CHARS) | st.characters(categories=["Cc"]).filter(
        lambda c: c not in "\t\n\r"),
    plain)
# Refused in any argument of any method, whatever its type.
universal_poison = st.one_of(
    poison_text,
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(200_001, 210_000).map(lambda n: "x" * n),   # beyond every text limit
)
# Refused in an id argument (a UUID).
id_poison = st.one_of(
    st.sampled_from(["not-a-uuid", "", "' OR 1=1 --", "12345", "0" * 33,
                     f"{uuid.uuid4()}\x00", "ffffffff-ffff-ffff-ffff-fffffffffffff"]),
    st.integers(), st.integers(10**20, 10**40), st.lists(st.integers(), max_size=2),
    st.dictionaries(plain, st.integers(), max_size=2), universal_poison)
hostile = st.one_of(
    universal_poison, id_poison, st.none(), st.booleans(), st.integers(),
    st.floats(), st.integers(-10**30, 10**30), plain,
    st.lists(plain | st.floats(), max_size=3),
    st.dictionaries(plain, st.integers() | plain | st.floats(), max_size=3))


def _error_type(exc) -> str:
    return getattr(exc, "exc_type", None) or type(exc).__name__


def _draw_call(data, service: str, method: str, known_ids: list):
    types_ = fields(CATALOGUE[service][method])
    kwargs, args = {}, []
    for name, tp in types_.items():
        choice = data.draw(st.sampled_from(["omit", "valid", "hostile"]), label=name)
        if choice == "valid":
            kwargs[name] = data.draw(st.sampled_from(known_ids), label=name) \
                if tp is uuid.UUID and known_ids and data.draw(st.booleans()) \
                else valid_value(tp)
        elif choice == "hostile":
            kwargs[name] = data.draw(hostile, label=name)
    where = data.draw(st.sampled_from(
        ["argument", "unknown", "positional"] if types_ else ["unknown", "positional"]))
    if where == "argument":
        name = data.draw(st.sampled_from(sorted(types_)), label="poisoned")
        kwargs[name] = data.draw(id_poison if is_id(types_[name]) else universal_poison,
                                 label=f"poison {name}")
    elif where == "unknown":
        name = data.draw(plain.filter(lambda s: s and s not in types_ and s != "self"),
                         label="unknown argument")
        kwargs[name] = data.draw(hostile | st.just("ok"), label=f"value of {name}")
    else:
        args.append(data.draw(universal_poison, label="positional"))
    return args, kwargs


def _drive(service, proxies, snapshot, known_ids=()):
    check_complete(service)
    before = snapshot()
    roles = sorted(proxies)

    @settings(max_examples=EXAMPLES_PER_METHOD, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def calls_are_refused(method, data):
        role = data.draw(st.sampled_from(["org_admin"] * 4 + roles), label="caller")
        args, kwargs = _draw_call(data, service, method, list(known_ids))
        with pytest.raises(Exception) as caught:
            getattr(getattr(proxies[role], service), method)(*args, **kwargs)
        assert _error_type(caught.value) in DOCUMENTED, (
            f"{service}.{method} answered {_error_type(caught.value)}: {caught.value!r:.300}")
        assert snapshot() == before, f"{service}.{method} changed state on a refused call"

    for method in sorted(CATALOGUE[service]):
        calls_are_refused(method)


def _proxies(rpc_as, org_id=None):
    return {"org_admin": rpc_as("org_admin"), "ops": rpc_as("ops"),
            "auditor": rpc_as("auditor"), "member": rpc_as("member", sub=str(uuid.uuid4())),
            "college_secretary": rpc_as("college_secretary", org=org_id or uuid.uuid4()),
            "branch_secretary": rpc_as("branch_secretary", org=uuid.uuid4()),
            "nobody": rpc_as(), "forged": rpc_as(raw_token="not.a.token")}


def _events(container):
    app = event_store(container).app
    return lambda: app.recorder.max_notification_id()


def test_organizations_refuses_malformed_input(start_service, rpc_as):
    container = start_service("organizations")
    proxies = _proxies(rpc_as)
    tree = build_tree(proxies["org_admin"].organizations, branches=1, members_per_branch=1)
    known = [tree["committee"], tree["college"], *tree["branches"], *tree["members"]]
    _drive("organizations", proxies, _events(container), known)
    assert len(proxies["org_admin"].organizations.get_tree()) == 1  # still answering


def test_evaluation_refuses_malformed_input(start_service, rpc_as):
    container = start_service("evaluation")
    proxies = _proxies(rpc_as)
    _drive("evaluation", proxies, _events(container))
    assert proxies["org_admin"].evaluation.list_schemes()  # still answering


def test_notifications_refuses_malformed_input(start_service, rpc_as, databases):
    container = start_service("notifications")
    proxies = _proxies(rpc_as)
    proxies["org_admin"].notifications.register_contact(
        recipient_id="tester", name="测试员", kind="staff", email="tester@example.edu.cn")
    events = _events(container)
    wait_for(lambda: events() > 0, message="the contact stored")
    settings_ = databases["notifications"]

    def snapshot():
        return (events(), rows(settings_, "SELECT count(*) AS n, count(read_at) AS r, "
                           "string_agg(recipient_id, ',' ORDER BY id) AS who FROM notices"),
                rows(settings_, "SELECT string_agg(status || attempts, ',' ORDER BY id) AS s "
                     "FROM deliveries"),
                rows(settings_, "SELECT string_agg(recipient_id || name || coalesce(email, '') "
                     "|| active::text, ',' ORDER BY recipient_id) AS c FROM contacts"))

    _drive("notifications", proxies, snapshot)
    assert proxies["org_admin"].notifications.get_contact(recipient_id="tester")["name"] == "测试员"
