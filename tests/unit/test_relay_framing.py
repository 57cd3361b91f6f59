"""The relay's hand-made AMQP frames and signed bodies match what py-amqp and
the consumers' signature check expect (shared.relay, shared.signing)."""
import json
import uuid

from amqp import Message
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from services.organizations.domain import Organization, SiblingName
from shared.envelope import build_envelope, is_internal
from shared.history import AuditRead
from shared.relay import publish_frames
from shared.signing import sign_envelope, signature_problem, signed_json

KEY = b"unit-test-event-key-0123456789-abcdef"


class _Collect:
    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(bytes(data))


class _Conn:
    def __init__(self, frame_max):
        self.frame_max = frame_max
        self.bytes_sent = 0


def _py_amqp_frames(channel_id, exchange, routing_key, body, headers, frame_max):
    """What py-amqp writes for the same basic.publish (kombu's properties)."""
    out = _Collect()
    write = frame_writer(_Conn(frame_max), out)
    message = Message(body, content_type="application/json", content_encoding="utf-8",
                      application_headers=headers, delivery_mode=2, priority=0)
    args = dumps("Bssbb", (0, exchange, routing_key, False, False))
    write(1, channel_id, (60, 40), args, message)
    return b"".join(out.chunks)


def test_publish_frames_are_the_frames_py_amqp_writes():
    body = json.dumps({"type": "member_registered", "data": {"name": "张三" * 10}},
                      ensure_ascii=False).encode()
    ours = publish_frames(3, "organizations.events", "member_registered", body,
                          {"event_id": "abc:1"}, 131072)
    assert ours == _py_amqp_frames(3, "organizations.events", "member_registered", body,
                                   {"event_id": "abc:1"}, 131072)


def test_a_body_larger_than_a_frame_is_split_like_py_amqp_splits_it():
    body = b'{"data":"' + b"x" * 10_000 + b'"}'
    ours = publish_frames(1, "evaluation.events", "rating_changed", body,
                          {"event_id": "r:2"}, 4096)
    assert ours == _py_amqp_frames(1, "evaluation.events", "rating_changed", body,
                                   {"event_id": "r:2"}, 4096)
    assert ours.count(b"\xce") >= 10_000 // 4088 + 2  # method, header, body frames


def test_signed_json_is_what_a_consumer_verifies():
    envelope = {"envelope_version": 1, "event_id": "x:1", "type": "t", "source": "organizations",
                "data": {"name": "李四", "n": 1.5, "ok": True, "none": None}}
    body, signature = signed_json(envelope, KEY)
    decoded = json.loads(body)
    assert decoded == sign_envelope(envelope, KEY)
    assert decoded["signature"] == signature
    assert signature_problem(decoded, KEY, "organizations") is None
    # altered in transit, or signed with another key: refused
    tampered = json.loads(body.replace("李四".encode(), "王五".encode()))
    assert signature_problem(tampered, KEY, "organizations") == "mismatch"
    other, _ = signed_json(envelope, b"another key of thirty-two bytes or more")
    assert signature_problem(json.loads(other), KEY, "organizations") == "mismatch"


def test_signatures_in_the_older_json_form_still_verify():
    """Relays signed the canonical form written by Python's json before orjson;
    the two differ only for floats under 1e-4, and both verify."""
    import hashlib
    import hmac

    from shared.signing import SCHEME, canonical, python_canonical
    envelope = {"event_id": "x:1", "source": "organizations", "type": "t",
                "data": {"share": 0.00001, "name": "张三", "big": 2 ** 70}}
    tiny = {"event_id": "x:2", "source": "organizations", "data": {"share": 0.00001}}
    assert canonical(tiny) != python_canonical(tiny)  # the one difference
    for form in (canonical, python_canonical):
        signed = {**tiny, "signature": SCHEME + hmac.new(KEY, form(tiny), hashlib.sha256).hexdigest()}
        assert signature_problem(json.loads(json.dumps(signed)), KEY, "organizations") is None
    forged = {**tiny, "signature": SCHEME + "0" * 64}
    assert signature_problem(forged, KEY, "organizations") == "mismatch"
    # past 64 bits orjson refuses, the json form is signed and verifies
    body, _ = signed_json(envelope, KEY)
    assert signature_problem(json.loads(body), KEY, "organizations") is None


def test_internal_aggregates_are_marked_and_public_ones_are_not():
    claim = SiblingName(parent_key="root", name="学校党委", org_id=uuid.uuid4())
    read = AuditRead(subject_id="m1", query="get_history", filters={}, actor={"sub": "a"})
    org = Organization.found("学校党委", "committee", None, actor={"sub": "a", "role": "org_admin"})
    assert is_internal(claim.collect_events()[0])
    claim.release(claim.holder)
    assert is_internal(claim.collect_events()[0])
    assert is_internal(read.collect_events()[0])
    created = org.collect_events()[0]
    assert not is_internal(created)
    assert build_envelope(created, 1, "organizations")["type"] == "organization_created"


def test_frames_are_read_from_the_read_ahead_buffer_across_odd_chunks_and_timeouts():
    """``read_ahead``'s reader returns py-amqp's (type, channel, payload) for
    frames split anywhere, keeps a partial frame over a timeout, and refuses a
    bad frame end."""
    import socket as socket_module
    import struct

    import pytest
    from amqp.exceptions import UnexpectedFrame

    from shared.relay import read_ahead

    frames = [(1, 1, b"m" * 10), (2, 1, b"h" * 3), (3, 1, "李四".encode() * 5000), (8, 0, b"")]
    wire = b"".join(struct.pack(">BHI", t, c, len(p)) + p + b"\xce" for t, c, p in frames)
    chunks = [wire[:5], None, wire[5:9], wire[9:30000], wire[30000:]]  # None: a timeout

    class Sock:
        def recv(self, n):
            chunk = chunks.pop(0)
            if chunk is None:
                raise socket_module.timeout()
            return chunk

    class Transport:
        sock, _read_buffer, connected = Sock(), b"", True

    transport = Transport()
    read_ahead(transport)
    got = []
    while len(got) < len(frames):
        try:
            got.append(transport.read_frame())
        except socket_module.timeout:
            continue
    assert got == frames
    chunks.append(struct.pack(">BHI", 1, 1, 1) + b"x" + b"\x00")
    with pytest.raises(UnexpectedFrame):
        transport.read_frame()
    assert transport.connected is False
