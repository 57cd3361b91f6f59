"""The fast transcoder and cipher (shared.transcoding) read exactly what the
library's own write and read: stored events keep one format."""
import datetime as dt
import math
import uuid
from base64 import b64encode
from decimal import Decimal

import pytest
from eventsourcing import cryptography, persistence
from eventsourcing.utils import Environment

from shared.transcoding import AESCipher, JSONTranscoder


def transcoders():
    ours, theirs = JSONTranscoder(), persistence.JSONTranscoder()
    for t in (ours, theirs):
        for transcoding in (persistence.UUIDAsHex(), persistence.DatetimeAsISO(),
                            persistence.DecimalAsStr()):
            t.register(transcoding)
    return ours, theirs


MOMENT = dt.datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=dt.timezone.utc)
STATES = [
    {"timestamp": MOMENT, "org_id": "0b6c", "stars": 4, "score": 87.25},
    {"timestamp": MOMENT, "actor": {"sub": "组织部", "role": "org_admin"},
     "breakdown": {"党建": [1.5, {"at": MOMENT, "id": uuid.uuid4()}]},
     "evidence": ["doc://1", None, True], "big": 2 ** 70, "money": Decimal("1.10")},
    {"nested": [[{"deep": {"deeper": uuid.uuid4()}}]], "timestamp": MOMENT},
    {"name": "引号\"_type_\" in text", "timestamp": MOMENT,
     "fake": {"_type_": "plain dict with three keys", "_data_": 1, "x": 2}},
    {"nan": float("nan"), "inf": float("inf"), "timestamp": MOMENT},
    {"surrogate": "\ud800", "nul": "a\x00b"},
    {},
]


@pytest.mark.parametrize("state", STATES)
def test_orjson_reads_what_the_library_writes_as_the_library_reads_it(state):
    ours, theirs = transcoders()
    try:
        data = theirs.encode(state)
    except UnicodeEncodeError:
        pytest.skip("the library cannot write a lone surrogate either")
    mine, library = ours.decode(data), theirs.decode(data)
    assert repr(mine) == repr(library)  # NaN != NaN: compared as written out
    if "timestamp" in state:
        assert mine["timestamp"] == MOMENT and isinstance(mine["timestamp"], dt.datetime)
    if "nan" in state:
        assert math.isnan(mine["nan"])


def test_an_unknown_transcoding_is_refused_as_the_library_refuses_it():
    ours, _ = transcoders()
    with pytest.raises(persistence.TranscodingNotRegisteredError):
        ours.decode(b'{"x":{"_type_":"nobody_knows","_data_":1}}')


def test_the_cipher_reads_and_writes_the_library_format():
    key = b64encode(b"k" * 32).decode()
    env = Environment(env={"CIPHER_KEY": key})
    ours, library = AESCipher(env), cryptography.AESCipher(env)
    plain = "党支部 rating".encode()
    assert library.decrypt(ours.encrypt(plain)) == plain
    assert ours.decrypt(library.encrypt(plain)) == plain
    damaged = bytearray(library.encrypt(plain))
    damaged[-1] ^= 1
    with pytest.raises(ValueError):
        ours.decrypt(bytes(damaged))
    with pytest.raises(ValueError):
        ours.decrypt(b"short")
