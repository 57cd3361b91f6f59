"""Ratings (星级评定, issue 3): indicator schemes, evaluation cycles, assessments
through 自评/审核/审定/公示 with objections (异议) and appeals (申诉), star ratings,
major problems (重大问题) and rectifications (整改)."""
