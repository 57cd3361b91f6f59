"""The hash chain over a service's stored events: recompute it and name every
broken link (tamper evidence, 防篡改).

The database extends the chain itself (``shared.dbsetup``: a trigger adds a
row to ``event_chain`` for each stored event inserted). Each link is

    hash(n) = SHA-256( hash(previous) ‖ int8 n ‖ originator_id (16 bytes)
                       ‖ int8 originator_version ‖ int4 len(topic) ‖ topic UTF-8
                       ‖ stored state bytes )

with ``hash(previous)`` = 32 zero bytes for the first event, integers
big-endian, and the state hashed as stored (compressed or encrypted bytes,
whatever the store holds). ``verify`` walks the events and the chain together
in notification order and reports:

* ``altered``   — the stored event no longer hashes to its link (content,
                  topic or position changed);
* ``missing``   — the chain records an event at a position that holds none,
                  or a link names a previous position that is gone (the event
                  and its link were deleted);
* ``moved``     — a position holds another event than the one the chain
                  recorded there; two such that hold each other's events are
                  reported once as ``swapped``;
* ``unchained`` — a stored event the chain has no link for (inserted past
                  the trigger, or its link deleted).

A chain rewritten wholesale from some position on passes this check; the
published heads (``chain_head_published``) are what an outside party compares
against for that.
"""
from __future__ import annotations

import hashlib
import struct
import threading
import time
from typing import Callable, ContextManager
from uuid import UUID

from psycopg import sql
from psycopg.rows import tuple_row

from shared.dbsetup import CHAIN_TABLE, GENESIS, link_sql

_INT8 = struct.Struct(">q")
_INT4 = struct.Struct(">i")


def link_hash(previous: bytes, position: int, originator_id: UUID, version: int,
              topic: str | None, state: bytes | None) -> bytes:
    """One link, exactly as the database trigger computes it."""
    topic_bytes = (topic or "").encode("utf-8")
    return hashlib.sha256(b"".join((
        previous, _INT8.pack(position), originator_id.bytes, _INT8.pack(version),
        _INT4.pack(len(topic_bytes)), topic_bytes, state or b""))).digest()


def _event_id(originator_id, version) -> str | None:
    if originator_id is None:
        return None
    if isinstance(originator_id, (bytes, memoryview)):
        originator_id = UUID(bytes=bytes(originator_id))
    return f"{originator_id}:{version}"


def verify(conn, events_table: str, independent: bool = False, batch: int = 20000,
           connect: Callable[[], ContextManager] | None = None, ranges: int | None = None
           ) -> dict:
    """Recompute the chain of ``events_table`` on ``conn`` (any role that may
    read the store and ``event_chain``). Returns ``{"ok", "checked", "head",
    "problems": [{"position", "event_id", "kind", "detail"}], "seconds", "mode"}``.

    By default PostgreSQL recomputes every link (``sha256`` over the same
    bytes) and sends back only the broken ones. Each link is checked on its
    own (against the hash recorded in the link before it), so the positions
    are split into ``ranges`` that are checked at once over connections from
    ``connect`` (a context manager factory, e.g. a pool's ``connection``), all
    reading one exported snapshot, so they check the same store as ``conn``;
    without ``connect``, one range on ``conn``. ``ranges`` defaults to the
    server's ``max_parallel_workers_per_gather`` + 1, the parallelism the
    server grants one query.

    ``independent`` reads every event and recomputes each link here, in
    Python (``hashlib``), trusting the database for nothing but the bytes.
    Both name the same problems."""
    started = time.perf_counter()
    with conn.transaction():
        if not independent and connect is not None:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SET LOCAL jit = off")
        report = (_verify_here(conn, events_table, batch) if independent
                  else _verify_in_database(conn, events_table, connect, ranges))
    report["problems"].sort(key=lambda p: (p["position"] or 0, p["kind"]))
    report.update(ok=not report["problems"], mode="independent" if independent else "database",
                  seconds=round(time.perf_counter() - started, 3))
    return report


