"""In-process `materialize` of partition ranges: exact rows, DST days, gaps, listing, resume."""

import datetime as dt
import errno
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kline_assets.binance.days import DayStream
from kline_assets.defs import writer
from kline_assets.defs.component import build_definitions
from kline_assets.defs.definitions import build_resources
from kline_assets.defs.names import EXCHANGE, klines_key, node_name
from kline_assets.defs.resources import ExchangeResource
from kline_assets.store.checks import CHECK_NAMES
from kline_assets.store.schema import SCHEMA
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import (
    FUT,
    SPOT,
    chunk_path,
    expected_rows,
    flip_byte,
    manifest,
    run,
    sim_requests,
    step_failure,
    store_of,
    stored_rows,
)


def test_dst_days_in_zurich_equal_the_exchange_row_by_row(sim, make_settings, instance):
    settings = make_settings(tz="Europe/Zurich", start="2021-01-01")
    assert run(settings, instance, FUT, "2021-03-27", "2021-03-28").success
    assert run(settings, instance, FUT, "2021-10-31", "2021-10-31").success
    m = manifest(settings, FUT)
    assert m["align_tz"] == "Europe/Zurich" and m["start"] == "2021-01-01"
    by_day = {c["partition"]: c for c in m["chunks"]}
    for day, rows in [("2021-03-27", 1440), ("2021-03-28", 1380), ("2021-10-31", 1500)]:
        entry = by_day[day]
        path = chunk_path(store_of(settings), entry)
        assert entry["rows"] == rows and entry["complete"] and entry["exchange_gaps"] == []
        want = expected_rows(sim.state, FUT, "Europe/Zurich", dt.date.fromisoformat(day))
        assert stored_rows(store_of(settings), entry) == want
        table = pq.read_table(path)
        assert table.schema.equals(SCHEMA, check_metadata=False)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    dst = by_day["2021-03-28"]
    assert dst["file"] == f"chunks/chunk_000087_20210328_{dst['sha256'][:8]}.parquet"


def test_gaps_are_recorded_and_days_before_listing_are_empty(sim, make_settings, instance):
    settings = make_settings(start="2019-09-06")
    result = run(settings, instance, FUT, "2019-09-06", "2019-09-09")
    assert result.success
    chunks = {c["partition"]: c for c in manifest(settings, FUT)["chunks"]}
    assert [chunks[d]["rows"] for d in ("2019-09-06", "2019-09-07")] == [0, 0]
    assert chunks["2019-09-08"]["rows"] == 6 * 60 + 3  # listed 17:57 UTC
    assert all(c["complete"] for c in chunks.values())
    settings = make_settings(start="2020-02-18")
    assert run(settings, instance, SPOT, "2020-02-19", "2020-02-19").success
    entry = manifest(settings, SPOT)["chunks"][0]
    assert entry["exchange_gaps"] == [[1582112100000, 1582133400000]] and entry["rows"] == 1440 - 355
    md = result.asset_materializations_for_node(node_name("futures"))
    assert {m.partition for m in md} == {"2019-09-06", "2019-09-07", "2019-09-08", "2019-09-09"}
    assert all("sha256" in m.metadata and "rows" in m.metadata for m in md)


def test_rerun_of_a_finished_range_makes_no_kline_request(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, SPOT, "2021-01-01", "2021-01-05").success
    before = len(sim_requests(sim.state))
    assert before == 5 * 2  # 1440 rows in pages of 1000
    assert run(settings, instance, SPOT, "2021-01-01", "2021-01-05").success
    assert len(sim_requests(sim.state)) == before


