"""The commit protocol on both backends (a folder, and S3 through moto's server): chunks put under
versioned names before the manifest's compare-and-swap names them, concurrent writers merged, unlisted
objects removed only after the grace period, readers never misled by a commit in between."""

import datetime as dt
import multiprocessing as mp
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from kline_assets.errors import BadInput
from kline_assets.store.backend import open_root
from kline_assets.store.dataset import DatasetStore
from kline_assets.store.reader import verified_table
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import FUT, day_table

UTC = parse_zone("UTC")
START = dt.date(2021, 1, 1)


def staged_day(store, day, minutes=60):
    start, _ = UTC.day_window_ms(day)
    return store.stage(day, day_table(day, minutes), [], start + minutes * 60_000)


def commit_days(root, days):
    store = DatasetStore.open(root, FUT, UTC, START)
    return store.commit([staged_day(store, d, 1440) for d in days])


def keys(store):
    return sorted(o.key for o in store.backend.list(f"{store.paths.chunks_dir}/"))


def test_put_if_is_a_compare_and_swap(data_root):
    """`If-None-Match: *` for the first manifest, `If-Match` on the version read after: a writer holding an
    old version never overwrites a newer one (moto 5.2.1 answers 412, as S3 does; an upgrade that stops
    doing so fails here)."""
    backend = open_root(data_root)
    assert backend.put_if("a/manifest.json", b"one", None)
    assert not backend.put_if("a/manifest.json", b"two", None)
    data, token = backend.get_versioned("a/manifest.json")
    assert data == b"one" and backend.put_if("a/manifest.json", b"three", token)
    assert not backend.put_if("a/manifest.json", b"four", token)  # stale: another writer's came in between
    assert backend.get("a/manifest.json") == b"three"
    if data_root.startswith("s3://"):
        bucket, _, prefix = data_root[5:].partition("/")
        with pytest.raises(ClientError) as failed:
            backend.client.put_object(Bucket=bucket, Key=f"{prefix}/a/manifest.json", Body=b"x", IfNoneMatch="*")
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_a_listing_reads_every_page(data_root):
    """S3 lists 1,000 keys a page: verify and the grace-period collection must see the 1,001st too."""
    backend = open_root(data_root)
    names = [f"many/chunks/o{i:05d}" for i in range(1001)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: backend.put(name, b"x"), names))
    backend.put("many/other", b"y")
    assert sorted(o.key for o in backend.list("many/chunks/")) == names


class LosesTheFirstSwap:
    """A backend whose first manifest swap loses to another writer's commit, as two machines' can."""

    def __init__(self, backend, other_writer):
        self.backend, self.other_writer, self.lost = backend, other_writer, 0

    def put_if(self, key, data, token):
        if not self.lost:
            self.lost += 1
            self.other_writer()  # commits in between: `token` is now stale
        return self.backend.put_if(key, data, token)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_a_commit_that_lost_the_swap_merges_again_and_names_each_day_once(data_root):
    """What a commit returns is what the run records in Dagster: after a retry, each day once."""
    store = DatasetStore.open(data_root, FUT, UTC, START)
    days = [START + dt.timedelta(n) for n in range(3)]
    staged = [staged_day(store, d, 1440) for d in days]
    store.backend = LosesTheFirstSwap(store.backend, lambda: commit_days(data_root, [START + dt.timedelta(5)]))
    accepted = store.commit(staged)
    assert store.backend.lost == 1
    assert [e.partition for e in accepted] == [d.isoformat() for d in days]
    assert sorted(store.manifest().chunks) == [1, 2, 3, 6]


def test_a_crash_before_the_commit_leaves_only_unlisted_objects(data_root):
    """What kill -9 between putting chunks and the manifest leaves: the last manifest, intact, and objects
    no manifest names. They stay while younger than the grace period (their writer may be alive on another
    machine) and go after it."""
    commit_days(data_root, [START])
    store = DatasetStore.open(data_root, FUT, UTC, START)
    orphans = [staged_day(store, START + dt.timedelta(n)) for n in (1, 2)]  # put, never committed
    manifest = store.manifest()
    assert sorted(manifest.chunks) == [1] and store.entry_intact(manifest.chunks[1])
    assert len(store.unlisted(manifest)) == 2
    assert store.collect() == [] and len(keys(store)) == 3
    removed = store.collect(grace_s=0)
    assert sorted(removed) == sorted(store.key(o.entry) for o in orphans)
    assert keys(store) == [store.key(manifest.chunks[1])]


def test_a_rewritten_day_gets_a_new_object_and_never_overwrites_the_listed_one(data_root):
    store = DatasetStore.open(data_root, FUT, UTC, START)
    day = START + dt.timedelta(2)
    (first,) = store.commit([staged_day(store, day, 60)])
    (second,) = store.commit([staged_day(store, day, 120)])
    assert first.file != second.file and first.file.startswith("chunks/chunk_000003_20210103_")
    assert store.backend.get(store.key(first))  # a reader holding the old manifest still reads it
    assert store.collect(grace_s=0) == [store.key(first)]
    assert keys(store) == [store.key(second)] and store.entry_intact(store.manifest().chunks[3])


def test_a_reader_holding_an_old_entry_reads_the_new_one_once(data_root):
    """A day replaced (and its old object collected) while a reader held the old manifest: the reader looks
    the day up again instead of reporting it missing."""
    store = DatasetStore.open(data_root, FUT, UTC, START)
    (old,) = store.commit([staged_day(store, START, 60)])
    store.commit([staged_day(store, START, 90)])
    store.collect(grace_s=0)
    assert verified_table(store, old).num_rows == 90