# Every link of one range of positions checked on its own in one set-based
# query: the window runs over the chain's narrow rows only (from ``before``,
# the link before the range, so the range's first link has its predecessor), the
# events are joined to the links afterwards, and only broken links come back.
_BROKEN_LINKS = """
SELECT c.pos, c.previous_id, c.previous_present, c.c_oid, c.c_ver,
       e.originator_id, e.originator_version, e.notification_id IS NULL,
       coalesce(e.originator_id = c.c_oid AND e.originator_version = c.c_ver, false),
       {link} = c.hash
FROM (SELECT notification_id AS pos, previous_id, originator_id AS c_oid,
             originator_version AS c_ver, hash,
             lag(notification_id, 1, 0::bigint) OVER w AS previous_present,
             lag(hash, 1, {genesis}::bytea) OVER w AS previous_hash
      FROM {chain}
      WHERE notification_id >= %(before)s AND notification_id < %(high)s
      WINDOW w AS (ORDER BY notification_id)) c
LEFT JOIN (SELECT * FROM {events} WHERE notification_id >= %(low)s
           AND notification_id < %(high)s) e ON e.notification_id = c.pos
WHERE c.pos >= %(low)s
  AND (c.previous_id <> c.previous_present OR e.notification_id IS NULL
       OR e.originator_id <> c.c_oid OR e.originator_version <> c.c_ver
       OR {link} <> c.hash)
ORDER BY c.pos"""


def _split(cur, first: int, last: int, ranges: int) -> list[dict]:
    """[first, last] as ``ranges`` consecutive half-open ranges of positions,
    each with the position of the link before it (constants, so that the
    planner sees the range's size and merges the two ordered scans)."""
    step = max(1, -(-(last - first + 1) // ranges))
    spans = []
    for low in range(first, last + 1, step):
        before = cur.execute(sql.SQL("SELECT max(notification_id) FROM {} WHERE "
                                     "notification_id < %s").format(
            sql.Identifier(CHAIN_TABLE)), (low,)).fetchone()[0]
        spans.append({"before": low if before is None else before, "low": low,
                      "high": min(low + step, last + 1)})
    return spans


def _in_parallel(calls: list[Callable[[], list]]) -> list[list]:
    """Run ``calls`` at once (threads; green ones in a monkey-patched service)."""
    results: list = [None] * len(calls)

    def run(i):
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # re-raised in the caller's thread below
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _verify_in_database(conn, events_table: str, connect, ranges: int | None) -> dict:
    table, chain_table = sql.Identifier(events_table), sql.Identifier(CHAIN_TABLE)
    cur = conn.cursor(row_factory=tuple_row)
    links, events, first, last, parallel = cur.execute(sql.SQL(
        "SELECT (SELECT count(*) FROM {chain}), (SELECT count(*) FROM {events}), "
        "(SELECT min(notification_id) FROM {chain}), (SELECT max(notification_id) FROM {chain}), "
        "current_setting('max_parallel_workers_per_gather')::int").format(
        chain=chain_table, events=table)).fetchone()
    query = sql.SQL(_BROKEN_LINKS).format(
        link=sql.SQL(link_sql(prev="c.previous_hash", pos="c.pos", oid="e.originator_id",
                              ver="e.originator_version", topic="e.topic", state="e.state")),
        genesis=sql.Literal(GENESIS), chain=chain_table, events=table)
    broken: list[tuple] = []
    if links:
        spans = _split(cur, first, last, ranges or (parallel + 1 if connect else 1))
        if connect is None or len(spans) == 1:
            for span in spans:
                broken += cur.execute(query, span).fetchall()
        else:
            snapshot = cur.execute("SELECT pg_export_snapshot()").fetchone()[0]

            def check(span: dict) -> Callable[[], list]:
                def run() -> list:
                    with connect() as other, other.transaction():
                        other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                            sql.Literal(snapshot)))
                        other.execute("SET LOCAL jit = off")
                        return other.cursor(row_factory=tuple_row).execute(
                            query, span).fetchall()
                return run
            for rows in _in_parallel([check(span) for span in spans]):
                broken += rows
    problems: list[dict] = []
    moved: dict[int, tuple[str, str]] = {}
    gone = 0
    for (pos, prev_id, previous_present, c_oid, c_ver, e_oid, e_ver, is_gone, same,
         intact) in broken:
        follows = prev_id == previous_present
        if not follows:
            problems.append(_gap(pos, prev_id, previous_present))
        if is_gone:
            gone += 1
            problems.append(_gone(pos, _event_id(c_oid, c_ver)))
        elif not same:
            moved[pos] = (_event_id(e_oid, e_ver), _event_id(c_oid, c_ver))
        elif follows and not intact:
            problems.append(_altered(pos, _event_id(e_oid, e_ver)))
    if events > links - gone:  # events without a link
        for pos, oid, ver in cur.execute(sql.SQL(
                "SELECT e.notification_id, e.originator_id, e.originator_version FROM {events} e "
                "WHERE NOT EXISTS (SELECT 1 FROM {chain} c WHERE c.notification_id = "
                "e.notification_id)").format(events=table, chain=chain_table)).fetchall():
            problems.append(_unchained(pos, _event_id(oid, ver)))
    problems.extend(_pair_moves(moved))
    h = head(conn)
    return {"checked": links + events - (links - gone), "problems": problems,
            "head": h}


