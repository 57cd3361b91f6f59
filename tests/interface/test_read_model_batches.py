"""Read models applied a page at a time (shared.projection): rating events are
folded per row and written set-based, yet a failing event in the middle of a
page is parked alone, its record's later events held behind it, the rest
applied; and the read models rebuilt from zero equal the ones kept live."""
import datetime as dt
import uuid

import pytest

from services.evaluation.application import EvaluationApplication
from services.evaluation.ratings.cycles import SYSTEM_ACTOR
from services.evaluation.ratings.domain import Rating
from shared import folds
from shared.identity import OPS, Caller
from shared.rebuild import rebuild_compared
from shared.secrets import event_cipher_key

OPS_CALLER = Caller(sub="xinxi.zhongxin", role=OPS)
TODAY = dt.date(2026, 11, 26)


@pytest.fixture(params=["few rows: executemany", "many rows: COPY"])
def app(request, clean_databases, monkeypatch):
    if request.param.startswith("many"):  # every write staged with COPY, as in a rebuild
        monkeypatch.setattr(folds, "BULK_ROWS", 0)  # where bulk() reads it
    key = event_cipher_key("evaluation", {"EVALUATION_CIPHER_KEY": "k" * 40})
    app = EvaluationApplication(clean_databases["evaluation"].with_cipher(key))
    yield app
    app.close()


def change(rating, stars: int, score: float = 90.0) -> None:
    rating.apply_result(stars, score, "cycle", None, "model_branch", 1, {"党建": score},
                        TODAY, 90, SYSTEM_ACTOR, reason="年度考评", evidence=["doc://1"])


def rating_row(app, rating) -> dict:
    return app.query_one("SELECT stars, underlying, version, open_problems FROM eval_ratings "
                         "WHERE rating_id = %s", (rating.id,))


def periods(app, rating) -> list[tuple]:
    return [(r["version"], r["stars_after"], r["valid_to"] is None) for r in app.query(
        "SELECT version, stars_after, valid_to FROM eval_rating_history WHERE org_id = %s "
        "ORDER BY valid_from, version", (rating.org_id,))]


def test_a_failing_event_mid_page_is_parked_alone_and_its_ratings_later_events_held(
        app, monkeypatch):
    ratings = [Rating.open_for(uuid.uuid4(), f"第{i}党支部", 3, SYSTEM_ACTOR) for i in range(6)]
    for stars in (5, 4, 5):  # versions 2-3, 4-5, 6-7: underlying set, then changed
        for r in ratings:
            change(r, stars)
    poisoned = ratings[2]
    folded = app.read_model._folds[Rating.Changed]

    def failing(batch, e):
        if e.originator_id == poisoned.id and e.originator_version == 5:
            raise ValueError("breakdown template broken")
        folded(batch, e)

    monkeypatch.setitem(app.read_model._folds, Rating.Changed, failing)
    app.save(*ratings)  # 42 events, one page
    assert app.projector.catch_up() == 42
    assert app.projector.position() == app.recorder.max_notification_id()

    rows = app.list_parked(OPS_CALLER, {})["items"]
    assert sorted((r["event_id"], r["status"], r["waiting_behind"]) for r in rows) == [
        (f"{poisoned.id}:5", "parked", None),
        (f"{poisoned.id}:6", "held", f"{poisoned.id}:5"),
        (f"{poisoned.id}:7", "held", f"{poisoned.id}:5")]
    assert "breakdown template broken" in next(r for r in rows if r["status"] == "parked")[
        "error"]
    # the poisoned rating as its events before the failing one left it
    assert rating_row(app, poisoned) == {"stars": 5, "underlying": 4, "version": 4,
                                         "open_problems": 0}
    assert periods(app, poisoned) == [(3, 5, True)]
    # every other rating wholly applied, its periods closed one after the other
    for r in ratings[:2] + ratings[3:]:
        assert rating_row(app, r) == {"stars": 5, "underlying": 5, "version": 7,
                                      "open_problems": 0}
        assert periods(app, r) == [(3, 5, False), (5, 4, False), (7, 5, True)]

    # the cause fixed, a retry applies it and then the held ones, in order
    monkeypatch.setitem(app.read_model._folds, Rating.Changed, folded)
    parked_id = next(r["parked_id"] for r in rows if r["status"] == "parked")
    done = app.retry_parked(OPS_CALLER, {"parked_id": parked_id, "reason": "模板已修复"})
    assert (done["applied"], done["still_open"]) == (3, 0)
    assert rating_row(app, poisoned) == rating_row(app, ratings[0])
    assert periods(app, poisoned) == [(3, 5, False), (5, 4, False), (7, 5, True)]
    assert rebuild_compared(app.projector)["identical"]


