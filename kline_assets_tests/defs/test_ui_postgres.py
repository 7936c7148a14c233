"""A backfill launched as the UI launches it (the webserver's GraphQL `launchPartitionBackfill`) under
`dagster dev` on a Postgres instance: both markets' `klines_1m` over three closed days, one run whose step
per market goes in a step process of its own, every day exact and recorded with its checks, its
resources' settings read from the variables the UI's resource view names. The SQLite side of the same
path is the browser test."""

import datetime as dt
import json
import os
import time

import dagster as dg
import pytest

from kline_assets.defs.instance import instance_yaml
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import (
    FUT,
    LAUNCH,
    RESOURCE,
    SPOT,
    dagster_dev,
    expected_rows,
    graphql,
    stored_rows,
)

pytestmark = pytest.mark.e2e


def test_a_ui_backfill_of_both_markets_on_postgres(sim, tmp_path, pg_server, monkeypatch):
    db = pg_server.database()
    pg = {"DAGSTER_PG_USERNAME": db["username"], "DAGSTER_PG_PASSWORD": db["password"],
          "DAGSTER_PG_HOST": db["hostname"], "DAGSTER_PG_DB": db["db_name"]}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml("postgres").replace("port: 5432", f"port: {db['port']}")
                                       + "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINE_", "DAGSTER_"))}
    env.update(pg, DAGSTER_HOME=str(home), KLINE_SPOT_URL=sim.url, KLINE_FUTURES_URL=sim.url,
               KLINE_ARCHIVE_URL=sim.url, KLINE_SOURCE="rest", KLINE_DATA_ROOT=str(tmp_path / "data"),
               KLINE_LOG_DIR=str(tmp_path / "logs"), KLINE_STATE_DIR=str(tmp_path / "state"),
               KLINE_START="2021-01-01", KLINE_PAIRS="futures:BTC/USDT,spot:BTC/USDT")
    for name, value in pg.items():
        monkeypatch.setenv(name, value)
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [(today - dt.timedelta(n)).isoformat() for n in (4, 3, 2)]
    keys = [["binanceusdm", "BTCUSDT", "klines_1m"], ["binance", "BTCUSDT", "klines_1m"]]
    with dagster_dev(env) as url:
        # the resource view: the settings a run reads are Dagster config, each naming its variable
        shown = graphql(url, RESOURCE, {"selector": {"repositoryLocationName": "kline_assets",
                                                     "repositoryName": "__repository__", "resourceName": "store"}})
        values = {v["key"]: (v["type"], v["value"])
                  for v in shown["data"]["topLevelResourceDetailsOrError"]["configuredValues"]}
        assert values["data_root"] == ("ENV_VAR", "KLINE_DATA_ROOT"), shown
        assert values["start"] == ("ENV_VAR", "KLINE_START") and values["log_dir"][0] == "ENV_VAR", shown
        answer = graphql(url, LAUNCH, {"params": {"assetSelection": [{"path": k} for k in keys],
                                                  "partitionNames": days, "fromFailure": False}})
        launched = answer["data"]["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", answer
        with dg.DagsterInstance.from_config(str(home)) as instance:
            backfill = dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]})
            deadline = time.monotonic() + 240
            runs = []
            while time.monotonic() < deadline:
                runs = instance.get_runs(backfill)
                if runs and all(r.is_finished for r in runs):
                    break
                time.sleep(1)
            assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS], runs  # one run (single-run policy)
            steps = {e.step_key for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
            assert steps == {"klines_1m_futures", "klines_1m_spot"}
            for spec, key in zip((FUT, SPOT), keys, strict=True):
                store = DatasetStore.open(tmp_path / "data", spec, parse_zone("UTC"), dt.date(2021, 1, 1))
                manifest = json.loads((tmp_path / "data" / store.paths.manifest).read_text())
                # the live sensor (on by default) writes today meanwhile: the backfill's days are what is checked
                assert set(days) <= {c["partition"] for c in manifest["chunks"]}
                assert set(days) <= instance.get_materialized_partitions(dg.AssetKey(key))
                for day in map(dt.date.fromisoformat, days):
                    entry = store.manifest().entry_for(day)
                    assert stored_rows(store, entry) == expected_rows(sim.state, spec, "UTC", day)
                for check in ("continuity", "integrity", "sanity"):
                    history = instance.event_log_storage.get_asset_check_execution_history(
                        dg.AssetCheckKey(dg.AssetKey(key), check), limit=10)
                    # a passing day has no evaluation of its own (the row Dagster planned for it stays
                    # planned); the run's verdict over its days is the check's latest result
                    assert not [h for h in history if h.status.value == "FAILED"], check
                    (verdict,) = [h for h in history if h.partition is None]
                    assert verdict.status.value == "SUCCEEDED", check
                    evaluation = verdict.event.dagster_event.event_specific_data
                    assert evaluation.description == f"{days[0]}..{days[-1]}, this run's {len(days)} day(s): " \
                                                     "all passed", check
