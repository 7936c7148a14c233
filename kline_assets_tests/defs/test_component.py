"""`KlineArchive` in a throw-away `dg` project, as a Dagster user adds it: scaffolded, edited, its state
refreshed, listed and materialized with `dg`, two of them side by side under their key prefixes."""

import dataclasses
import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from kline_assets.defs.component import KlineArchive
from kline_assets.defs.names import COMBINE_SENSOR, HOURLY_SENSOR, LIVE_SENSOR
from kline_assets.settings import DatasetSpec
from kline_assets_tests.helpers import BIN, expected_rows, store_of, stored_rows

PYPROJECT = """\
[project]
name = "throwaway"
version = "0.0.1"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "throwaway"
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


MINE = """\
import datetime as dt

import dagster as dg
import pandas as pd

import kline_assets
from kline_assets.defs.partitions import daily_partitions
from kline_assets.timezones import parse_zone


@dg.asset(ins={{"klines": dg.AssetIn(kline_assets.klines_asset_key("futures", "BTC/USDT", key_prefix="zurich"))}},
          partitions_def=daily_partitions(parse_zone("Europe/Zurich"), dt.date(2020, 1, 1)))
def mine(context: dg.AssetExecutionContext, klines: pd.DataFrame) -> dg.MaterializeResult:
    with open("{out}", "w") as f:
        f.write(f"{{context.partition_key}} {{len(klines)}}")
    return dg.MaterializeResult()
