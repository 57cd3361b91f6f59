"""Read models of the functional departments (rebuildable from zero):
``dept_view`` holds each department now; ``dept_history`` every state with
its validity period, so the list can be read as of any moment."""
from __future__ import annotations

from shared.projection import Projection, handles
from services.organizations.departments.domain import Department

DDL = (
    """CREATE TABLE IF NOT EXISTS dept_view (
        id uuid PRIMARY KEY, code text NOT NULL UNIQUE, name text NOT NULL,
        status text NOT NULL, added_at timestamptz NOT NULL, retired_at timestamptz,
        updated_at timestamptz NOT NULL, version int NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dept_history (
        id uuid NOT NULL, version int NOT NULL, code text NOT NULL, name text NOT NULL,
        status text NOT NULL, valid_from timestamptz NOT NULL, valid_to timestamptz,
        PRIMARY KEY (id, version))""",
    "CREATE INDEX IF NOT EXISTS dept_history_period ON dept_history (valid_from, valid_to)",
)


class DepartmentsReadModel(Projection):
    ddl = DDL
    tables = ("dept_view", "dept_history")

    def _period(self, curs, e) -> None:
        """Close the department's open period and open one copying ``dept_view``."""
        curs.execute("UPDATE dept_history SET valid_to = %s WHERE id = %s AND valid_to IS NULL",
                     (e.timestamp, e.originator_id))
        curs.execute("INSERT INTO dept_history (id, version, code, name, status, valid_from) "
                     "SELECT id, version, code, name, status, %s FROM dept_view WHERE id = %s",
                     (e.timestamp, e.originator_id))

    @handles(Department.Added)
    def added(self, curs, e):
        curs.execute(
            "INSERT INTO dept_view (id, code, name, status, added_at, updated_at, version) "
            "VALUES (%s,%s,%s,'active',%s,%s,%s)",
            (e.originator_id, e.code, e.name, e.timestamp, e.timestamp, e.originator_version))
        self._period(curs, e)

    @handles(Department.Renamed)
    def renamed(self, curs, e):
        curs.execute("UPDATE dept_view SET name = %s, updated_at = %s, version = %s "
                     "WHERE id = %s", (e.name, e.timestamp, e.originator_version,
                                       e.originator_id))
        self._period(curs, e)

    @handles(Department.Retired)
    def retired(self, curs, e):
        curs.execute("UPDATE dept_view SET status = 'retired', retired_at = %s, updated_at = %s, "
                     "version = %s WHERE id = %s",
                     (e.timestamp, e.timestamp, e.originator_version, e.originator_id))
        self._period(curs, e)
