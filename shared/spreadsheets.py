"""Spreadsheet mechanics shared by every service (电子表格导入导出): no service knowledge.

Reading (.xlsx: openpyxl reads the workbook's parts, the sheet's rows are read
from its XML with lxml; formulas read as the values Excel last computed),
bounded by file size and row count; columns matched by their Chinese header; each cell parsed by its column, every bad cell collected
as a row error ``{sheet, row, column, value, why}`` so a preview reports them
all at once. Writing (``shared.workbooks``, re-exported here): templates and exports
(write-only mode for long sheets, a printable layout for lists that are posted).

A service describes its sheets with ``Column``s and decides what the rows mean.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.errors import ValidationError

MAX_FILE_BYTES = 20 * 1024 * 1024  # what RPC accepts (base64 in the payload)
MAX_ROWS = 50_000
MAX_TEXT = 100


class CellError(ValueError):
    """Raised by a cell parser: the message says why the value is refused."""


# -- limits and upload -------------------------------------------------------
def decode_upload(content_b64: Any, max_bytes: int = MAX_FILE_BYTES,
                  field_name: str = "content") -> bytes:
    """The file carried as base64 text in an RPC payload, refused beyond ``max_bytes``."""
    if not isinstance(content_b64, str) or not content_b64:
        raise ValidationError.single(field_name, "the .xlsx file as base64 text is required")
    # base64 is 4/3 of the bytes: refuse before decoding what is plainly too large.
    if len(content_b64) > (max_bytes * 4) // 3 + 4:
        raise ValidationError.single(
            field_name, f"file larger than the limit of {max_bytes} bytes; ops can import "
            "larger files with `lianchuang import`")
    try:
        data = base64.b64decode(content_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError.single(field_name, "not base64 text")
    check_size(data, max_bytes, field_name)
    return data


def encode_file(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def xlsx_file(file_name: str, data: bytes) -> dict:
    """A written file as an RPC result: its name, size and base64 content."""
    return {"file_name": file_name, "bytes": len(data), "sha256": sha256(data),
            "content": encode_file(data)}


def check_size(data: bytes, max_bytes: int, field_name: str = "content") -> None:
    if len(data) > max_bytes:
        raise ValidationError.single(
            field_name, f"file of {len(data)} bytes is larger than the limit of {max_bytes} bytes")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- cell parsers (value -> parsed value, or CellError) -------------------------
def text(max_length: int = MAX_TEXT) -> Callable[[Any], str]:
    def parse(value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a number typed into a text column (工号 123456)
        value = " ".join(str(value).split())
        if len(value) > max_length:
            raise CellError(f"longer than {max_length} characters ({len(value)})")
        return value
    return parse


_DATE_TEXT = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")


def date(not_after_today: bool = True) -> Callable[[Any], dt.date]:
    """A date cell, or text YYYY-MM-DD (also YYYY/MM/DD, YYYY年M月D日)."""
    def parse(value):
        if isinstance(value, dt.datetime):
            value = value.date()
        if not isinstance(value, dt.date):
            match = _DATE_TEXT.match(str(value).strip())
            if not match:
                raise CellError("not a date (YYYY-MM-DD)")
            try:
                value = dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                raise CellError("not a date (no such day)")
        if not_after_today and value > dt.date.today():
            raise CellError("a date in the future")
        return value
    return parse


def number(low: float, high: float, integer: bool = False) -> Callable[[Any], float | int]:
    def parse(value):
        if isinstance(value, bool):
            raise CellError("not a number")
        try:
            n = float(str(value).strip()) if not isinstance(value, (int, float)) else value
        except ValueError:
            raise CellError("not a number")
        if integer:
            if float(n) != int(n):
                raise CellError("not a whole number")
            n = int(n)
        if not low <= n <= high:
            raise CellError(f"outside {low:g}-{high:g}")
        return n
    return parse


def choice(options: dict[str, str]) -> Callable[[Any], str]:
    """One of ``{code: Chinese label}``: the cell may hold either."""
    lookup = {label: code for code, label in options.items()}
    lookup.update({code: code for code in options})

    def parse(value):
        key = " ".join(str(value).split())
        if key not in lookup:
            raise CellError("not one of " + ", ".join(options.values()))
        return lookup[key]
    return parse


def yes_no(value) -> bool:
    if isinstance(value, bool):
        return value
    key = str(value).strip().casefold()
    if key in ("是", "y", "yes", "true", "1"):
        return True
    if key in ("否", "n", "no", "false", "0"):
        return False
    raise CellError("not 是 or 否")


# -- sheet descriptions ------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A column by its Chinese header; ``key`` names the parsed value."""

    key: str
    header: str
    parse: Callable[[Any], Any] = field(default_factory=text)
    required: bool = True
    example: Any = None
    aliases: tuple[str, ...] = ()
    width: int = 16
    note: str = ""


