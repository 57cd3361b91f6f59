"""Batch writing of read models (the folds of ``shared.projection``): a page's
effects gathered per row by ``@folds`` handlers (``Batch``, ``TableFold``) and
written in a few statements: COPY, COPY into a temporary table plus one
``UPDATE … FROM``, or ``executemany`` for a handful of rows. Split from
``shared.projection``, which reads the log, decodes and parks."""
from __future__ import annotations

import hashlib
import json
import logging

import orjson
from psycopg import adapters, postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

log = logging.getLogger(__name__)


def write_pending(curs, pending: dict) -> None:
    """Write every projection's pending batch (in the order they began)."""
    for projection, batch in list(pending.items()):
        projection.write_batch(curs, batch)
    pending.clear()


# -- JSON values of folded rows ---------------------------------------------------------
JSONB_OID = postgres.types["jsonb"].oid
_PASSTHROUGH = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                | orjson.OPT_PASSTHROUGH_SUBCLASS)


def json_dumps(value) -> bytes | str:
    """``json.dumps(value)`` as a jsonb column reads it, written by orjson (a
    rebuild writes three JSON values per rating change; the standard library
    took a tenth of the time). What orjson writes differently is left to
    ``json.dumps``: what it refuses (a datetime, a subclass of str, a key that
    is not a string, an integer past 64 bits, a lone surrogate), and any
    ``null`` in its output, since it writes NaN and infinities as ``null``
    where ``json.dumps`` writes ``NaN``, which PostgreSQL refuses (the event
    is parked, as before). A UUID, which ``json.dumps`` refuses, is written
    as its text."""
    try:
        data = orjson.dumps(value, option=_PASSTHROUGH)
    except TypeError:
        return json.dumps(value)
    if b"null" in data:
        return json.dumps(value)
    return data


try:  # psycopg's own text dumper of str, in C where psycopg has its C module
    from psycopg_binary._psycopg import _StrDumper as _TextDumper
except ImportError:  # pragma: no cover
    try:
        from psycopg_c._psycopg import _StrDumper as _TextDumper
    except ImportError:
        from psycopg.types.string import _StrDumper as _TextDumper


class JsonbText(str):
    """JSON text already written, for a jsonb column."""

    __slots__ = ()


class _JsonbTextDumper(_TextDumper):
    """``JsonbText`` as the text of a jsonb value: psycopg writes it in C (a
    row's COPY line, a parameter typed jsonb), where a ``Jsonb`` called its
    Python dumper for each value."""

    oid = JSONB_OID


class _JsonbTextBinaryDumper(Dumper):
    format = Format.BINARY
    oid = JSONB_OID

    def dump(self, obj):
        return b"\x01" + obj.encode()


adapters.register_dumper(JsonbText, _JsonbTextDumper)
adapters.register_dumper(JsonbText, _JsonbTextBinaryDumper)


def jsonb(value) -> JsonbText | None:
    """``value`` for a jsonb column (None stays NULL), written now by
    ``json_dumps`` (an error, such as a value JSON cannot hold, is the event's
    that is being folded)."""
    if value is None:
        return None
    data = json_dumps(value)
    return JsonbText(data if type(data) is str else data.decode())


# -- batches: rows folded per key, written set-based --------------------------------
class Batch:
    """The pending writes of one projection for a page of events: a
    ``TableFold`` per table, written in the order they were first used."""

    def __init__(self):
        self.tables: dict[str, TableFold] = {}

    def table(self, name: str, *key: str) -> "TableFold":
        fold = self.tables.get(name)
        if fold is None:
            fold = self.tables[name] = TableFold(name, key)
        return fold

    def write(self, curs) -> None:
        for fold in self.tables.values():
            fold.write(curs)


class _Row:
    """Kept for importers of the old name; ``TableFold`` now keeps its rows in
    three dicts by key (inserts, sets, adds)."""

    __slots__ = ("insert", "sets", "adds")

    def __init__(self):
        self.insert: dict | None = None
        self.sets: dict = {}
        self.adds: dict = {}


# Past this many rows of one shape a write is staged with COPY and applied
# with one statement (outside pipeline mode, where COPY cannot run).
BULK_ROWS = 16


