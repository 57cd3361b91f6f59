"""Spreadsheet imports and exports of the organizations service (批量导入, 导出)."""
