"""Spreadsheet imports and exports of the evaluation service (历史星级补录, 公示名单, 考评结果)."""