class TableFold:
    """Inserts and updates of one table keyed by ``key`` columns, folded per
    row: an update after an insert of the same row changes what is inserted;
    two updates of one row are one. Rows are written per shape (the columns
    they set): many with COPY (inserts) or COPY into a temporary table and one
    ``UPDATE ... FROM`` it (updates); a few (a command's catch-up, in pipeline
    mode) with ``executemany``. Values are adapted by psycopg as usual (wrap
    JSON in ``Jsonb``, or ``jsonb()``).

    Order of writing: updates of rows that existed before, then inserts (an
    event stream that updates a row before inserting it, where the update
    finds nothing, is applied the same way).

    A rebuild folds every event through here, so the pending rows are kept in
    three plain dicts by key (a new row's values; ``SET column = value`` and
    ``SET column = column + by`` on a row that existed before), not an object
    per row: fewer Python calls per event."""

    def __init__(self, table: str, key: tuple[str, ...]):
        if not key:
            raise ValueError(f"TableFold {table}: name the key columns")
        self.table = table
        self.key = key
        self.inserts: dict[tuple, dict] = {}  # a new row (later changes merged into it)
        self.sets: dict[tuple, dict] = {}  # column = value, on a row that existed before
        self.adds: dict[tuple, dict] = {}  # column = column + value, likewise

    def _key(self, key) -> tuple:
        """Keys compare as text (a UUID and its string are one row)."""
        kind = type(key)
        if kind is tuple:
            if len(key) == 2:  # the usual composite key, without a generator
                first, second = key
                key = (first if type(first) is str else str(first),
                       second if type(second) is str else str(second))
            else:
                key = tuple(k if type(k) is str else str(k) for k in key)
        else:
            key = (key if kind is str else str(key),)
        if len(key) != len(self.key):
            raise ValueError(f"{self.table}: key {key} does not match {self.key}")
        return key

    def insert(self, key, **values) -> None:
        """A new row (its key columns are taken from ``key``)."""
        folded = (key,) if type(key) is str and len(self.key) == 1 else self._key(key)
        if folded in self.inserts:
            raise ValueError(f"{self.table}: row {key} inserted twice")
        if type(key) is tuple:
            values.update(zip(self.key, key))
        else:
            values[self.key[0]] = key
        self.inserts[folded] = values

    def update(self, key, **values) -> None:
        """``SET column = value`` on the row (does nothing where there is none)."""
        key = (key,) if type(key) is str and len(self.key) == 1 else self._key(key)
        inserted = self.inserts.get(key)
        if inserted is not None:
            inserted.update(values)
            return
        sets = self.sets.get(key)
        if sets is None:
            self.sets[key] = values
        else:
            sets.update(values)
        adds = self.adds.get(key)
        if adds:
            for column in values:
                adds.pop(column, None)

    def increment(self, key, column: str, by=1) -> None:
        """``SET column = column + by`` (NULL stays NULL)."""
        key = self._key(key)
        inserted = self.inserts.get(key)
        target = inserted if inserted is not None else self.sets.get(key)
        if target is not None and column in target:
            if target[column] is not None:
                target[column] += by
        elif inserted is not None:
            raise ValueError(f"{self.table}: increment of {column}, which the pending insert "
                             "does not set (insert it with its initial value)")
        else:
            adds = self.adds.get(key)
            if adds is None:
                adds = self.adds[key] = {}
            adds[column] = adds.get(column, 0) + by

    def get(self, key, column: str, default=None):
        """What this batch will write into ``column`` of the row (``default``
        when it writes nothing there)."""
        key = self._key(key)
        values = self.inserts.get(key)
        if values is None:
            values = self.sets.get(key)
            if values is None:
                return default
        return values.get(column, default)

    def __len__(self) -> int:
        return len(self.inserts.keys() | self.sets.keys() | self.adds.keys())

    def write(self, curs) -> None:
        if not (self.inserts or self.sets or self.adds):
            return
        updates: dict[tuple, list] = {}
        nothing: dict = {}
        sets, adds = self.sets, self.adds
        for key, values in sets.items():
            added = adds.get(key, nothing) if adds else nothing
            if not values and not added:
                continue
            shape = (tuple(values), tuple(added))
            rows = updates.get(shape)
            if rows is None:
                rows = updates[shape] = []
            rows.append((*key, *values.values(), *added.values()))
        for key, added in adds.items():
            if added and key not in sets:
                rows = updates.setdefault(((), tuple(added)), [])
                rows.append((*key, *added.values()))
        inserts: dict[tuple, list] = {}
        for values in self.inserts.values():
            shape = tuple(values)
            rows = inserts.get(shape)
            if rows is None:
                rows = inserts[shape] = []
            rows.append(tuple(values.values()))
        for (set_columns, add_columns), rows in updates.items():
            self._update(curs, set_columns, add_columns, rows)
        for columns, rows in inserts.items():
            self._insert(curs, columns, rows)
        self.inserts.clear()
        self.sets.clear()
        self.adds.clear()

    def _update(self, curs, sets: tuple, adds: tuple, rows: list[tuple]) -> None:
        target = sql.Identifier(self.table)
        if bulk(curs, rows):
            types = column_types(curs, self.table)
            staged = stage(curs, [(c, types[c]) for c in (*self.key, *sets, *adds)], rows)
            assignments = [sql.SQL("{} = v.{}").format(sql.Identifier(c), sql.Identifier(c))
                           for c in sets]
            assignments += [sql.SQL("{} = t.{} + v.{}").format(
                sql.Identifier(c), sql.Identifier(c), sql.Identifier(c)) for c in adds]
            match = sql.SQL(" AND ").join(sql.SQL("t.{} = v.{}").format(
                sql.Identifier(c), sql.Identifier(c)) for c in self.key)
            curs.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} AS v WHERE {}").format(
                target, sql.SQL(", ").join(assignments), staged, match))
            return
        statement, names = _update_statement(curs, self.table, self.key, sets, adds)
        curs.executemany(statement, [dict(zip(names, row)) for row in rows])

    def _insert(self, curs, columns: tuple, rows: list[tuple]) -> None:
        if bulk(curs, rows):
            with curs.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(self.table),
                    sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        curs.executemany(_insert_statement(curs, self.table, columns), rows)


