"""Closed days from the public archive: verified against the CHECKSUM, the same rows as REST, and REST
for any day the archive cannot give (404, mismatch, damaged zip), never half a day from each source."""

import contextlib
import datetime as dt
import hashlib
import logging

import pytest

from kline_assets.binance.archive import ArchiveClient, ArchiveUnusable, parse_zip
from kline_assets.errors import ExchangeTransient
from kline_assets.sim.archive import answer
from kline_assets_tests.helpers import (
    FUT,
    SPOT,
    expected_rows,
    manifest,
    run,
    sim_requests,
    step_failure,
    store_of,
    stored_rows,
)


def archive_requests(sim):
    with sim.state.lock:
        return [r for r in sim.state.log if r["market"] == "archive"]


def stored(settings, spec, day):
    entry = next(c for c in manifest(settings, spec)["chunks"] if c["partition"] == day)
    return entry, stored_rows(store_of(settings, spec), entry)


@pytest.mark.parametrize(("spec", "days"), [
    (FUT, ("2021-06-01", "2021-06-02")),  # futures files without a header line
    (FUT, ("2023-06-01", "2023-06-02")),  # with a header line
    (SPOT, ("2020-02-19", "2020-02-19")),  # spot, with the exchange's 11:35-17:30 gap and 2020 number formats
    (SPOT, ("2025-03-01", "2025-03-02")),  # spot in microseconds
])
def test_archive_days_equal_rest_row_by_row_and_say_their_source(sim, make_settings, instance, spec, days):
    settings = make_settings(start="2020-01-01", source="auto")
    assert run(settings, instance, spec, *days).success
    assert not sim_requests(sim.state)  # no kline from REST
    first = dt.date.fromisoformat(days[0])
    for n in range((dt.date.fromisoformat(days[1]) - first).days + 1):
        day = first + dt.timedelta(n)
        entry, rows = stored(settings, spec, day.isoformat())
        assert rows == expected_rows(sim.state, spec, "UTC", day)
        _, zipped = answer(sim.state, ArchiveClient(spec.market, sim.url).url(spec.symbol, day)[len(sim.url):])
        assert entry["source"] == "archive" and entry["source_sha256"] == hashlib.sha256(zipped).hexdigest()
        assert entry["complete"]
    if days[0] == "2020-02-19":
        assert entry["exchange_gaps"] == [[1582112100000, 1582133400000]]  # recorded as REST records it


def test_a_zurich_dst_day_is_cut_from_the_two_utc_files_covering_it(sim, make_settings, instance):
    settings = make_settings(tz="Europe/Zurich", start="2021-01-01", source="auto")
    assert run(settings, instance, FUT, "2021-03-28", "2021-03-28").success
    entry, rows = stored(settings, FUT, "2021-03-28")
    assert entry["rows"] == 1380 and rows == expected_rows(sim.state, FUT, "Europe/Zurich", dt.date(2021, 3, 28))
    assert len(entry["source_sha256"].split(",")) == 2 and not sim_requests(sim.state)


@pytest.mark.parametrize("fault", ["archive_bad_checksum", "archive_missing", "archive_truncated"])
def test_a_day_the_archive_cannot_give_comes_whole_from_rest(sim, make_settings, instance, fault, caplog):
    caplog.set_level(logging.INFO, logger="kline_assets")
    settings = make_settings(start="2021-01-01", source="auto")
    setattr(sim.state.config, fault, ["2021-06-02"])
    assert run(settings, instance, FUT, "2021-06-01", "2021-06-03").success
    sources = {c["partition"]: c["source"] for c in manifest(settings, FUT)["chunks"]}
    assert sources == {"2021-06-01": "archive", "2021-06-02": "rest", "2021-06-03": "archive"}
    for day in ("2021-06-01", "2021-06-02", "2021-06-03"):
        assert stored(settings, FUT, day)[1] == expected_rows(sim.state, FUT, "UTC", dt.date.fromisoformat(day))
    assert "2021-06-02 from REST" in caplog.text


def test_recent_days_and_source_rest_ask_the_archive_nothing(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01", source="rest")
    assert run(settings, instance, FUT, "2021-06-01", "2021-06-02").success
    assert not archive_requests(sim) and len(sim_requests(sim.state)) == 2 * 3
    yesterday = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).date().isoformat()
    settings = make_settings(start="2021-01-01", source="auto")
    assert run(settings, instance, SPOT, yesterday, yesterday).success
    assert not archive_requests(sim)


def test_archive_only_fails_clearly_for_a_day_it_does_not_have(sim, make_settings, instance):
    settings = make_settings(start="2021-01-01", source="archive")
    sim.state.config.archive_missing = ["2021-06-02"]
    result = run(settings, instance, FUT, "2021-06-01", "2021-06-03", raise_on_error=False)
    assert not result.success
    error = str(step_failure(result).error)
    assert "2021-06-02" in error and "source archive" in error
    assert [c["partition"] for c in manifest(settings, FUT)["chunks"]] == ["2021-06-01"]


def test_parse_zip_refuses_rows_outside_the_day_and_lines_that_do_not_parse(sim):
    _, zipped = answer(sim.state, "/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2021-06-01.zip")
    with pytest.raises(ArchiveUnusable, match="outside its UTC day"):
        parse_zip(zipped, dt.date(2021, 6, 2), "x.zip")
    with pytest.raises(ArchiveUnusable, match="damaged"):
        parse_zip(zipped[:100], dt.date(2021, 6, 1), "x.zip")
    assert len(parse_zip(zipped, dt.date(2021, 6, 1), "x.zip")) == 1440


def test_an_archive_429_is_waited_out_and_the_day_still_comes_from_the_archive(sim, make_settings, instance,
                                                                                caplog):
    """A CDN under load answers 429 (or 503 SlowDown) for a while: asked again, never taken for "not in
    the archive"."""
    caplog.set_level(logging.WARNING, logger="kline_assets")
    settings = make_settings(start="2021-01-01", source="auto")
    sim.state.config.archive_throttled = ["2021-06-02"]
    assert run(settings, instance, FUT, "2021-06-01", "2021-06-03").success
    assert {c["source"] for c in manifest(settings, FUT)["chunks"]} == {"archive"}
    assert "archive: HTTP 429 on " in caplog.text
    assert [r["status"] for r in archive_requests(sim) if r["endpoint"].endswith("2021-06-02.zip")] == [429, 200]
    assert stored(settings, FUT, "2021-06-02")[1] == expected_rows(sim.state, FUT, "UTC", dt.date(2021, 6, 2))


def test_only_failures_in_a_row_give_the_archive_up(sim):
    """The archive is given up for the run after `UNREACHABLE_AFTER` refused connections in a row, not
    after as many spread over a run that is otherwise served: each served answer starts the count again."""
    client = ArchiveClient("futures", sim.url, max_attempts=1)
    served, refused = sim.url, "http://127.0.0.1:9"  # nothing listens on port 9: connection refused
    for n in range(6):
        client.origin = refused if n % 2 == 0 else served
        day = dt.date(2021, 6, 1) + dt.timedelta(n)
        if client.origin == refused:  # the zip and its CHECKSUM: two refusals, one short of giving up
            with pytest.raises(ExchangeTransient):
                client.day("BTCUSDT", day)
        else:
            assert client.day("BTCUSDT", day).sha256
        assert not client.given_up, n
    client.origin = refused
    with pytest.raises(ArchiveUnusable, match="unreachable in this run"):
        for _ in range(2):
            with contextlib.suppress(ExchangeTransient):
                client.day("BTCUSDT", dt.date(2021, 6, 1))
    assert client.given_up