def test_today_is_stored_up_to_the_last_closed_minute_and_incomplete(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    now = dt.datetime.now(dt.timezone.utc)
    if now.hour == 0 and now.minute < 2:
        pytest.skip("too close to midnight for a non-empty today")
    today = now.date().isoformat()
    assert run(settings, instance, FUT, today, today).success
    entry = manifest(settings, FUT)["chunks"][-1]
    now_ms = sim.state.now_ms()
    assert not entry["complete"] and entry["rows"] > 0
    assert entry["last_open_time"] + 59_999 < now_ms
    assert entry["last_open_time"] >= now_ms - 2 * 60_000 - now_ms % 60_000


def test_passing_days_are_recorded_once_and_each_check_has_the_runs_verdict(sim, make_settings, instance):
    """A passing day is one materialization (no evaluation of its own); each check's verdict over the run's
    days names their range; the coverage of the whole dataset follows."""
    settings = make_settings(start="2020-02-18")
    result = run(settings, instance, SPOT, "2020-02-18", "2020-02-20")
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert all(e.partition is None and e.passed for e in evaluations)
    verdicts = {e.check_name: e for e in evaluations}
    assert sorted(verdicts) == ["continuity", "coverage", "integrity", "sanity"]
    assert all(verdicts[name].metadata["days"].value == 3 and verdicts[name].description ==
               "2020-02-18..2020-02-20, this run's 3 day(s): all passed" for name in CHECK_NAMES)
    assert verdicts["coverage"].description == "2020-02-18..2020-02-20: whole"
    days = {m.partition: m for m in result.asset_materializations_for_node(node_name("spot"))}
    assert sorted(days) == ["2020-02-18", "2020-02-19", "2020-02-20"]
    assert days["2020-02-19"].metadata["exchange_gap_minutes"].value == 355  # a real gap passes continuity


def test_coverage_names_the_days_missing_between_the_stored_ones(sim, make_settings, instance):
    """What `verify` calls missing days, the UI's coverage check says after every run (a UI backfill of
    ten days next to older ones passed all checks and left an eight-day hole)."""
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-02").success
    result = run(settings, instance, FUT, "2021-01-11", "2021-01-12")
    assert result.success  # coverage does not block: this run's days are fine
    cover = next(e for e in result.get_asset_check_evaluations() if e.check_name == "coverage")
    assert not cover.passed and cover.severity.value == "ERROR"
    assert cover.description == "2021-01-01..2021-01-12: 8 day(s) missing: 2021-01-03..2021-01-10"
    assert cover.metadata["missing_days"].value == 8 and cover.metadata["last_complete_day"].value == "2021-01-12"
    result = run(settings, instance, FUT, "2021-01-03", "2021-01-10")
    cover = next(e for e in result.get_asset_check_evaluations() if e.check_name == "coverage")
    assert cover.passed and cover.metadata["stored_days"].value == 12


def test_a_rerun_records_only_what_dagster_lacks(sim, make_settings, instance):
    """Days already stored and recorded are neither fetched nor recorded again; a day committed but not
    recorded (kill -9 between the two) and a day whose chunk changed are."""
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-05").success
    instance.wipe_assets([klines_key(FUT)])  # Dagster lost the record of all five days
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-03").success
    assert len(instance.fetch_materializations(klines_key(FUT), limit=100).records) == 3
    result = run(settings, instance, FUT, "2021-01-01", "2021-01-06")
    recorded = sorted(m.partition for m in result.asset_materializations_for_node(node_name("futures")))
    assert recorded == ["2021-01-04", "2021-01-05", "2021-01-06"]
    assert instance.get_materialized_partitions(klines_key(FUT)) == {f"2021-01-0{d}" for d in range(1, 7)}


def test_odd_exchange_rows_are_stored_as_sent_and_only_warned(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    odd = 1609459200000 + 600 * 60_000  # 2021-01-01T10:00Z
    sim.state.config.odd_minutes = [odd]
    result = run(settings, instance, FUT, "2021-01-01", "2021-01-01")
    assert result.success
    entry = manifest(settings, FUT)["chunks"][0]
    rows = stored_rows(store_of(settings), entry)
    assert rows == expected_rows(sim.state, FUT, "UTC", dt.date(2021, 1, 1)) and rows[600][0] == odd + 3000
    sanity_ = next(e for e in result.get_asset_check_evaluations() if e.check_name == "sanity" and e.partition)
    assert not sanity_.passed and sanity_.severity.value == "WARN"
    verdict = next(e for e in result.get_asset_check_evaluations() if e.check_name == "sanity" and not e.partition)
    assert not verdict.passed and verdict.severity.value == "WARN" and verdict.metadata["failed_days"].value == 1
    assert verdict.description == "2021-01-01..2021-01-01, this run's 1 day(s): 1 failed, the first 2021-01-01"
    assert sanity_.description.startswith("2021-01-01: 1 off_minute_rows")
    continuity_ = next(e for e in result.get_asset_check_evaluations() if e.check_name == "continuity")
    assert continuity_.passed and continuity_.partition is None  # off-minute rows are continuous


def test_a_range_failing_on_day_k_keeps_and_records_exactly_the_days_before(sim, make_settings, any_instance):
    instance = any_instance
    settings = make_settings(start="2021-01-01")
    start12, end12 = parse_zone("UTC").day_window_ms(dt.date(2021, 1, 12))
    sim.state.config.failing_windows = [["futures", start12, end12]]  # HTTP 500 until the retries run out
    resources = {**build_resources(settings), EXCHANGE: ExchangeResource.from_settings(settings, max_attempts=2)}
    result = run(settings, instance, FUT, "2021-01-01", "2021-01-20", resources=resources, raise_on_error=False)
    assert not result.success
    in_manifest = {c["partition"] for c in manifest(settings, FUT)["chunks"]}
    assert in_manifest == {f"2021-01-{d:02d}" for d in range(1, 12)}
    assert instance.get_materialized_partitions(klines_key(FUT)) == in_manifest
    events = instance.fetch_materializations(klines_key(FUT), limit=1000).records
    partitions = [e.partition_key for e in events]
    assert sorted(partitions) == sorted(in_manifest)  # each day once, none bare at the end
    assert all("sha256" in e.asset_materialization.metadata for e in events)
    assert result.get_asset_check_evaluations() == []  # every committed day passed: nothing failing to record
    sim.state.config.failing_windows = []
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-20").success  # the rerun completes it
    assert len(instance.get_materialized_partitions(klines_key(FUT))) == 20


def test_days_are_recorded_while_the_run_goes_on(sim, make_settings, any_instance, monkeypatch):
    """A batch commits on time even while the next day is still being fetched: the first days are
    recorded in the instance before the range's last day is even asked for."""
    instance = any_instance
    monkeypatch.setattr(writer, "COMMIT_EVERY_S", 0.2)
    settings = make_settings(start="2021-01-01")
    sim.state.config.latency_ms = 150
    seen_while_running: list[int] = []
    real_fetch = DayStream.fetch_day

    def fetch_day(self, day):
        if day == dt.date(2021, 1, 30):  # the last day: by now earlier batches must be in Dagster
            time.sleep(1.0)
            seen_while_running.append(len(instance.get_materialized_partitions(klines_key(FUT))))
        return real_fetch(self, day)

    monkeypatch.setattr(DayStream, "fetch_day", fetch_day)
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-30").success
    assert seen_while_running and seen_while_running[0] >= 5
    assert len(instance.get_materialized_partitions(klines_key(FUT))) == 30


def test_a_corrupt_complete_chunk_is_fetched_again_on_a_rerun(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-02").success
    entry = manifest(settings, FUT)["chunks"][1]
    flip_byte(store_of(settings), entry)
    before = len(sim_requests(sim.state))
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-02").success
    assert len(sim_requests(sim.state)) > before  # only the corrupt day is asked for again
    assert stored_rows(store_of(settings), entry) == expected_rows(sim.state, FUT, "UTC", dt.date(2021, 1, 2))
    assert manifest(settings, FUT)["chunks"][1]["sha256"] == entry["sha256"]


def test_a_full_disk_fails_clearly_and_tears_nothing(sim, make_settings, instance, monkeypatch):
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-02").success
    good = manifest(settings, FUT)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the half-written temp file of a chunk must go
    result = run(settings, instance, FUT, "2021-01-03", "2021-01-04", raise_on_error=False)
    assert not result.success
    assert "No space left on device" in str(step_failure(result).error)
    assert manifest(settings, FUT)["chunks"] == good["chunks"]  # the dataset is as it was
    chunks_dir = chunk_path(store_of(settings), good["chunks"][0]).parent
    assert sorted(p.name for p in chunks_dir.iterdir()) == sorted(Path(c["file"]).name for c in good["chunks"])


def test_verify_job_fails_on_one_flipped_byte(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-02").success
    job = build_definitions(settings).resolve_job_def("verify_binanceusdm_BTCUSDT")
    clean = job.execute_in_process(instance=instance)
    assert clean.success
    (cover,) = clean.get_asset_check_evaluations()  # the whole dataset's coverage, as after every run
    assert cover.check_name == "coverage" and cover.passed and cover.description == "2021-01-01..2021-01-02: whole"
    flip_byte(store_of(settings), manifest(settings, FUT)["chunks"][1])
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = step_failure(result)
    assert "1 problem(s): 1 corrupt" in failure.error.message
    assert "2021-01-02 corrupt" in failure.user_failure_data.metadata["report"].value
