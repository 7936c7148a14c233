"""The Python API as a notebook uses it: windows in the dataset's zone, verified reads, listed chunks only."""

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import kline_assets
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import (
    FUT,
    cli,
    combined_table,
    days_ago,
    env_for,
    expected_rows,
    flip_byte,
    run,
    store_of,
)


def _zurich(make_settings, instance, data_root):
    settings = make_settings(tz="Europe/Zurich", start="2021-03-26", data_root=data_root)
    assert run(settings, instance, FUT, "2021-03-26", "2021-03-29").success
    return settings


@pytest.fixture
def zurich(sim, make_settings, instance):
    """Futures BTC/USDT around the spring DST change in Europe/Zurich (2021-03-28 has 23 hours)."""
    return _zurich(make_settings, instance, None)


@pytest.fixture
def zurich_anywhere(sim, make_settings, instance, data_root):
    """The same, in a folder and on S3: what reads does not depend on where the archive is."""
    return _zurich(make_settings, instance, data_root)


def rows(frame: pd.DataFrame) -> list[list]:
    return [list(r) for r in frame.itertuples(index=False)]


def test_read_klines_windows_across_a_dst_day(sim, zurich_anywhere):
    root = zurich_anywhere.data_root
    day = kline_assets.read_klines("futures", "BTC/USDT", "2021-03-28", "2021-03-29", data_root=root)
    assert len(day) == 1380 and rows(day) == expected_rows(sim.state, FUT, "Europe/Zurich", dt.date(2021, 3, 28))
    same = kline_assets.read_klines("futures", "BTC/USDT", dt.date(2021, 3, 28), dt.date(2021, 3, 29), data_root=root)
    assert same.equals(day)
    # naive date-times are Zurich time; aware ones are what they say; the window is [start, end)
    naive = kline_assets.read_klines(start=dt.datetime(2021, 3, 28, 1, 0), end=dt.datetime(2021, 3, 28, 3, 30),
                                     data_root=root)
    aware = kline_assets.read_klines(start="2021-03-28T00:00:00Z", end="2021-03-28T01:30:00Z", data_root=root)
    assert naive.equals(aware) and len(naive) == 90  # 01:00-03:30 local skips the missing hour 02:00-03:00
    everything = kline_assets.read_klines(data_root=root)
    assert len(everything) == 1440 + 1440 + 1380 + 1440
    assert list(everything.columns)[:2] == ["open_time", "open"] and everything["open_time"].is_monotonic_increasing


def test_days_never_loaded_raise_naming_them_and_the_command_unless_ignored(zurich):
    root = zurich.data_root
    with pytest.raises(kline_assets.ChunkUnavailable) as caught:
        kline_assets.read_klines(start="2021-03-28", end="2021-04-02", data_root=root)
    text = str(caught.value)
    assert "lacks 3 day(s) of the window: 2021-03-30..2021-04-01" in text
    assert "--align-tz Europe/Zurich" in text and "backfill --start 2021-03-30 --end 2021-04-02" in text
    assert "missing='ignore'" in text
    with pytest.raises(kline_assets.ChunkUnavailable, match=r"2021-03-20\.\.2021-03-25;"):  # before its start
        kline_assets.read_klines(start="2021-03-20", end="2021-03-27", data_root=root)
    held = kline_assets.read_klines(start="2021-03-28", end="2021-04-02", data_root=root, missing="ignore")
    assert len(held) == 1380 + 1440
    # open bounds stop at what the dataset holds; a window inside it needs nothing more
    assert len(kline_assets.read_klines(start="2021-03-27", data_root=root)) == 1440 + 1380 + 1440
    with pytest.raises(kline_assets.BadInput, match="missing='sometimes'"):
        kline_assets.read_klines(data_root=root, missing="sometimes")


def test_a_datetime_index_in_the_datasets_zone(zurich):
    frame = kline_assets.read_klines(start="2021-03-28", end="2021-03-29", data_root=zurich.data_root,
                                     datetime_index=True)
    assert frame.index.name == "open_datetime" and str(frame.index.tz) == "Europe/Zurich"
    assert frame.index[0] == pd.Timestamp("2021-03-28 00:00", tz="Europe/Zurich")
    assert frame.index[120] == pd.Timestamp("2021-03-28 03:00", tz="Europe/Zurich")  # the hour DST skips
    assert [int(t.timestamp() * 1000) for t in frame.index] == frame["open_time"].tolist()


def test_bad_windows_and_unknown_datasets_raise_one_clear_error(zurich):
    root = zurich.data_root
    with pytest.raises(kline_assets.BadInput, match="impossible window"):
        kline_assets.read_klines(start="2021-03-28", end="2021-03-27", data_root=root)
    with pytest.raises(kline_assets.BadInput, match="no spot ETH/USDT dataset"):
        kline_assets.read_klines("spot", "ETH/USDT", data_root=root)
    with pytest.raises(kline_assets.BadInput, match="unknown market"):
        kline_assets.load_manifest("options", "BTC/USDT", data_root=root)
    with pytest.raises(kline_assets.BadInput, match="bad time"):
        kline_assets.read_klines(start="yesterday", data_root=root)