def test_a_failing_write_parks_the_event_that_caused_it(app):
    """A database error from a set-based write (two problems with one id: the
    second insert breaks the key) is traced to its one event by splitting the page."""
    ratings = [Rating.open_for(uuid.uuid4(), f"第{i}党支部", 3, SYSTEM_ACTOR) for i in range(4)]
    for r in ratings:
        change(r, 5)
    twice = ratings[1]
    twice.record_major_problem("p1", "重大问题", 2, 30, TODAY, SYSTEM_ACTOR, "巡察发现", ["doc"])
    twice._problem_recorded(org_id=twice.org_id, problem_id="p1", description="again",
                            downgrade_to=2, rectification_due="2027-01-01", actor=SYSTEM_ACTOR,
                            reason="重复", evidence=[])
    change(twice, 4)
    for r in ratings:
        change(r, 4)
    app.save(*ratings)
    app.projector.catch_up()
    rows = app.list_parked(OPS_CALLER, {})["items"]
    parked = [r for r in rows if r["status"] == "parked"]
    assert len(parked) == 1 and parked[0]["event_type"] == "rating_major_problem_recorded"
    assert "duplicate key" in parked[0]["error"]
    head_version = int(parked[0]["event_id"].rsplit(":", 1)[1])
    held = sorted(int(r["event_id"].rsplit(":", 1)[1]) for r in rows if r["status"] == "held")
    assert held == list(range(head_version + 1, twice.version + 1))
    problems = app.query("SELECT org_id::text, description FROM eval_problems")
    assert problems == [{"org_id": twice.org_id, "description": "重大问题"}]
    for r in ratings:
        if r is not twice:
            assert rating_row(app, r)["version"] == r.version


def test_the_rebuilt_rating_read_model_equals_the_one_kept_live(app):
    """Live: each change committed on its own and caught up (pages of a few
    events, as commands do); rebuilt: the whole log in big pages. Backfills
    (applied one by one, reading the history) interleave with folded events."""
    ratings = [Rating.open_for(uuid.uuid4(), f"第{i}党支部", 3, SYSTEM_ACTOR) for i in range(5)]
    app.commit(*ratings)
    for round_, stars in enumerate((5, 3, 4, 2, 5)):
        for i, r in enumerate(ratings):
            change(r, max(1, stars - i % 2), 60 + round_ * 5 + i)
            if round_ == 1 and i == 0:
                r.record_major_problem("p1", "重大问题", 2, 30, TODAY, SYSTEM_ACTOR, "巡察",
                                       ["doc"])
            if round_ == 2 and i == 0:
                r.plan_rectification("p1", "整改方案", "2027-02-01", SYSTEM_ACTOR)
                r.complete_rectification("p1", SYSTEM_ACTOR, "已整改", ["doc"])
                r.verify_rectification("p1", TODAY, 90, SYSTEM_ACTOR, "验收通过", None)
            if round_ == 3 and i == 1:
                r.backfill(4, 88.0, "2024", "2024-12-31", SYSTEM_ACTOR, "补录", ["doc"])
            app.commit(r)
    live = {t: app.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in
            ("eval_ratings", "eval_rating_history", "eval_problems")}
    for r in ratings:
        row = rating_row(app, r)
        assert (row["stars"], row["underlying"], row["version"]) == (
            r.stars, r.underlying, r.version)
    periods_recorded = sum(isinstance(e, (Rating.Changed, Rating.Backfilled))
                           for r in ratings for e in app.events.get(r.id))
    assert len(live["eval_rating_history"]) == periods_recorded >= 5 * 5 + 1
    assert [p["status"] for p in live["eval_problems"] if p["problem_id"] == "p1"] == [
        "verified"]
    report = rebuild_compared(app.projector)
    assert report["identical"], report["tables"]
    assert app.projector.rebuild() == app.recorder.max_notification_id()
    assert {t: app.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in live} == live
