"""The simulator's futures price klines (docs/binance-kinds.md): mark, index (asked by `pair`) and
premium index, over REST and in the archive, the same rows either way, as Binance serves them."""

import datetime as dt
import io
import json
import urllib.error
import urllib.request
import zipfile

import pytest

from kline_assets.sim.archive import answer

DAY = dt.date(2021, 6, 1)
START = int(dt.datetime(2021, 6, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)


def get(sim, path: str):
    try:
        with urllib.request.urlopen(sim.url + path, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


@pytest.mark.parametrize(("endpoint", "by"), [("markPriceKlines", "symbol"), ("indexPriceKlines", "pair"),
                                              ("premiumIndexKlines", "symbol")])
def test_price_klines_over_rest_and_in_the_archive_are_the_same_rows(sim, endpoint, by):
    window = f"interval=1m&startTime={START}&endTime={START + 86_400_000 - 1}&limit=1500"
    status, rows, headers = get(sim, f"/fapi/v1/{endpoint}?{by}=BTCUSDT&{window}")
    assert status == 200 and len(rows) == 1440 and headers["X-MBX-USED-WEIGHT-1M"] == "10"
    trade = get(sim, f"/fapi/v1/klines?symbol=BTCUSDT&{window}")[1]
    assert [r[0] for r in rows] == [r[0] for r in trade] and rows[0][4] != trade[0][4]
    assert all(r[6] == r[0] + 59_999 and len(r) == 12 and r[5].strip() == "0" for r in rows)
    if endpoint == "premiumIndexKlines":  # a signed relative difference, small
        assert any(float(r[4]) < 0 for r in rows) and all(abs(float(r[4])) < 0.01 for r in rows)
    else:
        assert rows[0][5] == "0 " and rows[0][8] == 60  # as Binance's own example shows them
    _, zipped = answer(sim.state, f"/data/futures/um/daily/{endpoint}/BTCUSDT/1m/BTCUSDT-1m-{DAY}.zip")
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        lines = zf.read(zf.namelist()[0]).decode().splitlines()
    assert [line.split(",")[:5] for line in lines] == [[str(r[0]), *r[1:5]] for r in rows]


def test_price_klines_are_futures_only_and_index_needs_its_pair(sim):
    assert get(sim, f"/api/v3/markPriceKlines?symbol=BTCUSDT&interval=1m&startTime={START}")[0] == 404
    status, body, _ = get(sim, f"/fapi/v1/indexPriceKlines?symbol=BTCUSDT&interval=1m&startTime={START}")
    assert status == 400 and body["code"] == -1121
    assert answer(sim.state, f"/data/spot/daily/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-{DAY}.zip")[0] == 404