"""


def dg_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "DAGSTER_HOME": str(project / "home"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    done = subprocess.run([str(BIN / "dg"), *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def klines_keys(project: Path) -> list[str]:
    listed = json.loads(dg_cli(project, "list", "defs", "--json").stdout)
    return sorted(a["asset_key"] for a in listed["assets"] if a["asset_key"].endswith("klines_1m"))


@pytest.mark.e2e
def test_a_dg_project_scaffolds_refreshes_lists_and_materializes_two_components(sim, tmp_path):
    project = tmp_path / "throwaway"
    (project / "throwaway" / "defs").mkdir(parents=True)
    (project / "home").mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "throwaway" / "__init__.py").write_text("")
    (project / "throwaway" / "defs" / "__init__.py").write_text("")
    (project / "throwaway" / "definitions.py").write_text(DEFINITIONS)

    dg_cli(project, "scaffold", "defs", "kline_assets.KlineArchive", "zurich")
    defs_yaml = project / "throwaway" / "defs" / "zurich" / "defs.yaml"
    scaffolded = yaml.safe_load(defs_yaml.read_text())
    assert scaffolded["type"] == "kline_assets.KlineArchive"
    assert scaffolded["attributes"]["pairs"] == ["futures:BTC/USDT", "spot:BTC/USDT"]  # the defaults, spelled out
    # the user edits it: a selector, a zone, a prefix, the simulator instead of Binance
    urls = {"spot_url": sim.url, "futures_url": sim.url, "archive_url": sim.url}
    defs_yaml.write_text(yaml.safe_dump({"type": "kline_assets.KlineArchive", "attributes": {
        **scaffolded["attributes"], **urls, "pairs": ["futures:BTC/USDT", "futures:*/USDT"],
        "data_root": str(tmp_path / "zurich"), "log_dir": str(tmp_path / "logs"), "align_tz": "Europe/Zurich",
        "source": "rest", "key_prefix": "zurich"}}))
    other = project / "throwaway" / "defs" / "utc"
    other.mkdir()
    (other / "defs.yaml").write_text(yaml.safe_dump({"type": "kline_assets.KlineArchive", "attributes": {
        **urls, "pairs": ["spot:ETH/USDT"], "data_root": str(tmp_path / "utc"), "log_dir": str(tmp_path / "logs"),
        "key_prefix": "utc", "live_sensor": False}}))

    # no state yet: the selector selects nothing, and loading asked nobody
    served = len(sim.state.log)
    assert klines_keys(project) == ["utc/binance/ETHUSDT/klines_1m", "zurich/binanceusdm/BTCUSDT/klines_1m"]
    assert len(sim.state.log) == served
    dg_cli(project, "utils", "refresh-defs-state")
    assert any(r["endpoint"] == "exchangeInfo" for r in sim.state.log[served:])
    keys = klines_keys(project)
    assert "zurich/binanceusdm/ETHUSDT/klines_1m" in keys and "zurich/binanceusdm/SOLUSDT/klines_1m" in keys
    assert "utc/binance/ETHUSDT/klines_1m" in keys and not any(k.startswith("binance") for k in keys)

    # a partition of klines_1m and the user's own asset on it, selected together: one run builds both
    (project / "throwaway" / "defs" / "mine").mkdir()
    (project / "throwaway" / "defs" / "mine" / "assets.py").write_text(MINE.format(out=tmp_path / "mine.txt"))
    dg_cli(project, "launch", "--assets", "zurich/binanceusdm/BTCUSDT/klines_1m,mine", "--partition", "2021-01-01")
    settings = KlineArchive(data_root=str(tmp_path / "zurich"), align_tz="Europe/Zurich").settings()
    entry = store_of(settings).manifest().entry_for(dt.date(2021, 1, 1))
    assert entry.complete and stored_rows(store_of(settings), entry) == expected_rows(
        sim.state, DatasetSpec("futures", "BTC/USDT"), "Europe/Zurich", dt.date(2021, 1, 1))
    assert (tmp_path / "mine.txt").read_text() == "2021-01-01 1440"
    with dg.DagsterInstance.from_config(str(project / "home")) as instance:
        key = dg.AssetKey(["zurich", "binanceusdm", "BTCUSDT", "klines_1m"])
        assert instance.get_materialized_partitions(key) == {"2021-01-01"}


def test_bad_attributes_fail_the_load_with_one_line():
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="KlineArchive: unknown time zone 'Mars/Base'"):
        KlineArchive(align_tz="Mars/Base").settings()
    with pytest.raises(dg.DagsterInvalidDefinitionError, match="KlineArchive: bad key_prefix 'a-b'"):
        KlineArchive(key_prefix="a-b").settings()


def test_loading_the_component_writes_nothing_and_takes_under_a_second(tmp_path):
    began = time.monotonic()
    component = KlineArchive(pairs=["futures:BTC/USDT", "spot:*/USDT"], data_root=str(tmp_path / "data"),
                             log_dir=str(tmp_path / "logs"), spot_url="http://127.0.0.1:9",
                             futures_url="http://127.0.0.1:9", key_prefix="team")
    defs = component.build_defs_from_state(None, None)
    keys = defs.resolve_all_asset_keys()
    assert time.monotonic() - began < 1
    assert dg.AssetKey(["team", "binanceusdm", "BTCUSDT", "klines_1m"]) in keys
    assert set(defs.resources) == {
        "team_store", "team_exchange", "team_chunk_io_manager"}
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()


ATTRIBUTE_VALUES = {  # each attribute, a value other than its default, and the setting it must give
    "data_root": "elsewhere", "log_dir": "elsewhere_logs", "align_tz": "Asia/Tokyo", "start": "2021-02-03",
    "source": "rest", "spot_url": "http://127.0.0.1:1", "futures_url": "http://127.0.0.1:2",
    "archive_url": "http://127.0.0.1:3", "hourly": True, "live_sensor": False, "combine_after_backfill": True,
    "key_prefix": "team",
}


@pytest.mark.parametrize("attribute", sorted(ATTRIBUTE_VALUES))
def test_each_attribute_gives_its_own_setting_and_nothing_else(attribute):
    defaults = KlineArchive().settings()
    given = KlineArchive(**{attribute: ATTRIBUTE_VALUES[attribute]}).settings()
    changed = {f.name: getattr(given, f.name) for f in dataclasses.fields(given)
               if getattr(given, f.name) != getattr(defaults, f.name)}
    assert len(changed) == 1, changed
    (value,) = changed.values()
    assert str(getattr(value, "name", value)) == str(ATTRIBUTE_VALUES[attribute])


def test_hourly_and_combine_after_backfill_each_give_exactly_their_own_definitions():
    def made(**attributes):
        defs = KlineArchive(pairs=["futures:BTC/USDT"], **attributes).build_defs_from_state(None, None)
        hourly = dg.AssetKey(["binanceusdm", "BTCUSDT", "klines_1h"]) in defs.resolve_all_asset_keys()
        return hourly, sorted(s.name for s in defs.sensors or [])

    assert made() == (False, [LIVE_SENSOR])
    assert made(hourly=True) == (True, sorted([HOURLY_SENSOR, LIVE_SENSOR]))
    assert made(combine_after_backfill=True) == (False, sorted([COMBINE_SENSOR, LIVE_SENSOR]))
    assert made(live_sensor=False) == (False, [])
