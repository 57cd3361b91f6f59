"""Functional departments (职能部门): records owned by organizations, which
org_admin adds, renames and retires (issue 9)."""
