"""Live updates: the sensor's run requests, and the live loop across minute boundaries and midnight."""

import dataclasses
import datetime as dt
import time
from zoneinfo import ZoneInfo

import dagster as dg

from kline_assets.cli.live import seconds_to_next_boundary
from kline_assets.defs import live
from kline_assets.defs.component import build_definitions
from kline_assets.defs.datasets import resolve_datasets
from kline_assets.defs.live import AFTER_BOUNDARY_S, live_days, live_run_config, live_tags, wait_for_boundary
from kline_assets.defs.names import (
    HOURLY_SENSOR,
    LIVE_SENSOR,
    RANGE_END,
    RANGE_START,
    SOURCE_CLI,
    TAG_DATASET,
    TAG_SOURCE,
    klines_key,
    tagged_datasets,
)
from kline_assets.defs.runs import live_job_def
from kline_assets.defs.sensors import busy_ranges, run_minute
from kline_assets.sim.server import RunningSimulator, SimConfig
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, asset_job, cli, env_for, expected_rows, live_datasets, run, stored_rows

ZURICH = parse_zone("Europe/Zurich")


def sensor_requests(settings, instance):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(LIVE_SENSOR)
    return sensor, sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))


def test_sensor_requests_today_for_each_dataset(sim, make_settings, instance):
    settings = make_settings()
    _, result = sensor_requests(settings, instance)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    (request,) = result.run_requests  # both datasets need today only: one run for both
    assert set(live_datasets(request)) == {"binanceusdm/BTCUSDT", "binance/BTCUSDT"}
    assert request.asset_selection is None  # an op job: no planned events per asset and check (defs.jobs)
    assert request.tags["dagster/asset_partition_range_start"] == today
    assert request.tags["dagster/asset_partition_range_end"] == today
    assert request.run_key.startswith("live:") and request.tags["kline_assets/source"] == "live"


def test_sensor_catches_up_from_the_last_incomplete_day(sim, make_settings, any_instance):
    instance = any_instance
    settings = make_settings(pairs="futures:BTC/USDT")
    today = dt.datetime.now(dt.timezone.utc).date()
    three_ago = (today - dt.timedelta(days=3)).isoformat()
    assert run(settings, instance, FUT, three_ago, three_ago).success
    _, result = sensor_requests(settings, instance)
    (request,) = result.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == (today - dt.timedelta(days=2)).isoformat()


def test_sensor_skips_while_a_run_of_the_dataset_is_in_progress(sim, make_settings, any_instance):
    instance = any_instance
    settings = make_settings(pairs="futures:BTC/USDT")
    defs = build_definitions(settings)
    key = dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"])
    busy = instance.create_run_for_job(asset_job(defs), asset_selection=frozenset({key}),
                                       status=dg.DagsterRunStatus.STARTED)
    _, result = sensor_requests(settings, instance)
    assert not result.run_requests  # and the tick says which run it waits for, as the UI names it
    assert f"1 dataset(s) wait for the run(s) writing the same days to end: {busy.run_id[:8]} ({busy.job_name}, " \
           "any day..any day)" == result.skip_message


def test_the_sensor_requests_once_a_minute(sim, make_settings, instance):
    settings = make_settings(pairs="futures:BTC/USDT")
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(LIVE_SENSOR)
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    first = sensor.evaluate_tick(context)
    minute = int(time.time() // 60)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert first.run_requests[0].run_key in {f"live:{m}:{today}:{today}" for m in (minute - 1, minute, minute + 1)}
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor))
    assert not again.run_requests and "requested already" in again.skip_message


