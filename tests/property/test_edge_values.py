"""Property-based: well-typed but extreme arguments (any Unicode text within the
limits, the first and last dates and timestamps, the largest numbers, ids of
real and unknown records) to every RPC method of the three services: whatever
passes validation answers with a result or a documented error, never
anything else, and the service keeps answering."""
import datetime as dt
import typing
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.helpers import build_tree
from tests.property.test_malformed_rpc import DOCUMENTED, _error_type, _proxies
from tests.rpc_catalogue import CATALOGUE, _strip, check_complete

EXAMPLES_PER_METHOD = 6

safe_char = st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]).filter(
    lambda c: c not in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
moments = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=14)),
                                            dt.timezone(dt.timedelta(hours=-12))])
                 ).map(lambda d: d.isoformat()),
    st.dates().map(str), st.sampled_from(["0001-01-01T00:00:00+14:00",
                                          "9999-12-31T23:59:59-12:00", "2026-02-30", "now"]))


def _edge(field: str, info) -> st.SearchStrategy:
    tp = _strip(info.annotation)[0]
    if tp is str:
        if field in ("as_of", "until"):
            return moments
        limit = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)),
                     100)
        return st.text(safe_char, min_size=1, max_size=min(limit, 300)) | st.just("x" * limit)
    return _edge_type(tp)


def _edge_type(tp) -> st.SearchStrategy:
    origin = typing.get_origin(tp)
    if tp is uuid.UUID:
        return st.uuids().map(str)
    if tp is dt.date:
        return st.dates().map(str)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.sampled_from([0, 1, 2**31 - 1, 2**63 - 1, -1])
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, 5e-324])
    if tp is str:
        return st.text(safe_char, min_size=1, max_size=20)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(tp))
    if origin is list:
        return st.lists(_edge_type(_strip(typing.get_args(tp)[0])[0]), max_size=3)
    if origin is dict:
        key, value = (_strip(a)[0] for a in typing.get_args(tp))
        if value is str:
            value_strategy = moments
        else:
            value_strategy = _edge_type(value)
        return st.dictionaries(st.sampled_from(["self_assessment", "review", "approval", "c1"])
                               | st.text(safe_char, min_size=1, max_size=10),
                               value_strategy, max_size=3)
    if tp is dict:
        return st.dictionaries(st.text(safe_char, max_size=8),
                               st.integers() | st.text(safe_char, max_size=8), max_size=3)
    raise AssertionError(tp)


def _drive(service, proxies, known_ids=()):
    check_complete(service)

    @settings(max_examples=EXAMPLES_PER_METHOD, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def answers_or_documented_error(method, data):
        model = CATALOGUE[service][method]
        kwargs = {}
        for name, info in ({} if model is None else model.model_fields).items():
            if info.is_required() or data.draw(st.booleans(), label=f"give {name}"):
                if _strip(info.annotation)[0] is uuid.UUID and known_ids and data.draw(
                        st.booleans()):
                    kwargs[name] = data.draw(st.sampled_from(known_ids), label=name)
                else:
                    kwargs[name] = data.draw(_edge(name, info), label=name)
        role = data.draw(st.sampled_from(["org_admin"] * 3 + sorted(proxies)), label="caller")
        try:
            getattr(getattr(proxies[role], service), method)(**kwargs)
        except Exception as exc:  # noqa: BLE001 (the type is what is checked)
            assert _error_type(exc) in DOCUMENTED, \
                f"{service}.{method} answered {_error_type(exc)}: {exc!r:.300}"

    for method in sorted(CATALOGUE[service]):
        answers_or_documented_error(method)


def test_organizations_edge_values(start_service, rpc_as):
    start_service("organizations")
    proxies = _proxies(rpc_as)
    tree = build_tree(proxies["org_admin"].organizations, branches=1, members_per_branch=1)
    _drive("organizations", proxies,
           [tree["committee"], tree["college"], *tree["branches"], *tree["members"]])
    assert proxies["org_admin"].organizations.get_tree()


def _open_cycle(evaluation):
    soon = dt.datetime.now(dt.timezone.utc)
    deadlines = {stage: (soon + dt.timedelta(days=days)).isoformat()
                 for stage, days in (("self_assessment", 10), ("review", 20), ("approval", 30))}
    try:
        return evaluation.open_cycle(name="2026年度党支部星级考评", level=3, period="2026",
                                     deadlines=deadlines)
    except Exception:  # noqa: BLE001 (the directory has not heard of the branches yet)
        return None


def test_evaluation_edge_values(start_service, rpc_as):
    start_service("organizations")  # the branches come from its events
    start_service("evaluation")
    proxies = _proxies(rpc_as)
    tree = build_tree(proxies["org_admin"].organizations, branches=2, members_per_branch=1)
    cycle = wait_for(lambda: _open_cycle(proxies["org_admin"].evaluation), timeout=20,
                     message="evaluation's directory holds the branches")
    _drive("evaluation", proxies, [cycle["id"], tree["college"], *tree["branches"]])
    assert proxies["org_admin"].evaluation.list_schemes()


def test_notifications_edge_values(start_service, rpc_as):
    start_service("organizations")  # backfill_directory reads its log
    start_service("notifications")
    proxies = _proxies(rpc_as)
    _drive("notifications", proxies)
    assert proxies["org_admin"].notifications.unread_count() == {"unread": 0}
