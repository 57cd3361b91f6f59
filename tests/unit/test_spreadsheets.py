"""Spreadsheet mechanics (shared.spreadsheets) and the rating backfill rule, pure."""
import base64
import datetime as dt
import io
import zipfile

import pytest
from openpyxl import Workbook, load_workbook

from services.evaluation.ratings.domain import Rating
from shared.errors import ValidationError
from shared.spreadsheets import (CellError, Column, Table, choice, date, decode_upload, number,
                                 read_back, read_sheet, template, text, write_printable,
                                 write_tables, yes_no)

ACTOR = {"sub": "zzb", "role": "org_admin"}
COLUMNS = [Column("name", "姓名", text(4)), Column("day", "日期", date()),
           Column("kind", "类别", choice({"teacher": "教师", "student": "学生"})),
           Column("n", "星级", number(1, 5, integer=True), required=False),
           Column("flag", "双带头人", yes_no, required=False, aliases=("是否双带头人",))]


def book(*rows) -> bytes:
    wb = Workbook()
    for r in rows:
        wb.active.append(r)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_cell_parsers_say_why():
    assert text(4)(" 张  三 ") == "张 三" and text(10)(123456.0) == "123456"
    with pytest.raises(CellError, match="longer than 4"):
        text(4)("一二三四五")
    parse = date()
    assert parse("2024/1/5") == parse("2024年1月5日") == parse(dt.datetime(2024, 1, 5)) \
        == dt.date(2024, 1, 5)
    for bad, why in (("05-01-2024", "not a date"), ("2024-02-30", "no such day"),
                     ((dt.date.today() + dt.timedelta(days=1)).isoformat(), "in the future")):
        with pytest.raises(CellError, match=why):
            parse(bad)
    assert choice({"full": "正式党员"})("正式党员") == "full" == choice({"full": "正式党员"})("full")
    assert number(1, 5, integer=True)("4") == 4
    with pytest.raises(CellError, match="whole number"):
        number(1, 5, integer=True)(4.5)
    assert yes_no("是") is True and yes_no("否") is False
    with pytest.raises(CellError):
        yes_no("也许")


def test_read_sheet_finds_the_header_below_a_title_and_collects_every_error():
    data = book(["2026年花名册"], [], ["备注", "类别", "是否双带头人", "日期", "姓名"],
                ["", "教师", "是", "2020-01-01", "张三"],
                [None, None, None, None, None],
                ["", "干部", "x", "2020-13-01", "张三四五六"],
                ["", "学生", None, dt.date(2021, 2, 3), None])
    sheet = read_sheet(data, COLUMNS)
    assert sheet.total_rows == 3  # the empty row is skipped
    assert [(r.number, r.values) for r in sheet.rows] == [
        (4, {"name": "张三", "day": dt.date(2020, 1, 1), "kind": "teacher", "flag": True,
             "n": None})]
    assert [(e["row"], e["column"], e["why"]) for e in sheet.errors.items] == [
        (6, "类别", "not one of 教师, 学生"), (6, "是否双带头人", "not 是 or 否"),
        (6, "日期", "not a date (no such day)"), (6, "姓名", "longer than 4 characters (5)"),
        (7, "姓名", "required (必填)")]


def test_limits_and_malformed_files_are_validation_errors():
    with pytest.raises(ValidationError, match="missing column"):
        read_sheet(book(["姓名", "日期"], ["a", "2020-01-01"]), COLUMNS)
    with pytest.raises(ValidationError, match="more than the limit of 2 rows"):
        read_sheet(book(["姓名", "日期", "类别"], *[["a", "2020-01-01", "教师"]] * 3), COLUMNS,
                   max_rows=2)
    with pytest.raises(ValidationError, match="limit of 10 bytes"):
        read_sheet(book(["姓名"]), COLUMNS, max_bytes=10)
    with pytest.raises(ValidationError, match="not an .xlsx file"):
        read_sheet(b"PK\x03\x04" + b"\x00" * 100, COLUMNS)
    not_a_workbook = io.BytesIO()
    with zipfile.ZipFile(not_a_workbook, "w") as z:
        z.writestr("hello.txt", "a zip, not a workbook")
    with pytest.raises(ValidationError, match="not a readable .xlsx"):
        read_sheet(not_a_workbook.getvalue(), COLUMNS)
    with pytest.raises(ValidationError, match="limit of 100 bytes"):
        decode_upload(base64.b64encode(b"x" * 101).decode(), max_bytes=100)
    with pytest.raises(ValidationError, match="not base64"):
        decode_upload("not base64!", max_bytes=100)


def test_template_and_written_tables_read_back():
    data = template("名册", COLUMNS, ["说明一行"])
    assert read_back(data)[0] == ["姓名", "日期", "类别", "星级", "双带头人"]
    assert read_back(data, "说明") == [["说明一行"]]
    data = write_tables([Table("表", ["a", "b"], [[1, {"k": "值"}], [None, "x"]], title=["标题"])])
    assert read_back(data) == [["标题", None], ["a", "b"], [1, '{"k": "值"}'], [None, "x"]]
    printable = write_printable(Table("公示", ["序号", "名称"], [[1, "甲"]], title=["标题", "期间"]),
                                footer=["组织部"])
    ws = load_workbook(io.BytesIO(printable)).active
    assert ws.print_title_rows == "$3:$3" and ws.page_setup.orientation == "portrait"
    assert [c.value for c in ws[4]] == [1, "甲"] and ws["A6"].value == "组织部"