def _gap(pos, prev_id, last_pos) -> dict:
    return {"position": prev_id, "event_id": None, "kind": "missing",
            "detail": f"the link at {pos} follows position {prev_id}, "
                      f"which is gone (last present: {last_pos})"}


def _gone(pos, event_id) -> dict:
    return {"position": pos, "event_id": event_id, "kind": "missing",
            "detail": "the chain records this event here; the store no longer holds it"}


def _altered(pos, event_id) -> dict:
    return {"position": pos, "event_id": event_id, "kind": "altered",
            "detail": "the stored event does not hash to its link"}


def _unchained(pos, event_id) -> dict:
    return {"position": pos, "event_id": event_id, "kind": "unchained",
            "detail": "stored event has no link in the chain"}


def _verify_here(conn, events_table: str, batch: int) -> dict:
    """The independent check: every event read and every link hashed here.

    One ordered pass over the events with their links (a merge join on the
    notification id, binary rows); links whose event is gone are fetched
    only when the link count says there are some."""
    table = sql.Identifier(events_table)
    chain_table = sql.Identifier(CHAIN_TABLE)
    links = conn.cursor(row_factory=tuple_row).execute(
        sql.SQL("SELECT count(*) FROM {}").format(chain_table)).fetchone()[0]
    walk = _walk(conn, table, chain_table, [], batch)
    if walk["linked"] != links:  # some links have lost their event
        orphans = conn.cursor(row_factory=tuple_row).execute(sql.SQL(
            "SELECT c.notification_id, c.previous_id, c.originator_id, "
            "c.originator_version, c.hash FROM {chain} c WHERE NOT EXISTS "
            "(SELECT 1 FROM {events} e WHERE e.notification_id = c.notification_id) "
            "ORDER BY c.notification_id").format(chain=chain_table, events=table)).fetchall()
        walk = _walk(conn, table, chain_table, orphans, batch)
    problems = walk["problems"]
    if walk["moved"]:
        recorded = {pos: _event_id(oid, ver) for pos, oid, ver in conn.cursor(
            row_factory=tuple_row).execute(sql.SQL(
                "SELECT notification_id, originator_id, originator_version FROM {} "
                "WHERE notification_id = ANY(%s)").format(chain_table),
                (list(walk["moved"]),))}
        problems.extend(_pair_moves({pos: (found, recorded[pos])
                                     for pos, found in walk["moved"].items()}))
    return {"checked": walk["checked"], "problems": problems,
            "head": {"position": walk["last_pos"], "hash": walk["last_hash"].hex()}}


