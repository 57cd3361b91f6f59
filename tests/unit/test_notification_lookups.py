"""A batch's directory and contact lookups (notifications.fanout): each distinct
lookup runs once within a batch, every time outside one, and a batch's answers
never reach the next batch."""
from services.notifications.fanout import lookups_of_a_batch, select_all, select_one


class CountingCursor:
    def __init__(self, answers):
        self.answers, self.executed, self._last = answers, [], None

    def execute(self, statement, params):
        self.executed.append((statement, params))
        self._last = self.answers[(statement, params)]

    def fetchone(self):
        return self._last[0] if self._last else None

    def fetchall(self):
        return list(self._last)


ROLE = "SELECT holder FROM roles WHERE org = %s"


def test_a_lookup_runs_once_per_batch_and_again_in_the_next():
    curs = CountingCursor({(ROLE, ("b1",)): [{"holder": "张三"}], (ROLE, ("b2",)): []})
    with lookups_of_a_batch():
        assert select_one(curs, ROLE, ("b1",)) == {"holder": "张三"}
        assert select_one(curs, ROLE, ("b1",)) == {"holder": "张三"}
        assert select_all(curs, ROLE, ("b1",)) == [{"holder": "张三"}]  # one row vs all: apart
        assert select_one(curs, ROLE, ("b2",)) is None
        assert select_one(curs, ROLE, ("b2",)) is None  # nothing found is remembered too
    assert curs.executed == [(ROLE, ("b1",)), (ROLE, ("b1",)), (ROLE, ("b2",))]
    curs.answers[(ROLE, ("b1",))] = [{"holder": "李四"}]  # the role changed since
    with lookups_of_a_batch():
        assert select_one(curs, ROLE, ("b1",)) == {"holder": "李四"}
    assert select_one(curs, ROLE, ("b1",)) == {"holder": "李四"}  # outside a batch: each time
    assert len(curs.executed) == 5
