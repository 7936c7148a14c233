"""The recheck job: Binance replaces archive files after corrections; the stored days' CHECKSUMs are read
again, and a day whose published file changed is loaded again from the new file, said in the run and in
`status`."""

import datetime as dt

from kline_assets.defs.component import build_definitions
from kline_assets.settings import DatasetSpec
from kline_assets.store.status import all_status, render
from kline_assets_tests.helpers import FUT, expected_rows, manifest, run, store_of, stored_rows

FUNDING = DatasetSpec("futures", "BTC/USDT", "funding")


def test_the_recheck_job_loads_again_the_days_whose_archive_file_was_replaced(sim, make_settings, instance):
    settings = make_settings(start="2021-06-01", source="auto", tz="Europe/Zurich",
                             pairs="futures:BTC/USDT:klines+funding")
    for spec in (FUT, FUNDING):
        assert run(settings, instance, spec, "2021-06-01", "2021-06-03").success
    before = {spec: manifest(settings, spec)["chunks"] for spec in (FUT, FUNDING)}
    assert all(c["source"] == "archive" for chunks in before.values() for c in chunks)
    job = build_definitions(settings).resolve_job_def("recheck_archive")
    untouched = len(sim.state.log)
    assert job.execute_in_process(instance=instance).success
    asked = [r["endpoint"] for r in sim.state.log[untouched:]]
    # a zurich day is cut from two UTC files: 4 distinct daily CHECKSUMs for 3 days; funding: one month's
    assert sorted(asked) == sorted([f"BTCUSDT-1m-2021-{d}.zip.CHECKSUM" for d in ("05-31", "06-01", "06-02",
                                                                                  "06-03")]
                                   + ["BTCUSDT-fundingRate-2021-05.zip.CHECKSUM",
                                      "BTCUSDT-fundingRate-2021-06.zip.CHECKSUM"])  # no zip
    assert {spec: manifest(settings, spec)["chunks"] for spec in (FUT, FUNDING)} == before

    sim.state.config.archive_replaced = ["2021-06-02"]  # Binance re-uploads one UTC day's file
    result = job.execute_in_process(instance=instance)
    assert result.success
    after = manifest(settings, FUT)["chunks"]
    changed = [c["partition"] for c, old in zip(after, before[FUT], strict=True)
               if c["source_sha256"] != old["source_sha256"]]
    assert changed == ["2021-06-02", "2021-06-03"]  # the two zurich days cut from 2021-06-02 UTC
    store = store_of(settings)
    for new in after:  # the re-uploaded file holds the same rows here
        assert stored_rows(store, new) == expected_rows(sim.state, FUT, "Europe/Zurich",
                                                         dt.date.fromisoformat(new["partition"]))
    records = [e.asset_key.to_user_string() + " " + e.partition
               for e in (ev.event_specific_data.materialization for ev in result.get_asset_materialization_events())]
    assert records == ["binanceusdm/BTCUSDT/klines_1m 2021-06-02", "binanceusdm/BTCUSDT/klines_1m 2021-06-03"]
    text = render(all_status(store.backend), settings.data_root)
    assert "archive recheck at" in text and "2 replaced by Binance (2021-06-02, 2021-06-03), 2 loaded again" in text
    assert dt.date(2021, 6, 1).isoformat() not in changed