def _walk(conn, table, chain_table, orphans: list, batch: int) -> dict:
    query = sql.SQL(
        "SELECT e.notification_id, uuid_send(e.originator_id), e.originator_version, "
        "e.topic, e.state, c.previous_id, "
        "(e.originator_id = c.originator_id AND e.originator_version = c.originator_version), "
        "c.hash FROM {events} e LEFT JOIN {chain} c ON c.notification_id = e.notification_id "
        "ORDER BY e.notification_id").format(events=table, chain=chain_table)
    problems: list[dict] = []
    moved: dict[int, str] = {}
    checked = linked = 0
    last_pos, last_hash = 0, GENESIS
    sha256 = hashlib.sha256
    pack8, pack4 = _INT8.pack, _INT4.pack
    pending = iter(orphans)
    orphan = next(pending, None)

    def follow(pos, prev_id) -> bool:
        """Does the link at ``pos`` follow the last one seen? Else name the gap."""
        if prev_id != last_pos:
            problems.append(_gap(pos, prev_id, last_pos))
            return False
        return True

    def missing_event(link) -> tuple[int, bytes]:
        """A link whose event the store no longer holds."""
        o_pos, o_prev, o_oid, o_ver, o_hash = link
        follow(o_pos, o_prev)
        problems.append(_gone(o_pos, _event_id(o_oid, o_ver)))
        return o_pos, bytes(o_hash)

    with conn.cursor(name="lianchuang_verify_chain", row_factory=tuple_row,
                     binary=True) as cur:
        cur.itersize = batch
        cur.execute(query)
        for pos, oid, ver, topic, state, prev_id, same, c_hash in cur:
            while orphan is not None and orphan[0] < pos:
                checked += 1
                last_pos, last_hash = missing_event(orphan)
                orphan = next(pending, None)
            checked += 1
            if c_hash is None:
                problems.append(_unchained(pos, _event_id(oid, ver)))
                continue
            linked += 1
            if not same:
                moved[pos] = _event_id(oid, ver)
            elif follow(pos, prev_id):
                topic_bytes = (topic or "").encode("utf-8")
                if sha256(b"".join((last_hash, pack8(pos), oid, pack8(ver),
                                    pack4(len(topic_bytes)), topic_bytes, state or b""))
                          ).digest() != c_hash:
                    problems.append(_altered(pos, _event_id(oid, ver)))
            last_pos, last_hash = pos, c_hash
            if checked % batch == 0:
                time.sleep(0)  # let other green threads run (eventlet-patched)
    while orphan is not None:
        checked += 1
        last_pos, last_hash = missing_event(orphan)
        orphan = next(pending, None)
    return {"problems": problems, "moved": moved, "checked": checked, "linked": linked,
            "last_pos": last_pos, "last_hash": last_hash}


def _pair_moves(moved: dict[int, tuple[str, str]]) -> list[dict]:
    """``moved`` positions → problems, two that hold each other's events as one swap."""
    where_expected = {expected: pos for pos, (_, expected) in moved.items()}
    problems, done = [], set()
    for pos, (found, expected) in sorted(moved.items()):
        if pos in done:
            continue
        other = where_expected.get(found)
        if other is not None and other != pos and moved[other][0] == expected:
            done.update((pos, other))
            problems.append({"position": pos, "event_id": found, "kind": "swapped",
                             "detail": f"positions {pos} and {other} hold each other's "
                                       f"events ({expected} ⇄ {found})"})
        else:
            problems.append({"position": pos, "event_id": found, "kind": "moved",
                             "detail": f"the chain recorded {expected} at this position"})
    return problems


def head(conn) -> dict:
    """The chain's last link: what is published for outside anchoring."""
    row = conn.cursor(row_factory=tuple_row).execute(sql.SQL("SELECT notification_id, hash FROM {} "
                               "ORDER BY notification_id DESC LIMIT 1")
                       .format(sql.Identifier(CHAIN_TABLE))).fetchone()
    if row is None:
        return {"position": 0, "hash": GENESIS.hex()}
    return {"position": int(row[0]), "hash": bytes(row[1]).hex()}
