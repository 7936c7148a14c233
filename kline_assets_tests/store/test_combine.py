"""The combined file: the chunks' concatenation, index ranges, name suffixes, refusal of bad chunks."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kline_assets.defs.definitions import build_assets, build_resources
from kline_assets.defs.names import combined_key, klines_key
from kline_assets.errors import ChunkUnavailable
from kline_assets.store.combine import combine
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.schema import SCHEMA
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, combined_table


def _loaded(make_settings, instance, data_root):
    settings = make_settings(start="2021-01-01", data_root=data_root)
    result = dg.materialize(build_assets(settings), resources=build_resources(settings), instance=instance,
                            selection=[klines_key(FUT)],
                            tags={"dagster/asset_partition_range_start": "2021-01-01",
                                  "dagster/asset_partition_range_end": "2021-01-06"})
    assert result.success
    return settings, DatasetStore.open(settings.data_root, FUT, parse_zone("UTC"), dt.date(2021, 1, 1))


@pytest.fixture
def loaded(sim, make_settings, instance):
    """Six days in a folder."""
    return _loaded(make_settings, instance, None)


@pytest.fixture
def loaded_anywhere(sim, make_settings, instance, data_root):
    """Six days in a folder, and on S3."""
    return _loaded(make_settings, instance, data_root)


def test_combined_equals_the_concatenated_chunks(loaded_anywhere):
    _, store = loaded_anywhere
    got = combine(store)
    entries = [store.manifest().chunks[i] for i in range(1, 7)]
    expected = pa.concat_tables([store.read_table(e) for e in entries])
    table = combined_table(store, got)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.equals(expected.replace_schema_metadata(None).cast(table.schema))
    assert (got.rows, got.chunks, got.rebuilt) == (6 * 1440, 6, True)
    key = f"{store.paths.combined_dir}/{got.path.rpartition('/')[2]}"
    assert pq.ParquetFile(pa.BufferReader(store.backend.get(key))).metadata.num_row_groups == 6
    assert not combine(store).rebuilt  # unchanged inputs: nothing rewritten


def test_index_ranges_and_suffixes(loaded):
    _, store = loaded
    part = combine(store, 2, 3, parse_zone("Europe/Zurich").file_suffix())
    assert part.path.endswith("/BTCUSDT_1m_000002-000003_Europe-Zurich.parquet") and part.rows == 2 * 1440
    assert combined_table(store, part).column("open_time")[0].as_py() == store.manifest().chunks[2].first_open_time
    offset = combine(store, tz_suffix=parse_zone("+02:00").file_suffix())
    assert offset.path.endswith("/BTCUSDT_1m_all_UTC+0200.parquet")


def test_a_corrupt_chunk_is_refused(loaded_anywhere):
    _, store = loaded_anywhere
    key = store.key(store.manifest().chunks[4])
    store.backend.put(key, store.backend.get(key)[:-10])
    with pytest.raises(ChunkUnavailable, match="verify --repair"):
        combine(store)
    assert not store.backend.exists(store.paths.combined_file(None))  # no part of it, no upload left open


def test_combined_asset_through_dagster_with_config(loaded, instance):
    settings, _ = loaded
    key = combined_key(FUT)
    result = dg.materialize(build_assets(settings), resources=build_resources(settings), instance=instance,
                            selection=[key], run_config={"ops": {key.to_python_identifier(): {
                                "config": {"from_index": 1, "to_index": 2, "tz": None}}}})
    assert result.success
    md = result.asset_materializations_for_node(key.to_python_identifier())[0].metadata
    assert md["rows"].value == 2 * 1440 and md["chunks"].value == 2


def test_a_one_sided_index_range_never_overwrites_all(loaded_anywhere):
    _, store = loaded_anywhere
    combine(store)
    whole = store.backend.get(store.paths.combined_file(None))
    tail, head = combine(store, from_index=5), combine(store, to_index=2)
    assert tail.path.endswith("/BTCUSDT_1m_000005-000006.parquet") and tail.rows == 2 * 1440
    assert head.path.endswith("/BTCUSDT_1m_000001-000002.parquet") and head.rows == 2 * 1440
    assert store.backend.get(store.paths.combined_file(None)) == whole


def test_a_chunk_rewritten_at_the_same_index_rebuilds_the_combined_file(loaded):
    """Same index, other bytes (today extended, a day repaired): the combined file follows."""
    _, store = loaded
    assert combine(store).rows == 6 * 1440
    day = dt.date(2021, 1, 3)
    _, end = store.zone.day_window_ms(day)
    table = store.read_table(store.manifest().entry_for(day))
    trades = table.column("trades").to_pylist()
    trades[0] += 1
    mended = table.set_column(table.schema.get_field_index("trades"), "trades", pa.array(trades, pa.int64()))
    store.commit([store.stage(day, mended, [], end)])
    again = combine(store)
    assert again.rebuilt and again.rows == 6 * 1440
    assert pq.read_table(again.path).column("trades")[2 * 1440].as_py() == trades[0]