def test_a_corrupt_chunk_is_refused_naming_the_day(zurich_anywhere):
    zurich = zurich_anywhere
    entry = kline_assets.load_manifest(data_root=zurich.data_root).entry_for(dt.date(2021, 3, 27))
    flip_byte(store_of(zurich), entry)
    with pytest.raises(kline_assets.ChunkUnavailable, match=r"2021-03-27.*verify --repair"):
        kline_assets.read_klines(data_root=zurich.data_root)
    # a window that does not touch the bad day reads nothing of it
    assert len(kline_assets.read_klines(start="2021-03-28", data_root=zurich.data_root)) == 1380 + 1440
    with pytest.raises(kline_assets.ChunkUnavailable, match=r"2021-03-27"):  # same size, other bytes
        kline_assets.open_dataset(data_root=zurich.data_root)


def test_open_dataset_lists_the_manifests_chunks_only_and_duckdb_reads_it(zurich_anywhere):
    zurich = zurich_anywhere
    store = store_of(zurich)
    first = store.backend.get(store.key(store.manifest().chunks[1]))
    store.backend.put(f"{store.paths.chunks_dir}/chunk_000099_20210703_0123abcd.parquet", first)  # unlisted
    store.backend.put(f"{store.paths.chunks_dir}/.chunk_000005_20210330.parquet.abcd.tmp", b"x")
    dataset = kline_assets.open_dataset(data_root=zurich.data_root)
    assert dataset.count_rows() == 1440 + 1440 + 1380 + 1440
    con = duckdb.connect()
    con.register("klines", dataset)
    (n, first, last), = con.execute("select count(*), min(open_time), max(open_time) from klines").fetchall()
    start, _ = parse_zone("Europe/Zurich").day_window_ms(dt.date(2021, 3, 26))
    _, end = parse_zone("Europe/Zurich").day_window_ms(dt.date(2021, 3, 29))
    assert (n, first, last) == (5700, start, end - 60_000)


def test_build_combined_and_asset_key(zurich):
    combined = kline_assets.build_combined("futures", "BTC/USDT", data_root=zurich.data_root)
    assert combined.rows == 5700 and combined.chunks == 4
    assert combined_table(store_of(zurich), combined).num_rows == 5700
    assert kline_assets.klines_asset_key("futures", "btc/usdt").path == ["binanceusdm", "BTCUSDT", "klines_1m"]


def test_build_definitions_merges_with_a_users_assets(sim, tmp_path, monkeypatch):
    """The README's own code location module: the archive's definitions plus a user's asset on them."""
    import dagster as dg

    for name, value in {"KLINE_DATA_ROOT": str(tmp_path / "data"), "KLINE_LOG_DIR": str(tmp_path / "logs"),
                        "KLINE_SPOT_URL": sim.url, "KLINE_FUTURES_URL": sim.url, "KLINE_COINM_URL": sim.url,
                        "KLINE_ARCHIVE_URL": sim.url,
                        "KLINE_PAIRS": "futures:BTC/USDT"}.items():
        monkeypatch.setenv(name, value)

    @dg.asset(ins={"klines": dg.AssetIn(kline_assets.klines_asset_key("futures", "BTC/USDT"))})
    def mine(klines) -> None: ...

    defs = dg.Definitions.merge(kline_assets.build_definitions(), dg.Definitions(assets=[mine]))
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("mine") in graph.get_all_asset_keys()
    assert kline_assets.klines_asset_key("futures", "BTC/USDT") in graph.get(dg.AssetKey("mine")).parent_keys


def test_the_readmes_examples_run_as_written_on_the_quickstarts_data(sim, tmp_path, monkeypatch):
    """The quickstart's backfill (futures and spot BTC/USDT up to today), then the README's Python block
    as a user pastes it, reading KLINE_DATA_ROOT."""
    env = env_for(sim, tmp_path, KLINE_PAIRS="futures:BTC/USDT,spot:BTC/USDT", KLINE_START=days_ago(8))
    done = cli(env, "backfill", "--all", "--start", days_ago(8))
    assert done.returncode == 0, done.stderr
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    block = section[section.index("```python\n") + 10:section.index("\n```", section.index("```python"))]
    monkeypatch.setenv("KLINE_DATA_ROOT", env["KLINE_DATA_ROOT"])
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(block, "README.md", "exec"), names)  # the README's own example
    assert len(names["df"]) == 7 * 1440 and len(names["day"]) == 1440 and len(names["tail"]) > 60
    assert len(names["partial"]) >= 8 * 1440 and len(names["daily"]) >= 8


def test_the_readmes_funding_aware_frame_runs_as_written(sim, tmp_path, monkeypatch):
    env = env_for(sim, tmp_path, KLINE_SOURCE="auto", KLINE_KINDS="klines+mark+funding", KLINE_START="2024-01-01")
    done = cli(env, "backfill", "--all", "--start", "2024-01-01", "--end", "2024-02-01")
    assert done.returncode == 0, done.stderr
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("A funding-aware frame"):]
    block = section[section.index("```python\n") + 10:section.index("\n```", section.index("```python"))]
    assert len(block.splitlines()) <= 6  # five lines and the import
    monkeypatch.setenv("KLINE_DATA_ROOT", env["KLINE_DATA_ROOT"])
    names: dict = {}
    exec(compile(block, "README.md", "exec"), names)
    bt = names["bt"]
    events = kline_assets.read_funding("futures", "BTC/USDT", "2024-01-01", "2024-02-01")
    assert len(bt) == 31 * 1440 and bt["mark_close"].notna().all() and len(events) == 31 * 3
    paid = bt[bt["funding_paid"]]  # each event once, in the minute after its time (a few ms past the hour)
    assert paid["funding_time"].tolist() == events["funding_time"].tolist()
    assert ((paid["open_time"] - paid["funding_time"]) // 60_000).eq(0).all()
    assert names["pnl_long"].notna().sum() == len(bt) - 1