def test_a_backfill_takes_its_date_and_never_overrides_what_the_system_set():
    rating = Rating.open_for("org-1", "支部", 3, ACTOR)
    assert rating.backfill(3, 70.0, "2023年度", "2023-12-31", ACTOR, "导入 row 2")
    assert rating.backfill(4, 85.0, "2024年度", "2024-12-31", ACTOR, "导入 row 3")
    assert rating.stars == 4  # the latest backfill is current: nothing else was set
    assert rating.backfill(2, None, "2022年度", "2022-12-31", ACTOR, "导入 row 4")
    assert rating.stars == 4  # an earlier one is history only
    assert rating.backfill(4, 85.0, "2024年度", "2024-12-31", ACTOR, "again") is False
    with pytest.raises(ValidationError, match="a different rating"):
        rating.backfill(5, 85.0, "2024年度", "2024-12-31", ACTOR, "conflict")
    rating.apply_result(3, 72.0, "cycle", "c", "s", 1, {}, dt.date(2026, 1, 1), 30, ACTOR)
    assert rating.backfill(5, None, "2025年度", "2025-12-31", ACTOR, "late row")
    assert rating.stars == 3  # what the system set stays current
    events = [type(e).__name__ for e in rating.collect_events()]
    assert events.count("Backfilled") == 4 and "FellToThreeOrBelow" in events


def test_rows_read_from_the_sheet_xml_are_what_openpyxl_reads():
    """read_sheet reads a sheet's XML itself (shared.spreadsheets._Workbook):
    every kind of cell gives what openpyxl's own reader gives."""
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    from shared.spreadsheets import _Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "名册"
    wb.create_sheet("其他")["A1"] = "x"
    ws.append(["姓名", "日期", "数", "真", "式", "空"])
    ws.append(["张三 & <李四>", dt.date(2024, 1, 5), 3, True, "=1+2", None])
    ws.append([CellRichText("富", TextBlock(InlineFont(b=True), "文本")),
               dt.datetime(2024, 1, 5, 8, 30), 2.5, False, None, "  "])
    ws["D6"] = "跳过的行 a row after missing ones"
    ws["AB6"] = 1e20
    ws["C7"] = dt.time(8, 30)
    out = io.BytesIO()
    wb.save(out)
    data = out.getvalue()
    expected = {}
    for number, row in enumerate(load_workbook(io.BytesIO(data), read_only=True, data_only=True)
                                 ["名册"].iter_rows(values_only=True), start=1):
        row = list(row)
        while row and row[-1] is None:
            row.pop()
        if row:
            expected[number] = row
    book_ = _Workbook(data)
    try:
        title, part = book_.sheet("名册")
        got = dict(book_.rows(part))
    finally:
        book_.close()
    assert title == "名册" and got == expected
    assert got[2][0] == "张三 & <李四>" and got[3][0] == "富文本" and got[6][27] == 1e20


def test_shared_strings_and_cached_formula_values_as_excel_writes_them():
    """Excel writes text as shared strings (rich runs, phonetic guides, _x005F_
    escapes), formulas with their cached values: read as openpyxl reads them."""
    from shared.spreadsheets import _Workbook

    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = (f'<worksheet xmlns="{main}"><dimension ref="A1:E3"/><sheetData>'
             '<row r="1" spans="1:5"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
             '<c r="C1" t="s"><v>2</v></c></row>'
             '<row r="3"><c r="A3" t="str"><f>A1&amp;"x"</f><v>名x</v></c>'
             '<c r="B3" t="e"><f>1/0</f><v>#DIV/0!</v></c><c r="C3" t="b"><v>1</v></c>'
             '<c r="D3"><f>1+1</f><v>2</v></c><c r="E3" s="0"/></row></sheetData></worksheet>')
    strings = (f'<sst xmlns="{main}" count="3" uniqueCount="3"><si><t xml:space="preserve">'
               ' 姓名 </t></si><si><r><rPr><b/></rPr><t>富</t></r><r><t>文本</t></r></si>'
               '<si><t>张三_x005F_x000D_</t><rPh sb="0" eb="1"><t>zhang</t></rPh></si></sst>')
    wb = Workbook()
    out = io.BytesIO()
    wb.save(out)
    rewritten = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as src, \
            zipfile.ZipFile(rewritten, "w") as dst:
        for item in src.namelist():
            content = src.read(item)
            if item == "xl/worksheets/sheet1.xml":
                content = sheet.encode()
            elif item == "[Content_Types].xml":
                content = content.replace(b"</Types>", (
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
                    b"</Types>"))
            dst.writestr(item, content)
        dst.writestr("xl/sharedStrings.xml", strings)
    data = rewritten.getvalue()
    expected = {n: list(r) for n, r in enumerate(
        load_workbook(io.BytesIO(data), read_only=True, data_only=True).active.iter_rows(
            values_only=True), start=1) if any(v is not None for v in r)}
    book_ = _Workbook(data)
    try:
        got = dict(book_.rows(book_.sheet(None)[1]))
    finally:
        book_.close()
    assert got == {1: expected[1][:3], 3: expected[3][:4]}  # openpyxl pads to the dimension
    assert got[1] == [" 姓名 ", "富文本", "张三_x000D_"] and got[3] == ["名x", "#DIV/0!", True, 2]