def test_one_live_run_brings_many_datasets_to_the_last_closed_minute(make_settings, instance, monkeypatch):
    with RunningSimulator(SimConfig(many_symbols=10, delisted=[["spot", "C003USDT"]])) as market:
        settings = resolve_datasets(dataclasses.replace(
            make_settings(pairs="futures:*/USDT,spot:*/USDT"), spot_url=market.url, futures_url=market.url))
        assert len(settings.pairs) == 27 and not settings.retired  # C003 has no data: not selected at all
        _, result = sensor_requests(settings, instance)
        (request,) = result.run_requests
        assert len(live_datasets(request)) == 27
        began = time.time()
        done = live_job_def(settings).execute_in_process(run_config=request.run_config, instance=instance,
                                                         tags=request.tags)
        closed = int(began // 60 * 60_000) - 60_000
        assert done.success
        today = dt.datetime.now(dt.timezone.utc).date()
        for spec in settings.pairs:
            store = DatasetStore.open(settings.data_root, spec, parse_zone("UTC"), settings.start)
            entry = store.manifest().entry_for(today)
            assert entry.covered_until_ms > closed, spec
        assert len(done.get_asset_materialization_events()) == 27
        # many datasets: a live day that only grew is recorded in turns, the data is current all the same
        monkeypatch.setattr(live, "RECORDS_PER_MINUTE", 10)  # 27 datasets: each recorded every 3 minutes
        began = time.time()
        again = live_job_def(settings).execute_in_process(run_config=request.run_config, instance=instance,
                                                          tags=request.tags)
        assert again.success
        recorded = {e.asset_key for e in again.get_asset_materialization_events()}
        turns = [{klines_key(s) for s in settings.pairs if live.recording_turn(s.name, m, 3)}
                 for m in (int(began // 60), int(time.time() // 60))]
        assert recorded in turns and 0 < len(recorded) < 27
        assert again.get_asset_check_evaluations() == []  # only a failing day has an evaluation of its own
        closed = int(began // 60 * 60_000) - 60_000
        for spec in settings.pairs:
            assert DatasetStore.open(settings.data_root, spec, parse_zone("UTC"), settings.start).manifest().entry_for(
                today).covered_until_ms > closed, spec


def test_a_live_run_is_requested_ahead_of_its_minute_and_waits_for_it():
    """In a minute's last 15 s the sensor requests the next minute's run (its start-up then overlaps the
    wait), and the run fetches only once the boundary has passed."""
    assert run_minute(600.0) == run_minute(644.9) == 10 and run_minute(645.0) == run_minute(659.9) == 11
    config = live_run_config([FUT], dt.date(2024, 1, 1), dt.date(2024, 1, 1), not_before_ms=int(time.time() * 1000)
                             + 1500)["ops"]["live_update"]["config"]
    began = time.monotonic()
    wait_for_boundary(config["not_before_ms"])
    assert 1.5 + AFTER_BOUNDARY_S - 0.1 < time.monotonic() - began < 1.5 + AFTER_BOUNDARY_S + 1


def test_live_days_and_boundaries():
    assert seconds_to_next_boundary(60_000 * 10 + 59_000) == 1 + 2.0
    assert live_days(None, ZURICH, 1_700_000_000_000, dt.date(2020, 1, 1))[0] == dt.date(2023, 11, 14)


def test_live_loop_across_minutes_and_a_zurich_midnight(sim, tmp_path):
    """The simulator's clock is set just before the last Zurich midnight, then moved a minute at a time."""
    now = dt.datetime.now(ZoneInfo("Europe/Zurich"))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    real_ms = time.time() * 1000
    target = midnight.timestamp() * 1000 - 90_000  # 23:58:30 local on the day before
    start = (midnight.date() - dt.timedelta(2)).isoformat()
    env = env_for(sim, tmp_path, KLINE_ALIGN_TZ="Europe/Zurich", KLINE_START=start)
    store = DatasetStore.open(tmp_path / "data", FUT, ZURICH, midnight.date())
    before, after = midnight.date() - dt.timedelta(1), midnight.date()

    def cycle_at(sim_ms):
        sim.state.config.clock_offset_ms = int(sim_ms - real_ms - (time.time() * 1000 - real_ms))
        done = cli(env, "live", "--cycles", "1")
        assert done.returncode == 0, done.stderr[-2000:]
        return store.manifest(), sim.state.now_ms()

    def closed(day, now_ms):
        return [r for r in expected_rows(sim.state, FUT, "Europe/Zurich", day) if r[6] < now_ms]

    for step in (0, 60_000):
        manifest, now_ms = cycle_at(target + step)
        entry = manifest.entry_for(before)
        assert stored_rows(store, entry) == closed(before, now_ms)
        assert not entry.complete and entry.rows == 1438 + step // 60_000
    manifest, now_ms = cycle_at(target + 120_000)  # 00:00:30: yesterday completes, today starts empty
    done_day = manifest.entry_for(before)
    assert done_day.complete and done_day.rows == 1440
    assert stored_rows(store, done_day) == expected_rows(sim.state, FUT, "Europe/Zurich", before)
    assert manifest.entry_for(after).rows == 0 and not manifest.entry_for(after).complete
    manifest, now_ms = cycle_at(target + 180_000)  # 00:01:30: the first minute of the day has closed
    assert stored_rows(store, manifest.entry_for(after)) == closed(after, now_ms)
    assert manifest.entry_for(after).rows == 1


def test_combine_sensor_follows_backfills_but_not_live_runs(sim, make_settings, instance):
    settings = dataclasses.replace(make_settings(pairs="futures:BTC/USDT"), combine_after_backfill=True)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("combine_after_backfill_sensor")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-01").success
    run_ = instance.get_run_records(limit=1)[0].dagster_run
    success = next(e.dagster_event for e in instance.all_logs(run_.run_id)
                   if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS)
    ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=success,
                                             dagster_instance=instance, dagster_run=run_)
    out = sensor(ctx)
    assert out.asset_selection == [dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m_combined"])]
    live_run = instance.create_run_for_job(defs.resolve_job_def("live_klines"), tags={"kline_assets/source": "live",
                                                                                     TAG_DATASET: FUT.name})
    ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=success,
                                             dagster_instance=instance, dagster_run=live_run)
    assert isinstance(sensor(ctx), dg.SkipReason)
    assert "combine_after_backfill_sensor" not in [s.name for s in build_definitions(make_settings()).sensors]


def test_sensor_skips_a_dataset_that_a_command_line_run_is_writing(sim, make_settings, instance):
    """In-process (CLI) runs record no asset selection: their dataset tag must be enough."""
    settings = make_settings()
    job = build_definitions(settings).resolve_job_def("live_klines")
    instance.create_run_for_job(job, tags={TAG_DATASET: FUT.name, TAG_SOURCE: SOURCE_CLI},
                                status=dg.DagsterRunStatus.STARTED)
    _, result = sensor_requests(settings, instance)
    (request,) = result.run_requests
    assert live_datasets(request) == ["binance/BTCUSDT"]


def test_today_is_never_ahead_of_this_machines_date():
    """An exchange clock a few seconds past local midnight must not ask for tomorrow's partition, which
    Dagster does not have until this machine's clock gets there too."""
    machine_ms = int(time.time() * 1000)
    tomorrow_ms = (machine_ms // 86_400_000 + 1) * 86_400_000 + 3_000
    first, today = live_days(None, parse_zone("UTC"), tomorrow_ms, dt.date(2020, 1, 1))
    assert today == dt.datetime.fromtimestamp(machine_ms / 1000, dt.timezone.utc).date() == first


def test_hourly_follows_each_run_that_loaded_klines(sim, make_settings, instance):
    settings = dataclasses.replace(make_settings(pairs="futures:BTC/USDT"), hourly=True)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(HOURLY_SENSOR)
    assert run(dataclasses.replace(settings, hourly=False), instance, FUT, "2021-01-01", "2021-01-03").success
    run_ = instance.get_run_records(limit=1)[0].dagster_run
    success = next(e.dagster_event for e in instance.all_logs(run_.run_id)
                   if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS)
    ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=success,
                                             dagster_instance=instance, dagster_run=run_)
    (request,) = sensor(ctx)
    assert request.asset_selection == [dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1h"])]
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2021-01-01", "2021-01-03")
    assert HOURLY_SENSOR not in [s.name for s in build_definitions(make_settings()).sensors]


def queued_origin(job_name: str):
    """Where a queued run would be launched from (Dagster requires one for QUEUED). Only this test helper
    reaches into Dagster's internals: no public call makes a queued run without a running daemon."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="kline_assets.definitions"))
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def test_sensor_skips_while_a_partly_overlapping_run_is_queued_or_in_progress(sim, make_settings, instance):
    """Live needs two days ago through today; a run of three days ago through two days ago overlaps on one
    day: while it is queued or running, live leaves the dataset alone; a run of older days does not count."""
    settings = make_settings(pairs="futures:BTC/USDT")
    today = dt.datetime.now(dt.timezone.utc).date()
    ago = {n: (today - dt.timedelta(days=n)).isoformat() for n in range(6)}
    assert run(settings, instance, FUT, ago[3], ago[3]).success
    job = asset_job(build_definitions(settings))
    key = dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1m"])
    older = instance.create_run_for_job(job, asset_selection=frozenset({key}), status=dg.DagsterRunStatus.STARTED,
                                        tags={RANGE_START: ago[5], RANGE_END: ago[3]})
    _, result = sensor_requests(settings, instance)
    assert [r.tags[RANGE_START] for r in result.run_requests] == [ago[2]]
    instance.delete_run(older.run_id)
    for status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED):
        busy = instance.create_run_for_job(job, asset_selection=frozenset({key}), status=status,
                                           tags={RANGE_START: ago[3], RANGE_END: ago[2]},
                                           remote_job_origin=queued_origin(job.name))
        _, result = sensor_requests(settings, instance)
        assert not result.run_requests and f"{busy.run_id[:8]} ({job.name}, {ago[3]}..{ago[2]})" in \
            result.skip_message, status
        instance.delete_run(busy.run_id)


def test_a_run_of_900_datasets_names_them_all_in_tags_postgres_can_store(sim, make_settings, any_instance):
    """Postgres indexes run tags and refuses a value over ~2.7 KB: 900 names (~19 KB) are split over several
    tags, and the sensor reads every one back."""
    settings = make_settings(pairs=",".join(f"futures:C{i:03d}/USDT" for i in range(900)))
    today = dt.datetime.now(dt.timezone.utc).date()
    tags = live_tags(list(settings.pairs), today, today)
    assert len(tags) > 10 and max(map(len, tags.values())) <= 2000
    job = build_definitions(settings).resolve_job_def("live_klines")
    run_ = any_instance.create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.STARTED)
    stored = any_instance.get_run_records(dg.RunsFilter(tags={TAG_SOURCE: "live"}))
    assert [r.dagster_run.run_id for r in stored] == [run_.run_id]
    assert tagged_datasets(stored[0].dagster_run.tags) == [s.name for s in settings.pairs]
    assert len(busy_ranges(any_instance, settings)) == 900


def test_a_live_run_leaves_out_a_dataset_that_stopped_trading_since_it_was_requested(sim, make_settings, instance):
    settings = make_settings(pairs="futures:BTC/USDT")
    job = live_job_def(settings)
    config = {"ops": {"live_update": {"config": {"datasets": [FUT.name, "binanceusdm/GONEUSDT"]}}}}
    assert job.execute_in_process(run_config=config, instance=instance).success
    only_gone = {"ops": {"live_update": {"config": {"datasets": ["binanceusdm/GONEUSDT"]}}}}
    failed = job.execute_in_process(run_config=only_gone, instance=instance, raise_on_error=False)
    assert not failed.success
