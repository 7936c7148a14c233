"""The dagster.yaml files we recommend (`kline-assets instance-config`) and ship (`deploy/dagster.yaml`) load
as Dagster instances and record a run, SQLite and Postgres alike; and the command line never writes one.

No `from __future__ import annotations`: Dagster reads the context annotation at definition time.
"""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from kline_assets.defs.instance import instance_yaml
from kline_assets_tests.helpers import REPO, cli, env_for

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")


@dg.asset(partitions_def=DAYS, check_specs=[dg.AssetCheckSpec("ok", asset="tiny")],
          backfill_policy=dg.BackfillPolicy.single_run(), dagster_type=dg.Nothing)
def tiny(context: dg.AssetExecutionContext):
    yield dg.Output(None)
    for key in context.partition_keys:
        yield dg.AssetCheckEvaluation(asset_key=dg.AssetKey("tiny"), check_name="ok", passed=True, partition=key)
    yield dg.Output(None, output_name="tiny_ok")


def records_a_run(home: Path, text: str) -> None:
    (home / "dagster.yaml").write_text(text)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([tiny], instance=instance, tags={
            "dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-03"})
        assert result.success
        assert instance.get_materialized_partitions(dg.AssetKey("tiny")) == {"2024-01-01", "2024-01-02", "2024-01-03"}
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def pg_env(monkeypatch, db: dict) -> None:
    monkeypatch.setenv("DAGSTER_PG_USERNAME", db["username"])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", db["password"])
    monkeypatch.setenv("DAGSTER_PG_HOST", db["hostname"])
    monkeypatch.setenv("DAGSTER_PG_DB", db["db_name"])


def test_the_recommended_sqlite_instance_records_a_run(home):
    records_a_run(home, instance_yaml("sqlite"))


def test_the_recommended_postgres_instance_records_a_run(home, pg_server, monkeypatch):
    db = pg_server.database()
    pg_env(monkeypatch, db)
    text = instance_yaml("postgres").replace("port: 5432", f"port: {db['port']}")
    records_a_run(home, text)


def test_the_deployment_example_instance_loads_against_postgres(home, pg_server, monkeypatch):
    """deploy/dagster.yaml is what docker-compose mounts; Docker cannot run here, so it is loaded here."""
    db = pg_server.database()
    pg_env(monkeypatch, db)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(db["port"]))
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["port"] == {"env": "DAGSTER_PG_PORT"}
    records_a_run(home, (REPO / "deploy" / "dagster.yaml").read_text())


@pytest.mark.e2e
def test_the_command_line_never_writes_a_dagster_yaml(sim, tmp_path):
    env = env_for(sim, tmp_path)
    out = cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02")
    assert out.returncode == 0, out.stderr
    assert not (Path(env["DAGSTER_HOME"]) / "dagster.yaml").exists()
    printed = cli(env, "instance-config", "--storage", "postgres")
    assert printed.returncode == 0 and "postgres_db" in printed.stdout
    assert not (Path(env["DAGSTER_HOME"]) / "dagster.yaml").exists()
