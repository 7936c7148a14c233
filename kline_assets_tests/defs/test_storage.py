"""The event-log storage written into fresh DAGSTER_HOMEs: same files as Dagster's, readable by the
stock class, bounded open files, and a user's own dagster.yaml is never touched.

No `from __future__ import annotations`: Dagster reads the context annotation at definition time.
"""

import dagster as dg
import pytest

from kline_assets.defs.runs import dagster_instance, ensure_instance_yaml
from kline_assets.defs.storage import HEADER, INSTANCE_YAML, MAX_OPEN_SHARDS, PooledSqliteEventLogStorage

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")


@dg.asset(partitions_def=DAYS, check_specs=[dg.AssetCheckSpec("ok", asset="tiny")],
          backfill_policy=dg.BackfillPolicy.single_run(), dagster_type=dg.Nothing)
def tiny(context: dg.AssetExecutionContext):
    yield dg.Output(None)
    for key in context.partition_keys:
        yield dg.AssetCheckEvaluation(asset_key=dg.AssetKey("tiny"), check_name="ok", passed=True, partition=key)
    yield dg.Output(None, output_name="tiny_ok")


def test_yaml_written_when_missing_updated_when_ours_and_kept_when_the_users(tmp_path):
    path = tmp_path / "dagster.yaml"
    ensure_instance_yaml(tmp_path)
    assert "KlineSqliteStorage" in path.read_text()
    path.write_text(HEADER + " an older version\nstorage:\n  custom:\n    module: kline_assets.instance_storage\n")
    ensure_instance_yaml(tmp_path)  # ours, from before the package was laid out in folders: brought up to date
    assert path.read_text() == INSTANCE_YAML
    path.write_text("")  # the file's own advice: empty means Dagster's stock storage
    ensure_instance_yaml(tmp_path)
    assert path.read_text() == ""
    path.write_text("telemetry:\n  enabled: false\n")
    ensure_instance_yaml(tmp_path)
    assert path.read_text() == "telemetry:\n  enabled: false\n"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run_tiny(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize([tiny], instance=instance, tags={"dagster/asset_partition_range_start": "2024-01-01",
                                                           "dagster/asset_partition_range_end": "2024-01-03"})


def test_runs_recorded_through_it_read_back_with_dagsters_stock_class(home):
    instance = dagster_instance()
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    for _ in range(MAX_OPEN_SHARDS + 3):
        assert run_tiny(instance).success
    assert len(instance.event_log_storage._engines) <= MAX_OPEN_SHARDS  # open files stay bounded
    instance.dispose()

    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # Dagster's own storage now
    stock = dg.DagsterInstance.get()
    assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
    records = stock.fetch_materializations(dg.AssetKey("tiny"), limit=100).records
    assert len(records) == 3 * (MAX_OPEN_SHARDS + 3)
    assert {r.partition_key for r in records} == {"2024-01-01", "2024-01-02", "2024-01-03"}
    checks = stock.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("tiny"), "ok"), limit=100)
    assert len(checks) == 3 * (MAX_OPEN_SHARDS + 3)
    assert run_tiny(stock).success  # and back: both classes on one home
    stock.dispose()


def test_every_event_log_connection_uses_the_write_ahead_log_with_normal_sync(home):
    instance = dagster_instance()
    result = run_tiny(instance)
    storage = instance.event_log_storage
    for shard in ("index", result.run_id):
        with storage._connect(shard) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    instance.dispose()
