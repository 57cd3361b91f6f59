"""Writing .xlsx files (电子表格导出), the other half of ``shared.spreadsheets``:
import templates (the headers and one example row), exports (write-only mode
for long sheets), a printable layout for lists that are posted (公示名单), and
reading a written sheet back for checks. No service knowledge; the names are
re-exported by ``shared.spreadsheets``, where services import them from.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any, Iterable

from shared.spreadsheets import Column, _open

# -- writing --------------------------------------------------------------------------
_HEADER_FILL = "DDEBF7"


def _header_style():
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    thin = Side(style="thin")
    return dict(font=Font(bold=True), fill=PatternFill("solid", fgColor=_HEADER_FILL),
                alignment=Alignment(horizontal="center", vertical="center", wrap_text=True),
                border=Border(left=thin, right=thin, top=thin, bottom=thin))


def template(sheet_title: str, columns: list[Column], notes: Iterable[str] = ()) -> bytes:
    """A blank import file: the Chinese headers (required ones marked *) and one example row."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_title
    style = _header_style()
    for i, col in enumerate(columns, start=1):
        cell = ws.cell(row=1, column=i, value=col.header)
        for k, v in style.items():
            setattr(cell, k, v)
        if col.note or col.required:
            cell.comment = Comment(("必填 required. " if col.required else "选填 optional. ")
                                   + col.note, "lianchuang")
        example = ws.cell(row=2, column=i, value=col.example)
        if isinstance(col.example, dt.date):
            example.number_format = "yyyy-mm-dd"
        ws.column_dimensions[get_column_letter(i)].width = col.width
    ws.freeze_panes = "A2"
    if notes:
        info = wb.create_sheet("说明")
        for r, line in enumerate(notes, start=1):
            info.cell(row=r, column=1, value=line)
        info.column_dimensions["A"].width = 100
    return _save(wb)


def _save(wb) -> bytes:
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


@dataclass
class Table:
    """One sheet of an export: a title block (lines above the header), the
    header and the rows (long ones are streamed in write-only mode)."""

    name: str
    headers: list[str]
    rows: Iterable[list[Any]]
    title: list[str] = field(default_factory=list)
    widths: list[int] | None = None


def write_tables(tables: list[Table]) -> bytes:
    """Write sheets in write-only mode (constant memory however long)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    style = _header_style()
    for table in tables:
        ws = wb.create_sheet(table.name[:31])
        for i, width in enumerate(table.widths or [18] * len(table.headers), start=1):
            ws.column_dimensions[get_column_letter(i)].width = width
        for line in table.title:
            ws.append([line])
        header = []
        for h in table.headers:
            cell = WriteOnlyCell(ws, value=h)
            for k, v in style.items():
                setattr(cell, k, v)
            header.append(cell)
        ws.append(header)
        ws.freeze_panes = f"A{len(table.title) + 2}"
        for row in table.rows:
            ws.append([_cell_value(v) for v in row])
    return _save(wb)


def _cell_value(value):
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def write_printable(table: Table, footer: list[str] = (), landscape: bool = False) -> bytes:
    """A list to print and post (e.g. 公示名单): a merged title block, a bordered
    table whose header repeats on every page, fitted to the page width, with
    footer lines below and page numbers."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = table.name[:31]
    ncols = len(table.headers)
    last = get_column_letter(ncols)
    for r, line in enumerate(table.title, start=1):
        ws.cell(row=r, column=1, value=line)
        ws.merge_cells(f"A{r}:{last}{r}")
        ws.cell(row=r, column=1).font = Font(bold=r == 1, size=16 if r == 1 else 11)
        ws.cell(row=r, column=1).alignment = Alignment(horizontal="center")
    header_row = len(table.title) + 1
    style = _header_style()
    for c, h in enumerate(table.headers, start=1):
        cell = ws.cell(row=header_row, column=c, value=h)
        for k, v in style.items():
            setattr(cell, k, v)
    thin = Side(style="thin")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    r = header_row
    for r, row in enumerate(table.rows, start=header_row + 1):
        for c, value in enumerate(row, start=1):
            cell = ws.cell(row=r, column=c, value=_cell_value(value))
            cell.border = border
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for i, line in enumerate(footer, start=r + 2):
        ws.cell(row=i, column=1, value=line)
        ws.merge_cells(f"A{i}:{last}{i}")
        ws.cell(row=i, column=1).alignment = Alignment(horizontal="right")
    for i, width in enumerate(table.widths or [18] * ncols, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.oddFooter.center.text = "第 &P 页 / 共 &N 页"
    return _save(wb)


def read_back(data: bytes, sheet: str | None = None) -> list[list[Any]]:
    """Every row of a written sheet as values (for checks and tests)."""
    wb = _open(data)
    try:
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        width = max((len(r) for r in rows), default=0)
        return [r + [None] * (width - len(r)) for r in rows]  # trailing empty cells
    finally:
        wb.close()


def envelope_rows(envelopes: Iterable[dict]) -> Iterable[list[Any]]:
    """Event envelopes (``shared.envelope``) as rows for an auditor's history sheet."""
    for e in envelopes:
        actor = e.get("actor") or {}
        yield [e["originator_version"], e["occurred_at"], e["type"], e["aggregate_type"],
               actor.get("sub"), actor.get("role"), e.get("reason"),
               _cell_value(e["evidence"]) if e.get("evidence") is not None else None,
               _cell_value(e["data"])]


ENVELOPE_HEADERS = ["版本 version", "记录时间 recorded at (UTC)", "事件 event", "对象 aggregate",
                    "操作人 actor", "角色 role", "原因 reason", "依据 evidence", "内容 data"]
