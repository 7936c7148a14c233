"""The commit protocol: roll-forward after a crash, leftovers cleaned, concurrent writers merged."""

import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from kline_assets.archive.store import DatasetStore, table_to_parquet
from kline_assets.errors import BadInput
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, day_table

UTC = parse_zone("UTC")
START = dt.date(2021, 1, 1)


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


def test_a_corrupt_manifest_is_refused_not_taken_for_no_manifest(tmp_path):
    commit_days(tmp_path, [dt.date(2021, 1, 1)])
    path = DatasetStore(tmp_path, FUT, UTC, START).paths.manifest
    path.write_bytes(b'{"version": 1, "chunks": [')  # torn by hand: the next commit must not start afresh
    with pytest.raises(BadInput, match="not a kline-assets manifest"):
        commit_days(tmp_path, [dt.date(2021, 1, 2)])
    assert path.read_bytes() == b'{"version": 1, "chunks": ['


def test_two_writers_of_the_same_day_leave_one_intact_entry(tmp_path):
    """Two processes extend the same day at once: the manifest keeps the larger coverage, its file
    matches its sha256, and no pending file is left."""
    day = dt.date(2021, 1, 5)
    with mp.get_context("spawn").Pool(2) as pool:
        pool.starmap(_write_day, [(str(tmp_path), day, minutes) for minutes in (300, 900) for _ in range(3)])
    store = DatasetStore(tmp_path, FUT, UTC, START)
    entry = store.manifest().entry_for(day)
    assert entry.rows == 900 and store.entry_intact(entry)
    assert [p.name for p in store.paths.chunks_dir.iterdir()] == [Path(entry.file).name]


def _write_day(root, day, minutes):
    store = DatasetStore(root, FUT, UTC, START)
    start, _ = UTC.day_window_ms(day)
    store.commit([store.stage(day, day_table(day, minutes), [], start + minutes * 60_000)])


def test_a_writer_planned_against_another_start_is_renumbered_or_refused(tmp_path):
    """Two first writers with different starts: the first commit fixes the start; the other's days are
    renumbered against it under the lock, and its days before that start are refused, never stored."""
    early = DatasetStore(tmp_path, FUT, UTC, dt.date(2020, 12, 28))
    late = DatasetStore(tmp_path, FUT, UTC, START)
    days = [START + dt.timedelta(n) for n in range(3)]
    late_staged = [late.stage(d, day_table(d, 60), [], UTC.day_window_ms(d)[1]) for d in days]
    early_days = [dt.date(2020, 12, 28) + dt.timedelta(n) for n in range(7)]
    early_staged = [early.stage(d, day_table(d, 60), [], UTC.day_window_ms(d)[1]) for d in early_days]
    late.commit(late_staged)  # the dataset starts 2021-01-01
    early.commit(early_staged)
    manifest = early.manifest()
    assert manifest.start == "2021-01-01" and sorted(manifest.chunks) == [1, 2, 3]
    assert [manifest.chunks[i].partition for i in (1, 2, 3)] == [d.isoformat() for d in days]
    assert all(early.entry_intact(e) for e in manifest.chunks.values())
    assert early.refused == early_days[:4]
    assert not [p for p in early.paths.chunks_dir.iterdir() if p.name.startswith(".")]

    other = tmp_path / "other"  # the other order: the early start wins, the late writer's days move up
    early, late = DatasetStore(other, FUT, UTC, dt.date(2020, 12, 28)), DatasetStore(other, FUT, UTC, START)
    late_staged = [late.stage(d, day_table(d, 60), [], UTC.day_window_ms(d)[1]) for d in days]
    early.commit([early.stage(early_days[0], day_table(early_days[0], 60), [], UTC.day_window_ms(early_days[0])[1])])
    late.commit(late_staged)
    manifest = late.manifest()
    assert {i: e.partition for i, e in manifest.chunks.items()} == {
        1: "2020-12-28", 5: "2021-01-01", 6: "2021-01-02", 7: "2021-01-03"}
    assert all(late.entry_intact(e) and e.file == late.paths.chunk_relpath(i, dt.date.fromisoformat(e.partition))
               for i, e in manifest.chunks.items())
    assert late.refused == []
