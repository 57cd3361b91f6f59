"""The sheet evaluation imports: past years' ratings (历史星级补录), pure."""
from __future__ import annotations

import datetime as dt

from shared.spreadsheets import Column, date, number, text

MAX_NAME = 100

RATINGS = [
    Column("org", "组织名称", text(MAX_NAME), example="机电学院教工第一党支部", width=30),
    Column("parent", "上级组织", text(MAX_NAME), example="机电学院党总支", width=26,
           note="a branch's college; a college's is the university committee"),
    Column("period", "年度", text(40), example="2024年度", note="the year or period rated"),
    Column("stars", "星级", number(1, 5, integer=True), example=4, note="1-5"),
    Column("score", "得分", number(0, 100), required=False, example=86.5,
           note="堡垒指数 0-100, if known"),
    Column("effective_on", "生效日期", date(), example=dt.date(2024, 12, 31), width=14,
           note="when the rating took effect (the date of the result); not in the future"),
    Column("evidence", "依据", text(500), required=False, example="党委组织部〔2024〕15号",
           width=30, note="the document the result comes from"),
]
TITLE = "历史星级"
NOTES = ["历史星级补录 backfill of past years' star ratings: one row per organisation and date.",
         "Keyed by organisation and 生效日期: the same row again changes nothing.",
         "A backfilled rating takes effect at 生效日期; queries as of a date answer by it and "
         "still show when it was recorded.",
         "It becomes the current rating only where the system has set none since."]
FIELD_COLUMNS = {"stars": "星级", "score": "得分", "effective_on": "生效日期", "reason": "依据"}
STAR = "★"