def test_an_entry_covering_less_does_not_replace_a_fuller_one(data_root):
    store = DatasetStore.open(data_root, FUT, UTC, START)
    day = dt.date(2021, 1, 2)
    full = staged_day(store, day, 1440)
    partial = staged_day(store, day, 30)
    store.commit([full])
    assert store.commit([partial]) == []
    assert store.manifest().chunks[2].rows == 1440
    store.collect(grace_s=0)
    assert keys(store) == [store.key(full.entry)]


def _writer(root, env, days):
    os.environ.update(env)
    for d in days:
        commit_days(root, [d])


def _aws_env():
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


def test_two_processes_writing_different_days_lose_nothing(data_root):
    a = [dt.date(2021, 1, 1) + dt.timedelta(2 * i) for i in range(12)]
    b = [dt.date(2021, 1, 2) + dt.timedelta(2 * i) for i in range(12)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(data_root, _aws_env(), days)) for days in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = DatasetStore.open(data_root, FUT, UTC, START)
    manifest = store.manifest()
    assert sorted(manifest.chunks) == list(range(1, 25))
    assert all(store.entry_intact(e) for e in manifest.chunks.values())
    assert store.unlisted(manifest) == []


def test_a_corrupt_manifest_is_refused_not_taken_for_no_manifest(data_root):
    commit_days(data_root, [dt.date(2021, 1, 1)])
    store = DatasetStore.open(data_root, FUT, UTC, START)
    store.backend.put(store.paths.manifest, b'{"version": 1, "chunks": [')  # torn by hand
    with pytest.raises(BadInput, match="not a kline-assets manifest"):
        commit_days(data_root, [dt.date(2021, 1, 2)])
    assert store.backend.get(store.paths.manifest) == b'{"version": 1, "chunks": ['


def test_two_writers_of_the_same_day_leave_one_intact_entry(data_root):
    """Processes extend the same day at once: the manifest keeps the larger coverage, and its object
    matches its sha256."""
    day = dt.date(2021, 1, 5)
    with mp.get_context("spawn").Pool(2) as pool:
        pool.starmap(_write_day, [(data_root, _aws_env(), day, minutes) for minutes in (300, 900) for _ in range(3)])
    store = DatasetStore.open(data_root, FUT, UTC, START)
    entry = store.manifest().entry_for(day)
    assert entry.rows == 900 and store.entry_intact(entry)
    store.collect(grace_s=0)
    assert keys(store) == [store.key(entry)]


def _write_day(root, env, day, minutes):
    os.environ.update(env)
    store = DatasetStore.open(root, FUT, UTC, START)
    store.commit([staged_day(store, day, minutes)])


def test_a_writer_planned_against_another_start_is_renumbered_or_refused(data_root):
    """Two first writers with different starts: the first commit fixes the start; the other's days are put
    again under their right names before its commit, and its days before that start are refused."""
    early = DatasetStore.open(data_root, FUT, UTC, dt.date(2020, 12, 28))
    late = DatasetStore.open(data_root, FUT, UTC, START)
    days = [START + dt.timedelta(n) for n in range(3)]
    late_staged = [staged_day(late, d) for d in days]
    early_days = [dt.date(2020, 12, 28) + dt.timedelta(n) for n in range(7)]
    early_staged = [staged_day(early, d) for d in early_days]
    late.commit(late_staged)  # the dataset starts 2021-01-01
    early.commit(early_staged)
    manifest = early.manifest()
    assert manifest.start == "2021-01-01" and sorted(manifest.chunks) == [1, 2, 3]
    assert [manifest.chunks[i].partition for i in (1, 2, 3)] == [d.isoformat() for d in days]
    assert all(early.entry_intact(e) for e in manifest.chunks.values())
    assert early.refused == early_days[:4]

    other = f"{data_root}/other"  # the other order: the early start wins, the late writer's days move up
    early, late = DatasetStore.open(other, FUT, UTC, dt.date(2020, 12, 28)), DatasetStore.open(other, FUT, UTC, START)
    late_staged = [staged_day(late, d) for d in days]
    early.commit([staged_day(early, early_days[0])])
    late.commit(late_staged)
    manifest = late.manifest()
    assert {i: e.partition for i, e in manifest.chunks.items()} == {
        1: "2020-12-28", 5: "2021-01-01", 6: "2021-01-02", 7: "2021-01-03"}
    assert all(late.entry_intact(e) and e.file == late.paths.chunk_relpath(i, dt.date.fromisoformat(e.partition),
                                                                          e.sha256)
               for i, e in manifest.chunks.items())
    assert late.refused == []


def test_a_streamed_object_appears_whole_or_not_at_all(data_root):
    """What `combine` streams into: on S3 a multipart upload, part by part (here 20 MiB: three parts); an
    error in the middle leaves no object and, on S3, no upload left open."""
    backend = open_root(data_root)
    blob = os.urandom(20 << 20)
    with backend.writer("x/combined.parquet") as fh:
        for at in range(0, len(blob), 1 << 20):
            fh.write(blob[at:at + (1 << 20)])
    assert backend.get("x/combined.parquet") == blob
    with pytest.raises(RuntimeError), backend.writer("x/torn.parquet") as fh:
        fh.write(blob)
        raise RuntimeError("the chunk after did not verify")
    assert not backend.exists("x/torn.parquet")
    assert [o.key for o in backend.list("x/")] == ["x/combined.parquet"]
    if data_root.startswith("s3://"):
        bucket = data_root[5:].partition("/")[0]
        assert backend.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