@dataclass
class Row:
    number: int  # the row number as Excel shows it
    values: dict[str, Any]


@dataclass
class Sheet:
    """What was read: good rows (every required cell parsed), and the errors."""

    name: str
    rows: list[Row]
    errors: "RowErrors"  # planners add their own row errors here
    total_rows: int


class RowErrors:
    """Row-level errors, collected rather than raised, in the order found."""

    def __init__(self, sheet: str):
        self.sheet = sheet
        self.items: list[dict] = []

    def add(self, row: int | None, column: str | None, value: Any, why: str) -> None:
        self.items.append({"sheet": self.sheet, "row": row, "column": column,
                           "value": cell_text(value), "why": why})

    def __bool__(self) -> bool:
        return bool(self.items)


def cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _norm_header(value) -> str:
    return re.sub(r"[\s*＊:：]", "", str(value or "")).casefold()


def _open(data: bytes, read_only: bool = True):
    from openpyxl import load_workbook

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValidationError.single("content", "not an .xlsx file (Excel 2007 or later)")
    try:
        return load_workbook(io.BytesIO(data), read_only=read_only, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds on a malformed file
        raise ValidationError.single("content", f"not a readable .xlsx file: {exc}") from None


# -- reading rows fast -------------------------------------------------------------
# openpyxl reads a workbook's parts (manifest, shared strings, workbook, styles);
# a sheet's rows are read here from its XML with lxml, a cell costing a few
# attribute reads instead of openpyxl's objects per cell (30,000 rows: 18 s
# with openpyxl's read-only reader on this machine, about 1 s here). Values are
# what openpyxl's ``iter_rows(values_only=True)`` gives with ``data_only``
# (tests/unit/test_spreadsheets.py compares the two).
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_ROW, _CELL, _VALUE, _INLINE = _MAIN + "row", _MAIN + "c", _MAIN + "v", _MAIN + "is"
_TEXT, _RUN, _SHARED = _MAIN + "t", _MAIN + "r", _MAIN + "si"


class _Workbook:
    """The parts of a workbook a sheet's values need (openpyxl reads them),
    and its sheets' names and parts; nothing of a sheet is read until asked."""

    def __init__(self, data: bytes):
        from openpyxl.reader.excel import ExcelReader
        from openpyxl.styles.stylesheet import apply_stylesheet

        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise ValidationError.single("content", "not an .xlsx file (Excel 2007 or later)")
        try:
            reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
            self.archive = reader.archive
            reader.read_manifest()
            self.strings = self._shared_strings(reader)
            reader.read_workbook()
            apply_stylesheet(reader.archive, reader.wb)
            self.sheets = [(sheet.name, rel.target) for sheet, rel in reader.parser.find_sheets()
                           if rel.target in reader.valid_files and "chartsheet" not in rel.Type]
        except Exception as exc:  # openpyxl raises many kinds on a malformed file
            archive = getattr(self, "archive", None)
            if archive is not None:
                archive.close()
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError.single("content", f"not a readable .xlsx file: {exc}") from None
        if not self.sheets:
            self.archive.close()
            raise ValidationError.single("content", "not a readable .xlsx file: no worksheet")
        wb = reader.wb
        self.epoch = wb.epoch
        self.date_styles = set(wb._date_formats)
        self.timedelta_styles = set(wb._timedelta_formats)

    def _shared_strings(self, reader) -> list[str]:
        """The shared string table (as openpyxl's ``read_string_table``)."""
        from openpyxl.reader.excel import SHARED_STRINGS

        found = reader.package.find(SHARED_STRINGS)
        if found is None:
            return []
        return [(_inline_text(si) or "").replace("x005F_", "")
                for si in self._elements(found.PartName[1:], _SHARED)]

    def _elements(self, part: str, tag: str):
        """Each ``tag`` element of a part's XML as it ends (then let go)."""
        from lxml import etree

        with self.archive.open(part) as source:
            try:
                # huge_tree off and no entities resolved: a crafted file cannot
                # expand; a malformed one is a ValidationError.
                for _, element in etree.iterparse(
                        source, events=("end",), tag=tag, resolve_entities=False,
                        no_network=True, huge_tree=False, remove_comments=True):
                    yield element
                    element.clear()
                    while element.getprevious() is not None:
                        del element.getparent()[0]
            except (etree.Error, ValueError, IndexError, KeyError, EOFError,
                    zipfile.BadZipFile, zlib.error) as exc:
                raise ValidationError.single(
                    "content", f"not a readable .xlsx file: {exc}") from None

    def sheet(self, name: str | None) -> tuple[str, str]:
        """(title, part) of the sheet called ``name``, else of the first."""
        for title, part in self.sheets:
            if title == name:
                return title, part
        return self.sheets[0]

    def rows(self, part: str):
        """``(row number, [values])`` of each row the sheet's XML holds, in
        order (rows with no cells are not there); a value's index is its column
        from 0, a missing cell None, a formula its cached value."""
        number = 0
        for row in self._elements(part, _ROW):
            try:
                r = row.get("r")
                number = int(r) if r else number + 1
                values = self._values(row)
            except (ValueError, IndexError, KeyError, OverflowError) as exc:
                raise ValidationError.single(
                    "content", f"not a readable .xlsx file: row {number}: {exc}") from None
            yield number, values

    def _values(self, row) -> list:
        values: list = []
        column = -1
        for cell in row.iterchildren(_CELL):
            ref = cell.get("r")
            column = _column_index(ref) if ref else column + 1
            kind = cell.get("t", "n")
            value = None
            # children walked directly: lxml's find/findtext go through its
            # Python ElementPath, several times slower per cell
            if kind == "inlineStr":
                for child in cell:
                    if child.tag == _INLINE:
                        value = _inline_text(child)
                        break
            else:
                for child in cell:
                    if child.tag == _VALUE:
                        value = child.text or None
                        break
                if value is not None:
                    if kind == "n":
                        value = self._number(value, cell.get("s"))
                    elif kind == "s":
                        value = self.strings[int(value)]
                    elif kind == "b":
                        value = bool(int(value))
                    elif kind == "d":
                        from openpyxl.utils.datetime import from_ISO8601
                        value = from_ISO8601(value)
                    # "str" (a formula's text) and "e" (#N/A …) stay as written
            if value is None:
                continue
            if column >= len(values):
                values.extend([None] * (column + 1 - len(values)))
            values[column] = value
        return values

    def _number(self, text_value: str, style: str | None):
        value = float(text_value) if ("." in text_value or "E" in text_value
                                      or "e" in text_value) else int(text_value)
        if style and int(style) in self.date_styles:
            from openpyxl.utils.datetime import from_excel
            try:
                return from_excel(value, self.epoch,
                                  timedelta=int(style) in self.timedelta_styles)
            except (OverflowError, ValueError):
                return "#VALUE!"  # as openpyxl: a date serial out of range is an error
        return value

    def close(self) -> None:
        self.archive.close()


_COLUMNS: dict[str, int] = {}


def _column_index(ref: str) -> int:
    """``"AB12"`` -> 27 (from 0)."""
    letters = ref.rstrip("0123456789")
    index = _COLUMNS.get(letters)
    if index is None:
        index = 0
        for ch in letters.upper():
            if not "A" <= ch <= "Z":
                raise ValueError(f"bad cell reference {ref!r}")
            index = index * 26 + ord(ch) - 64
        index = _COLUMNS[letters] = index - 1
    return index


def _inline_text(element) -> str | None:
    """An inline string's text: its plain text and its runs' (no phonetic guide)."""
    if element is None:
        return None
    parts = []
    for child in element:
        if child.tag == _TEXT:
            parts.append(child.text or "")
        elif child.tag == _RUN:
            for part in child:
                if part.tag == _TEXT:
                    parts.append(part.text or "")
                    break
    return "".join(parts)


def read_sheet(data: bytes, columns: list[Column], sheet_name: str | None = None,
               max_rows: int = MAX_ROWS, max_bytes: int = MAX_FILE_BYTES) -> Sheet:
    """Read one sheet: the header row is the first row naming a required column.

    A missing required column is a ``ValidationError`` (nothing can be read);
    everything else is a row error. Formulas are read as their cached values;
    empty rows are skipped. More than ``max_rows`` data rows is refused.
    """
    check_size(data, max_bytes)
    workbook = _Workbook(data)
    try:
        title, part = workbook.sheet(sheet_name)
        errors = RowErrors(title)
        wanted = {}
        for col in columns:
            for name in (col.header, *col.aliases):
                wanted[_norm_header(name)] = col
        rows_iter = workbook.rows(part)
        header_at, positions = None, {}
        for number, values in rows_iter:
            if number > 20:
                break
            found = {i: wanted[_norm_header(v)] for i, v in enumerate(values)
                     if _norm_header(v) in wanted}
            if any(c.required for c in found.values()):
                header_at, positions = number, found
                # errors name the column as the file heads it (an alias, too)
                shown = {i: str(values[i]).strip() for i in found}
                break
        if header_at is None:
            raise ValidationError.single(
                "content", f"sheet '{title}': no header row with the expected headers ("
                + "、".join(c.header for c in columns) + ")")
        present = {c.key for c in positions.values()}
        missing = [c.header for c in columns if c.required and c.key not in present]
        if missing:
            raise ValidationError.single(
                "content", f"sheet '{title}': missing column(s) " + "、".join(missing))
        rows, total = [], 0
        absent = [c.key for c in columns if c.key not in present]
        for number, values in rows_iter:
            if not any(v is not None and (type(v) is not str or v.strip()) for v in values):
                continue
            total += 1
            if total > max_rows:
                raise ValidationError.single(
                    "content", f"more than the limit of {max_rows} rows; split the file")
            parsed, ok = {}, True
            width = len(values)
            for i, col in positions.items():
                raw = values[i] if i < width else None
                if raw is None or (type(raw) is str and not raw.strip()):
                    parsed[col.key] = None
                    if col.required:
                        errors.add(number, shown[i], raw, "required (必填)")
                        ok = False
                    continue
                try:
                    parsed[col.key] = col.parse(raw)
                except CellError as exc:
                    errors.add(number, shown[i], raw, str(exc))
                    ok = False
            for key in absent:
                parsed[key] = None
            if ok:
                rows.append(Row(number, parsed))
        return Sheet(title, rows, errors, total)
    finally:
        workbook.close()


def header_of(columns: list[Column], key: str) -> str:
    return next(c.header for c in columns if c.key == key)


# Writing lives in shared.workbooks (this module was past 600 lines); its names
# stay importable from here.
from shared.workbooks import (  # noqa: E402,F401
    ENVELOPE_HEADERS, Table, envelope_rows, read_back, template, write_printable,
    write_tables)
