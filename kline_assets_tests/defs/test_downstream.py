"""klines_1m as an input: one partition, a range (dict), pandas and Arrow, a corrupt chunk refused, and
the shipped klines_1h example equal to a pandas resample of the same rows.

No `from __future__ import annotations`: Dagster reads the input annotations at run time.
"""

import datetime as dt
import io
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

import kline_assets
from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.names import hourly_key, klines_key, range_tags
from kline_assets.defs.partitions import daily_partitions
from kline_assets.store.backend import open_root
from kline_assets.store.paths import hourly_file
from kline_assets.store.schema import COLUMN_NAMES
from kline_assets_tests.helpers import FUT, cli, env_for, expected_rows, flip_byte, run, step_failure, store_of

SEEN: dict = {}


def downstream(settings, annotation):
    partitions = daily_partitions(settings.align_tz, settings.start)

    @dg.asset(ins={"klines": dg.AssetIn(klines_key(FUT))}, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def pandas_user(klines: pd.DataFrame) -> None:
        SEEN["value"] = klines

    @dg.asset(ins={"klines": dg.AssetIn(klines_key(FUT))}, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def arrow_user(klines: pa.Table) -> None:
        SEEN["value"] = klines

    @dg.asset(ins={"klines": dg.AssetIn(klines_key(FUT))}, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def range_user(klines: dict) -> None:
        SEEN["value"] = klines

    @dg.asset(ins={"klines": dg.AssetIn(klines_key(FUT))}, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def arrow_range_user(klines: dict[str, pa.Table]) -> None:
        SEEN["value"] = klines

    return {"pandas": pandas_user, "arrow": arrow_user, "range": range_user, "arrow_range": arrow_range_user}[
        annotation]


def materialize_downstream(settings, instance, asset, first, last, raise_on_error=True):
    SEEN.clear()
    return dg.materialize([asset, *build_assets(settings)], resources=build_resources(settings), instance=instance,
                          selection=[asset.key], tags=range_tags(first, last), raise_on_error=raise_on_error)


@pytest.fixture
def loaded(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    assert run(settings, instance, FUT, "2021-01-01", "2021-01-03").success
    return settings


def test_one_partition_as_pandas_and_as_arrow(sim, loaded, instance):
    materialize_downstream(loaded, instance, downstream(loaded, "pandas"), "2021-01-02", "2021-01-02")
    frame = SEEN["value"]
    assert isinstance(frame, pd.DataFrame) and frame.columns.tolist() == COLUMN_NAMES
    assert [list(r) for r in frame.itertuples(index=False)] == expected_rows(sim.state, FUT, "UTC", dt.date(2021, 1, 2))
    materialize_downstream(loaded, instance, downstream(loaded, "arrow"), "2021-01-02", "2021-01-02")
    assert isinstance(SEEN["value"], pa.Table) and SEEN["value"].num_rows == 1440


def test_a_range_gets_a_dict_per_partition(loaded, instance):
    materialize_downstream(loaded, instance, downstream(loaded, "range"), "2021-01-01", "2021-01-03")
    assert sorted(SEEN["value"]) == ["2021-01-01", "2021-01-02", "2021-01-03"]
    assert all(isinstance(f, pd.DataFrame) and len(f) == 1440 for f in SEEN["value"].values())
    materialize_downstream(loaded, instance, downstream(loaded, "arrow_range"), "2021-01-01", "2021-01-02")
    assert sorted(SEEN["value"]) == ["2021-01-01", "2021-01-02"]
    assert all(isinstance(t, pa.Table) and t.num_rows == 1440 for t in SEEN["value"].values())


def test_a_corrupt_chunk_or_a_missing_day_fails_the_step_with_what_to_do(loaded, instance):
    store = store_of(loaded)
    flip_byte(store, store.manifest().entry_for(dt.date(2021, 1, 2)))
    result = materialize_downstream(loaded, instance, downstream(loaded, "pandas"), "2021-01-02", "2021-01-02",
                                    raise_on_error=False)
    error = str(step_failure(result).error)
    assert "2021-01-02" in error and "verify --repair" in error
    result = materialize_downstream(loaded, instance, downstream(loaded, "pandas"), "2021-01-05", "2021-01-05",
                                    raise_on_error=False)
    assert "no chunk for 2021-01-05" in str(step_failure(result).error)


def resampled(frame: pd.DataFrame) -> pd.DataFrame:
    """What a pandas user writes by hand for UTC days: resample to hours, drop hours without klines."""
    indexed = frame.set_index(pd.to_datetime(frame["open_time"], unit="ms"))
    bars = indexed.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                       "volume": "sum", "quote_volume": "sum", "trades": "sum",
                                       "taker_base_volume": "sum", "taker_quote_volume": "sum",
                                       "open_time": "first"}).dropna(subset=["open"])
    bars["open_time"] = (bars.index - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
    return bars.reset_index(drop=True)


def test_klines_1h_equals_a_pandas_resample(sim, make_settings, instance, data_root):
    """Also on S3: the downstream asset reads through the IO manager and writes through the backend."""
    settings = make_settings(start="2020-02-18", pairs="spot:BTC/USDT", data_root=data_root)
    settings = replace(settings, hourly=True)
    assert run(settings, instance, settings.pairs[0], "2020-02-18", "2020-02-20").success
    result = dg.materialize(build_assets(settings), resources=build_resources(settings), instance=instance,
                            selection=[hourly_key(settings.pairs[0])], tags=range_tags("2020-02-18", "2020-02-20"))
    assert result.success
    backend = open_root(settings.data_root)
    bars = {day: pd.read_parquet(io.BytesIO(backend.get(hourly_file(settings.pairs[0], day))))
            for day in ("2020-02-18", "2020-02-19", "2020-02-20")}
    recorded = {m.partition: m.metadata["bars"].value for m in result.asset_materializations_for_node(
        hourly_key(settings.pairs[0]).to_python_identifier())}
    assert recorded == {day: len(frame) for day, frame in bars.items()}
    for day, got in bars.items():
        minutes = kline_assets.read_klines("spot", "BTC/USDT", day, dt.date.fromisoformat(day) + dt.timedelta(1),
                                           data_root=settings.data_root)
        want = resampled(minutes)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want[got.columns], check_dtype=False)
    assert len(bars["2020-02-19"]) == 24 - 5  # the exchange's gap 11:35-17:30 leaves five hours without a kline


def test_klines_1m_and_a_downstream_asset_in_one_run(sim, make_settings, instance):
    """What a user clicks in the UI: klines_1m and their own asset selected together. Both run; the
    downstream one sees the days just written; each day is recorded with its chunk's metadata; the run's
    log has no "did not yield or return expected outputs" line and each check has the run's verdict."""
    settings = make_settings(start="2021-01-01")
    mine = downstream(settings, "range")
    SEEN.clear()
    defs = dg.Definitions(assets=[mine, *build_assets(settings)], resources=build_resources(settings),
                          jobs=[dg.define_asset_job("everything")])
    # as the UI, `dg launch` and `dagster asset materialize` start it: the run records its asset selection
    result = defs.resolve_job_def("everything").execute_in_process(
        instance=instance, asset_selection=[mine.key, klines_key(FUT)], tags=range_tags("2021-01-01", "2021-01-03"))
    assert result.success
    assert sorted(SEEN["value"]) == ["2021-01-01", "2021-01-02", "2021-01-03"]
    assert [list(r) for r in SEEN["value"]["2021-01-02"].itertuples(index=False)] == expected_rows(
        sim.state, FUT, "UTC", dt.date(2021, 1, 2))
    per_day = [m for m in result.asset_materializations_for_node("klines_1m_futures") if "sha256" in m.metadata]
    assert sorted(m.partition for m in per_day) == ["2021-01-01", "2021-01-02", "2021-01-03"]
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert not any("did not yield or return expected outputs" in text for text in logs)
    verdicts = [e for e in result.get_asset_check_evaluations() if e.partition is None]
    assert sorted(e.check_name for e in verdicts) == ["continuity", "coverage", "integrity", "sanity"]
    assert all(e.passed and e.metadata["days"].value == 3 for e in verdicts if e.check_name != "coverage")


@pytest.mark.parametrize("how", ["materialize", "execute_in_process", "job"])
def test_a_downstream_asset_runs_in_the_same_run_however_the_run_is_started(sim, make_settings, instance, how):
    """As Dagster's docs test assets: `dg.materialize(..., selection=[klines, features])` (the run records no
    asset selection, only its steps), a job's `execute_in_process`, and a job of both assets."""
    settings = make_settings(start="2021-01-01")
    features = downstream(settings, "pandas")
    SEEN.clear()
    assets, resources = [features, *build_assets(settings)], build_resources(settings)
    if how == "materialize":
        result = dg.materialize(assets, partition_key="2021-01-02", selection=[klines_key(FUT), features.key],
                                resources=resources, instance=instance)
    else:
        selection = [klines_key(FUT), features.key] if how == "job" else None
        defs = dg.Definitions(assets=assets, resources=resources, jobs=[dg.define_asset_job("both", selection)])
        kwargs = {} if how == "job" else {"asset_selection": [klines_key(FUT), features.key]}
        job = defs.resolve_job_def("both")
        result = job.execute_in_process(instance=instance, partition_key="2021-01-02", **kwargs)
    assert result.success
    assert [list(r) for r in SEEN["value"].itertuples(index=False)] == expected_rows(
        sim.state, FUT, "UTC", dt.date(2021, 1, 2))
    assert instance.get_materialized_partitions(features.key) == {"2021-01-02"}


def test_a_klines_1m_run_alone_says_nothing_of_missing_outputs(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01")
    result = run(settings, instance, FUT, "2021-01-01", "2021-01-02")
    assert result.success
    assert not any("did not yield or return expected outputs" in e.user_message
                   for e in instance.all_logs(result.run_id))
    assert len([m for m in result.asset_materializations_for_node("klines_1m_futures")]) == 2  # once per day


def test_the_readmes_own_module_runs_an_asset_of_several_kinds(sim, tmp_path, monkeypatch):
    """The README's code location module as written: its asset reading the trade klines and the funding
    events of a day, loaded by the chunk IO manager, in a run of that asset alone."""
    env = env_for(sim, tmp_path, KLINE_KINDS="klines+funding", KLINE_START="2021-06-01")
    assert cli(env, "backfill", "--start", "2021-06-01", "--end", "2021-06-03").returncode == 0
    assert cli(env, "--kind", "funding", "backfill", "--start", "2021-06-01", "--end", "2021-06-03").returncode == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("### Your own assets on the archive"):]
    block = section[section.index("```python\n") + 10:section.index("\n```", section.index("```python"))]
    module: dict = {}
    exec(compile(block, "README.md", "exec"), module)
    defs = module["defs"]()
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, partition_key="2021-06-02",
                                        asset_selection=[dg.AssetKey("btc_funding_paid")])
    assert result.success
    (paid,) = result.get_asset_materialization_events()
    funding = kline_assets.read_funding("futures", "BTC/USDT", "2021-06-02", "2021-06-03",
                                        data_root=env["KLINE_DATA_ROOT"])
    klines = kline_assets.read_klines("futures", "BTC/USDT", "2021-06-02", "2021-06-03",
                                      data_root=env["KLINE_DATA_ROOT"]).set_index("open_time")
    want = sum(r.funding_rate * klines.loc[r.funding_time // 60_000 * 60_000, "close"] for r in funding.itertuples())
    assert paid.materialization.metadata["paid"].value == pytest.approx(want)
