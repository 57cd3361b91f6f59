"""How stored events are turned back into bytes and objects, fast (issue 12).

Both classes keep the stored format exactly (events written before and after
read the same, by this code and by the library's own):

* ``AESCipher``: the library's AES-GCM cipher (nonce, tag, ciphertext), with
  the key schedule made once instead of once per event;
* ``JSONTranscoder``: the library's JSON transcoder (it still writes), reading
  with orjson: the plain JSON is parsed in C, then only the values that carry
  a transcoding (``{"_type_": ..., "_data_": ...}``: datetimes, UUIDs, ...) are
  revived, and nested values are visited only while some remain. What orjson
  refuses (NaN, numbers past 64 bits, lone surrogates) is read by the library's
  decoder, as before; so is anything with a run of 19 digits or more, which
  orjson would read as a float where it is an integer past 64 bits.
"""
from __future__ import annotations

from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing import cryptography, persistence

_MARK = b'"_type_"'
# Digits to "0", the rest to " ": a run of 19 zeros then marks a long number
# (bytes.translate and ``in`` run in C; a regular expression takes six times longer).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19


class AESCipher(cryptography.AESCipher):
    """``eventsourcing.cryptography:AESCipher`` with one AESGCM object per key."""

    def __init__(self, environment):
        super().__init__(environment)
        self._aesgcm = AESGCM(self.key)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = self.random_bytes(12)
        sealed = self._aesgcm.encrypt(nonce, plaintext, None)
        return nonce + sealed[-16:] + sealed[:-16]  # the tag in front, as the library does

    def decrypt(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) < 28:
            raise ValueError("Damaged cipher text: invalid nonce or tag length")
        try:
            return self._aesgcm.decrypt(ciphertext[:12], ciphertext[28:] + ciphertext[12:28],
                                        None)
        except InvalidTag as e:
            raise ValueError("Invalid cipher tag") from e


class JSONTranscoder(persistence.JSONTranscoder):
    """The library's JSON transcoder, decoding with orjson (same stored format)."""

    def decode(self, data: bytes) -> Any:
        if _LONG_NUMBER in data.translate(_DIGITS):
            return super().decode(data)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return super().decode(data)
        marks = data.count(_MARK)
        if marks:
            if type(obj) is dict:
                # Every event's first transcoded value is its timestamp, at the top:
                # revived here without a walk (usually the only one).
                stamp = obj.get("timestamp")
                if type(stamp) is dict and len(stamp) == 2:
                    name, data_ = stamp.get("_type_"), stamp.get("_data_")
                    transcoding = self.names.get(name) if type(name) is str else None
                    if transcoding is not None and type(data_) is str:  # nothing inside
                        obj["timestamp"] = transcoding.decode(data_)
                        marks -= 1
                        if not marks:
                            return obj
            obj, _ = self._revive(obj, marks)
        return obj

    def _revive(self, value: Any, marks: int) -> tuple[Any, int]:
        """``value`` with its transcoded parts decoded, innermost first (as the
        library's ``object_hook`` does); ``marks`` counts the ``"_type_"`` keys
        not yet met, so nothing is visited once they are all found."""
        if isinstance(value, dict):
            for key, item in value.items():
                if not marks:
                    break
                if isinstance(item, (dict, list)):
                    value[key], marks = self._revive(item, marks)
            if "_type_" in value:
                marks -= 1
                if len(value) == 2 and "_data_" in value:
                    return self._decode_obj(value), marks
            return value, marks
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not marks:
                    break
                if isinstance(item, (dict, list)):
                    value[index], marks = self._revive(item, marks)
        return value, marks