# The statements of a few rows (a command's catch-up), composed once per shape:
# composing them (psycopg.sql) cost more CPU than running them, about a
# millisecond per command. Identifiers quote the same on every connection of a
# service (one encoding), so the text is kept per table and shape.
_STATEMENTS: dict[tuple, tuple] = {}


def _update_statement(curs, table: str, key: tuple, sets: tuple,
                      adds: tuple) -> tuple[str, list[str]]:
    shape = ("update", table, key, sets, adds)
    found = _STATEMENTS.get(shape)
    if found is None:
        # Parameters in the staged order: key, sets, adds; the key goes last in SQL.
        assignments = [sql.SQL("{} = %(s{})s").format(sql.Identifier(c), sql.SQL(str(i)))
                       for i, c in enumerate(sets)]
        assignments += [sql.SQL("{} = {} + %(a{})s").format(
            sql.Identifier(c), sql.Identifier(c), sql.SQL(str(i))) for i, c in enumerate(adds)]
        match = sql.SQL(" AND ").join(sql.SQL("{} = %(k{})s").format(
            sql.Identifier(c), sql.SQL(str(i))) for i, c in enumerate(key))
        names = ([f"k{i}" for i in range(len(key))] + [f"s{i}" for i in range(len(sets))]
                 + [f"a{i}" for i in range(len(adds))])
        found = _STATEMENTS[shape] = (sql.SQL("UPDATE {} SET {} WHERE {}").format(
            sql.Identifier(table), sql.SQL(", ").join(assignments), match).as_string(curs),
            names)
    return found


def _insert_statement(curs, table: str, columns: tuple) -> str:
    shape = ("insert", table, columns)
    found = _STATEMENTS.get(shape)
    if found is None:
        found = _STATEMENTS[shape] = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns))).as_string(curs)
    return found


def bulk(curs, rows) -> bool:
    """Whether ``rows`` are many enough to stage with COPY, and COPY can run."""
    return len(rows) > BULK_ROWS and curs.connection.pgconn.pipeline_status == 0


def stage(curs, columns: list[tuple[str, str]], rows) -> sql.Identifier:
    """``rows`` copied into a temporary table of ``columns`` (name, SQL type),
    emptied first and dropped at commit; its name, for one set-based statement."""
    shape = ",".join(f"{name} {type_}" for name, type_ in columns)
    name = sql.Identifier("fold_" + hashlib.md5(shape.encode()).hexdigest()[:16])
    curs.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DROP").format(
        name, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                                 for n, t in columns)))
    curs.execute(sql.SQL("TRUNCATE {}").format(name))
    with curs.copy(sql.SQL("COPY {} FROM STDIN").format(name)) as copy:
        for row in rows:
            copy.write_row(row)
    return name


_COLUMN_TYPES: dict[str, dict[str, str]] = {}


def column_types(curs, table: str) -> dict[str, str]:
    """``{column: SQL type}`` of ``table`` (read once per process)."""
    types = _COLUMN_TYPES.get(table)
    if types is None:
        curs.execute("SELECT attname, format_type(atttypid, atttypmod) AS type "
                     "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                     "AND NOT attisdropped", (table,))
        types = _COLUMN_TYPES[table] = {r["attname"]: r["type"] for r in curs.fetchall()}
    return types


# -- the projector ------------------------------------------------------------------
