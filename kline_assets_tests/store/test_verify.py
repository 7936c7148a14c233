"""`verify` on a dataset built by hand: each kind of problem is reported, and only real ones."""

import datetime as dt

from kline_assets.store.dataset import DatasetStore
from kline_assets.store.verify import verify
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, day_table, with_value

UTC = parse_zone("UTC")
START = dt.date(2021, 1, 1)


def stored(data_root, days: dict[dt.date, int]) -> DatasetStore:
    """Days with the given number of minutes stored (1440: complete)."""
    store = DatasetStore.open(data_root, FUT, UTC, START)
    staged = []
    for day, minutes in days.items():
        start, _ = UTC.day_window_ms(day)
        staged.append(store.stage(day, day_table(day, minutes), [], start + minutes * 60_000))
    store.commit(staged)
    return store


def test_a_whole_dataset_passes(data_root):
    store = stored(data_root, {START + dt.timedelta(n): 1440 for n in range(3)})
    report = verify(store, None, None, dt.date(2021, 2, 1))
    assert report.ok and report.days_checked == 3


def test_missing_and_incomplete_days_inside_the_window_are_problems(data_root):
    store = stored(data_root, {START: 1440, START + dt.timedelta(2): 600, START + dt.timedelta(3): 1440})
    report = verify(store, None, None, dt.date(2021, 2, 1))
    kinds = {(p.day, p.kind) for p in report.problems}
    assert ("2021-01-02", "missing_day") in kinds
    assert ("2021-01-03", "incomplete") in kinds
    # the day after the incomplete one does not follow its last row either: a third day to repair
    assert [str(d) for d in report.bad_days()] == ["2021-01-02", "2021-01-03", "2021-01-04"]


def test_an_explicit_window_reports_the_days_it_lacks(data_root):
    store = stored(data_root, {START + dt.timedelta(1): 1440})
    report = verify(store, START, START + dt.timedelta(2), dt.date(2021, 2, 1))
    assert {(p.day, p.kind) for p in report.problems} == {("2021-01-01", "missing_day"), ("2021-01-03", "missing_day")}


def test_today_being_incomplete_is_not_a_problem(data_root):
    store = stored(data_root, {START: 1440, START + dt.timedelta(1): 600})
    assert verify(store, None, None, START + dt.timedelta(1)).ok


def test_entries_numbered_against_another_start_are_problems_and_repair_drops_them(data_root):
    """What two first backfills with different starts used to leave: the manifest says 2020-12-29, but
    its entries were numbered from 2021-01-01 and one day is listed twice; never "all well"."""
    import json

    from kline_assets.store.verify import quarantine

    store = stored(data_root, {START + dt.timedelta(n): 1440 for n in range(3)})
    doc = json.loads(store.backend.get(store.paths.manifest))
    doc["start"] = "2020-12-29"
    doc["chunks"].append({**doc["chunks"][0], "index": 4})
    store.backend.put(store.paths.manifest, json.dumps(doc).encode())
    store = DatasetStore.open(data_root, FUT, UTC, START)
    report = verify(store, None, None, dt.date(2021, 2, 1))
    assert {p.kind for p in report.problems} >= {"misnumbered"}
    assert {p.day for p in report.problems if p.kind == "misnumbered"} == {"2021-01-01", "2021-01-02", "2021-01-03"}
    quarantine(store, report)
    assert store.manifest().chunks == {}
    assert len(store.unlisted(store.manifest())) == 3  # young: perhaps another writer's, left for now
    store.collect(grace_s=0)
    assert store.backend.list(f"{store.paths.chunks_dir}/") == []


def test_unlisted_objects_are_problems_only_after_the_grace_period(data_root, monkeypatch):
    """An object no manifest names may be another writer's, about to be committed: verify says nothing of
    it until it is older than the grace period, then a repair removes it."""
    import time

    from kline_assets.store import dataset as store_module
    from kline_assets.store.verify import quarantine

    store = stored(data_root, {START: 1440})
    store.stage(START + dt.timedelta(1), day_table(START + dt.timedelta(1), 60), [], 0)  # never committed
    assert verify(store, None, None, START).ok
    later = time.time() + store_module.GRACE_S + 60
    monkeypatch.setattr(time, "time", lambda: later)
    report = verify(store, None, None, START)
    assert [(p.kind, p.day) for p in report.problems] == [("stray_file", "2021-01-02")]
    quarantine(store, report)
    assert [o.key for o in store.backend.list(f"{store.paths.chunks_dir}/")] == [
        store.key(store.manifest().chunks[1])]


def test_a_stored_day_with_impossible_or_unclosed_rows_is_insane(data_root):
    """Rows the exchange cannot have sent, in a file that matches its manifest entry (written by an older
    version, or by hand): verify names the day and the minute."""
    store = DatasetStore.open(data_root, FUT, UTC, START)
    nan_day, unclosed_day = START, START + dt.timedelta(1)
    table = with_value(day_table(nan_day), "open", 100, float("nan"))
    end = UTC.day_window_ms(unclosed_day)[1]
    unclosed = with_value(day_table(unclosed_day), "close_time", 1439, 2 ** 62)  # closes long after it was written
    store.commit([store.stage(nan_day, table, [], UTC.day_window_ms(nan_day)[1]),
                  store.stage(unclosed_day, unclosed, [], end)])
    report = verify(store, None, None, dt.date(2021, 2, 1))
    insane = {p.day: p.detail for p in report.problems if p.kind == "insane"}
    assert set(insane) == {"2021-01-01", "2021-01-02"}, report.problems
    assert "impossible_values (first at 2021-01-01T01:40" in insane["2021-01-01"]
    assert "unclosed_rows (first at 2021-01-02T23:59" in insane["2021-01-02"]
