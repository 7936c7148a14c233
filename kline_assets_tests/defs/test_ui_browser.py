"""The Dagster UI flow in headless Chromium: launch a 3-day backfill from the asset page, see it succeed,
read the checks. Screenshots go to artifacts/ui/. Skipped only where no Chromium is installed."""

import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from kline_assets.defs.instance import instance_yaml
from kline_assets.store.dataset import DatasetStore
from kline_assets.timezones import parse_zone
from kline_assets_tests.helpers import REPO, SPOT, expected_rows, stored_rows
from kline_assets_tests.helpers import dagster_dev as running_dagster_dev

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]
ARTIFACTS = REPO / "artifacts" / "ui"
BIN = Path(sys.executable).parent


@pytest.fixture
def dagster_dev(sim, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # the instance `kline-assets instance-config` recommends (its run queue looked at every second)
    (home / "dagster.yaml").write_text(instance_yaml("sqlite") + "telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINE_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), KLINE_SPOT_URL=sim.url, KLINE_FUTURES_URL=sim.url, KLINE_ARCHIVE_URL=sim.url,
               KLINE_DATA_ROOT=str(tmp_path / "data"), KLINE_LOG_DIR=str(tmp_path / "logs"),
               KLINE_START="2021-01-01", KLINE_PAIRS="spot:BTC/USDT")
    with running_dagster_dev(env) as url:
        yield url, tmp_path / "data", home


def wait_for_runs_to_finish(home: Path, monkeypatch) -> None:
    """The chunks are on disk before the run has recorded its events; the pages below need those."""
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the sqlite storage in that dagster.yaml reads it
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + 120
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if runs and all(r.status in done for r in runs):
                return
            time.sleep(1)
    raise AssertionError(f"runs still going after 120 s: {[(r.run_id, r.status) for r in runs]}")


def test_backfill_three_days_from_the_ui(sim, dagster_dev, monkeypatch):
    from playwright.sync_api import sync_playwright

    url, data, home = dagster_dev
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [today - dt.timedelta(n) for n in (4, 3, 2)]
    manifest = data / "binance" / "BTCUSDT" / "1m" / "manifest.json"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/assets/binance/BTCUSDT/klines_1m?view=partitions")
        page.get_by_role("button", name="Materialize…").first.wait_for(timeout=90_000)
        page.wait_for_timeout(1500)
        if page.get_by_role("button", name="Skip").count():  # the first-visit community dialog
            page.get_by_role("button", name="Skip").click()
        page.get_by_role("button", name="Materialize…").first.click()
        dialog = page.get_by_role("dialog")
        selection = dialog.locator("input[type=text], input:not([type])").first
        selection.click()
        selection.fill(f"[{days[0]}...{days[-1]}]")
        selection.press("Enter")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "launch_dialog.png"))
        dialog.get_by_role("button", name="Launch backfill").click()
        deadline = time.monotonic() + 180
        done = set()
        while time.monotonic() < deadline:
            if manifest.exists():
                done = {c["partition"] for c in json.loads(manifest.read_text())["chunks"] if c["complete"]}
                if {d.isoformat() for d in days} <= done:
                    break
            time.sleep(1)
        assert {d.isoformat() for d in days} <= done, f"backfill did not finish: {sorted(done)}"
        wait_for_runs_to_finish(home, monkeypatch)
        page.goto(url + "/assets/binance/BTCUSDT/klines_1m?view=partitions")
        page.get_by_text("Materialized (").first.wait_for(timeout=30_000)
        assert "Failed (0)" in page.inner_text("body")
        page.get_by_text(days[1].isoformat(), exact=True).first.click()
        page.get_by_text("sha256").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "partitions.png"))
        assert "1440" in page.inner_text("body").replace(",", "")
        deadline = time.monotonic() + 90  # the run records its check evaluations after the last chunk
        while True:
            page.goto(url + "/assets/binance/BTCUSDT/klines_1m?view=checks")
            page.get_by_text("sanity").first.wait_for(timeout=30_000)
            page.wait_for_timeout(2000)
            checks = page.inner_text("body")
            if checks.count("Succeeded") >= 3 or "Not evaluated" in checks or time.monotonic() > deadline:
                break
        page.screenshot(path=str(ARTIFACTS / "checks.png"))
        assert "Checks (4)" in checks
        # Each check's verdict over the run's days is in its history. The list shows it as the latest execution
        # only until the live sensor's next run records today's materialization: Dagster then shows a check
        # without a partition as "Not evaluated" (that run evaluates a check only for a failing day)
        page.get_by_text("Execution history").first.click()
        verdict = f"{days[0]}..{days[-1]}, this run's 3 day(s): all passed"
        page.get_by_text(verdict).first.wait_for(timeout=30_000)
        assert verdict in page.inner_text("body")  # "all passed": the verdict of a check that passed
        page.screenshot(path=str(ARTIFACTS / "check_history.png"))
        browser.close()
    entries = {c["partition"]: c for c in json.loads(manifest.read_text())["chunks"]}
    store = DatasetStore.open(str(manifest.parents[3]), SPOT, parse_zone("UTC"), days[0])
    for day in days:
        assert stored_rows(store, entries[day.isoformat()]) == expected_rows(sim.state, SPOT, "UTC", day)
