"""``jsonable`` sends containers through orjson (issue 12): the answer must be
the one the Python recursion gives for everything an event may hold."""
import datetime as dt
import enum
import uuid
from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from decimal import Decimal

from shared.envelope import _python_jsonable, jsonable


class Stage(str, enum.Enum):
    REVIEW = "review"


class Level(enum.IntEnum):
    BRANCH = 3


@dataclass
class Point:
    x: int


Pair = namedtuple("Pair", "a b")


def test_containers_through_orjson_equal_the_python_path():
    value = {
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "at": dt.datetime(2026, 11, 26, 8, 30, 1, 120, tzinfo=dt.timezone.utc),
        "at_naive": dt.datetime(2026, 11, 26, 8, 30),
        "at_cst": dt.datetime(2026, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        "on": dt.date(2024, 7, 1), "score": Decimal("88.125"), "share": 0.00001,
        "stage": Stage.REVIEW, "level": Level.BRANCH, "flags": frozenset({"a"}),
        "nested": [{"t": (1, 2)}, OrderedDict(b=1), Pair(1, "二")], "name": "张三",
        "point": Point(1), "none": None, "ok": True, "n": -3, "big": 2 ** 63 - 1,
        uuid.UUID(int=1): "uuid key", "三": {"四": [None]},
    }
    assert jsonable(value) == _python_jsonable(value)


def test_what_orjson_refuses_takes_the_python_path():
    value = {"big": 2 ** 70, "lone": "\ud800"}
    assert jsonable(value) == {"big": 2 ** 70, "lone": "\ud800"}
    assert jsonable([2 ** 70]) == [2 ** 70]


def _mapper():
    from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, Mapper, UUIDAsHex
    from eventsourcing.utils import Environment

    from shared.transcoding import AESCipher, JSONTranscoder
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    key = AESCipher.create_key(16)
    return Mapper(transcoder=transcoder, cipher=AESCipher(Environment(env={"CIPHER_KEY": key})))


def _notifications(mapper, events):
    from eventsourcing.persistence import Notification
    out = []
    for position, event in enumerate(events, start=1):
        stored = mapper.to_stored_event(event)
        out.append(Notification(id=position, originator_id=stored.originator_id,
                                originator_version=stored.originator_version,
                                topic=stored.topic, state=stored.state))
    return out


def test_envelopes_from_stored_bytes_equal_those_from_event_objects():
    """The relay's plain path (``StoredEnvelopes``) against
    ``build_envelope(to_domain_event(...))`` over real aggregates' events:
    personal fields left out, actor, reason, evidence, dates and ids alike."""
    from services.organizations.domain import Member, Organization, SiblingName
    from shared.envelope import AUDIT, PUBLIC, StoredEnvelopes, build_envelope
    actor = {"sub": "a", "role": "org_admin", "org": None}
    school = Organization.found("学校党委", "committee", None, actor=actor)
    college = Organization.found("计算机学院党委", "general_branch", school, actor=actor)
    branch = Organization.found("教工第一支部", "teacher_branch", college, actor=actor)
    member = Member.register("张三", branch, "teacher", "full", "2010-07-01", actor=actor,
                             staff_no="T0001", reason="新入职")
    member.set_double_leader(True, actor)
    claim = SiblingName(parent_key="root", name="学校党委", org_id=school.id)
    events = [e for agg in (school, college, branch, member, claim)
              for e in agg.collect_events()]
    mapper = _mapper()
    notifications = _notifications(mapper, events)
    for audience in (PUBLIC, AUDIT):
        plain = StoredEnvelopes(mapper, "organizations", audience)
        for n in notifications:
            expected = build_envelope(mapper.to_domain_event(n), n.id, "organizations",
                                      audience)
            assert plain(n) == expected
            assert plain.is_internal(n) == (n.originator_id == claim.id)
        assert plain.object_path == 0  # every one read the plain way
    public = StoredEnvelopes(mapper, "organizations")
    (registered,) = [public(n) for n in notifications
                     if public(n)["type"] == "member_registered"]
    assert registered["type"] == "member_registered" and "staff_no" not in registered["data"]
    assert registered["reason"] == "新入职"


def test_unusual_stored_events_take_the_object_path():
    """A number past 64 bits (orjson would read a float) is read by the
    library's decoder: the same envelope either way."""
    from services.organizations.domain import Organization
    from shared.envelope import StoredEnvelopes, build_envelope
    school = Organization.found("学校党委", "committee", None,
                                actor={"sub": "a", "role": "org_admin", "big": 2 ** 70})
    mapper = _mapper()
    (n,) = _notifications(mapper, school.collect_events())
    envelopes = StoredEnvelopes(mapper, "organizations")
    envelope = envelopes(n)
    assert envelope == build_envelope(mapper.to_domain_event(n), n.id, "organizations")
    assert envelope["actor"]["big"] == 2 ** 70
    assert envelopes.object_path == 1


def test_transcoded_values_inside_strings_are_left_alone():
    """Text that looks like a transcoded value, inside a string (a reason),
    stays as written; a real one beside it is converted."""
    from services.organizations.domain import Organization
    from shared.envelope import StoredEnvelopes, build_envelope
    lookalike = '{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"}'
    school = Organization.found("学校党委", "committee", None,
                                actor={"sub": lookalike, "role": "org_admin"})
    mapper = _mapper()
    (n,) = _notifications(mapper, school.collect_events())
    envelopes = StoredEnvelopes(mapper, "organizations")
    envelope = envelopes(n)
    assert envelope == build_envelope(mapper.to_domain_event(n), n.id, "organizations")
    assert envelope["actor"]["sub"] == lookalike and envelopes.object_path == 0
    assert envelope["originator_id"] == str(school.id)
