"""The commit protocol: roll-forward after a crash, leftovers cleaned, concurrent writers merged."""

import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os

from kline_assets.archive.schema import rows_to_table
from kline_assets.archive.store import DatasetStore, table_to_parquet
from kline_assets.sim.server import kline_row
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT

UTC = parse_zone("UTC")
START = dt.date(2021, 1, 1)


def day_table(day, minutes=1440):
    start, _ = UTC.day_window_ms(day)
    return rows_to_table([kline_row("futures", "BTCUSDT", start + i * 60_000) for i in range(minutes)])


def commit_days(root, days):
    store = DatasetStore(root, FUT, UTC, START)
    staged = [store.stage(d, day_table(d, 60), [], UTC.day_window_ms(d)[1]) for d in days]
    return store.commit(staged)


def test_crash_between_manifest_and_rename_rolls_forward(tmp_path):
    store = DatasetStore(tmp_path, FUT, UTC, START)
    day = dt.date(2021, 1, 3)
    commit_days(tmp_path, [day])
    entry = store.manifest().chunks[3]
    final = store.paths.resolve(entry.file)
    # what a kill -9 right after the manifest commit leaves: the new bytes still pending, old bytes in place
    new_bytes = table_to_parquet(day_table(day, 120))
    sha = hashlib.sha256(new_bytes).hexdigest()
    pending = final.parent / f".{final.name}.{sha[:16]}.999999.pending"
    pending.write_bytes(new_bytes)
    doc = json.loads(store.paths.manifest.read_text())
    doc["chunks"][0].update(sha256=sha, bytes=len(new_bytes), rows=120)
    store.paths.manifest.write_text(json.dumps(doc))
    assert not store.entry_intact(store.manifest().chunks[3])
    store.recover()
    assert store.entry_intact(store.manifest().chunks[3]) and not pending.exists()


def test_leftovers_of_dead_writers_are_cleaned_but_not_live_ones(tmp_path):
    commit_days(tmp_path, [dt.date(2021, 1, 1)])
    store = DatasetStore(tmp_path, FUT, UTC, START)
    dead = store.paths.chunks_dir / ".chunk_000002_20210102.parquet.0123456789abcdef.999999.pending"
    live = store.paths.chunks_dir / f".chunk_000002_20210102.parquet.0123456789abcdef.{os.getppid()}.pending"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    store.recover()
    assert not dead.exists() and live.exists()


def test_an_entry_covering_less_does_not_replace_a_fuller_one(tmp_path):
    store = DatasetStore(tmp_path, FUT, UTC, START)
    day = dt.date(2021, 1, 2)
    start, end = UTC.day_window_ms(day)
    full = store.stage(day, day_table(day), [], end)
    partial = store.stage(day, day_table(day, 30), [], start + 30 * 60_000)
    store.commit([full])
    assert store.commit([partial]) == []
    assert store.manifest().chunks[2].rows == 1440 and not partial.pending.exists()


def _writer(root, days):
    for d in days:
        commit_days(root, [d])


def test_two_processes_writing_different_days_lose_nothing(tmp_path):
    a = [dt.date(2021, 1, 1) + dt.timedelta(2 * i) for i in range(15)]
    b = [dt.date(2021, 1, 2) + dt.timedelta(2 * i) for i in range(15)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), days)) for days in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = DatasetStore(tmp_path, FUT, UTC, START)
    chunks = store.manifest().chunks
    assert sorted(chunks) == list(range(1, 31))
    assert all(store.entry_intact(e) for e in chunks.values())
    assert not [p for p in store.paths.chunks_dir.iterdir() if p.name.startswith(".")]
