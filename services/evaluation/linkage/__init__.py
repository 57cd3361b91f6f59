"""Linkage rules (联动规则, DOMAIN "Linkage rules"): R1 述职评议 caps, R2 两优一先
nominations, R3/R4 reports (issue 8). R5 feeds the derived 双带头人 indicator."""
