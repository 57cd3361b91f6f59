"""Members (党员): the pioneer index (锋领指数) from the organisational-life records
consumed from organizations, and the branch indicators derived from them (issue 8)."""
