"""Organisational-life records (组织生活记录): 三会一课, 主题党日, 党性体检, 民主评议,
攻坚团队, 课程思政, 亮诺践诺 and 红线/底线 violations (issue 8)."""
