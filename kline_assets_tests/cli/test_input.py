"""The command line as users meet it: fallback pair, alignment guard, status, log rotation, help."""

import json
import logging
import subprocess

import pytest

from kline_assets.cli.main import main
from kline_assets.logs import setup_logging
from kline_assets_tests.helpers import cli, cli_here, env_for

pytestmark = pytest.mark.e2e


def test_unknown_pair_falls_back_to_btcusdt(sim, tmp_path):
    env = env_for(sim, tmp_path)
    done = cli(env, "--market", "spot", "--pair", "NOPE/USDT", "backfill", "--start", "2021-01-01", "--end",
               "2021-01-02")
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warning and "NOPE/USDT" in warning[0] and "BTC/USDT" in warning[0]
    datasets = sorted(p.name for p in (tmp_path / "data" / "binance").iterdir())
    assert datasets == ["BTCUSDT"]
    for flags in (("backfill", "--strict"), ("--strict", "backfill"), ("--strict", "live", "--cycles", "1")):
        strict = cli(env, "--market", "spot", "--pair", "NOPE/USDT", *flags)
        assert strict.returncode == 2 and "does not list NOPE/USDT" in strict.stderr, (flags, strict.stderr)


def test_another_alignment_on_an_existing_dataset_is_refused(sim, tmp_path):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0
    manifest = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    before = manifest.read_bytes()
    done = cli(env, "--align-tz", "Europe/Zurich", "backfill", "--start", "2021-01-02", "--end", "2021-01-03")
    assert done.returncode == 2 and "aligned to UTC" in done.stderr and "--data-root" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and manifest.read_bytes() == before


def test_status_on_an_empty_root_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KLINE_DATA_ROOT", str(tmp_path / "nothing"))
    assert main(["status"]) == 0
    assert "no datasets yet" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"] == []
    assert not (tmp_path / "nothing").exists()


def test_help_for_each_verb_has_an_example(capsys):
    for verb in ("backfill", "live", "verify", "status", "combine", "simulate"):
        with pytest.raises(SystemExit) as done:
            main([verb, "--help"])
        assert done.value.code == 0 and "example: kline-assets" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["combine", "--from-index", "5", "--to-index", "2"], "after --to-index"),
    (["combine", "--tz", "Nowhere/Land"], "unknown time zone"),
    (["--pair", "BTCUSDT", "status"], "BASE/QUOTE"),
    (["verify", "--start", "2021-02-01", "--end", "2021-01-01"], "impossible window"),
    (["live", "--cycles", "-1"], "--cycles"),
    (["--pair", "\u0392TC/USDT", "status"], "ASCII letters and digits"),  # a Greek capital beta
    (["--pair", "A" * 300 + "/USDT", "status"], "ASCII letters and digits"),
])
def test_more_bad_input(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("KLINE_DATA_ROOT", str(tmp_path / "data"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_data_root_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["--data-root", str(tmp_path / "file"), "status"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_loader_log_rotates(tmp_path):
    path = setup_logging(tmp_path / "logs", max_bytes=2000, backups=2)
    logger = logging.getLogger("kline_assets")
    for n in range(200):
        logger.info("line %d of a rotating log", n)
    assert path.exists() and (tmp_path / "logs" / "loader.log.1").exists()
    assert not (tmp_path / "logs" / "loader.log.3").exists()
    first = path.read_text().splitlines()[0]
    assert first[:4].isdigit() and "Z INFO" in first
    for handler in list(logger.handlers):
        if str(tmp_path) in getattr(handler, "baseFilename", ""):
            logger.removeHandler(handler)


def test_status_plot_writes_a_png(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-03").returncode == 0
    done = cli_here(monkeypatch, capsys, env, "status", "--plot", str(tmp_path / "coverage.png"))
    assert done.returncode == 0 and "2 complete" in done.stderr
    assert (tmp_path / "coverage.png").read_bytes()[:4] == b"\x89PNG"


def test_an_origin_without_time_and_exchange_info_still_works(sim, tmp_path, monkeypatch, capsys):
    sim.state.config.missing_endpoints = ["time", "exchangeInfo"]
    env = env_for(sim, tmp_path)
    done = cli(env, "--market", "spot", "--pair", "NOPE/USDT", "backfill", "--start", "2021-01-01", "--end",
               "2021-01-02")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "using BTC/USDT" in done.stderr
    status = json.loads(cli_here(monkeypatch, capsys, env, "status", "--json").stdout)["datasets"][0]
    assert (status["dataset"], status["rows"]) == ("binance/BTCUSDT", 1440)


def test_a_non_ascii_pair_in_kline_pairs_is_one_line_also_with_the_exchange_down(tmp_path):
    env = env_for(type("Down", (), {"url": "http://127.0.0.1:9"}), tmp_path, KLINE_PAIRS="futures:\u0392TC/USDT")
    done = cli(env, "backfill", "--all", "--start", "2021-01-01", "--end", "2021-01-02")
    assert done.returncode == 2 and "ASCII letters and digits" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_selectors_without_a_listing_say_why_and_log_it(tmp_path):
    env = env_for(type("Down", (), {"url": "http://127.0.0.1:9"}), tmp_path, KLINE_PAIRS="futures:*/USDT")
    done = cli(env, "backfill", "--all", "--start", "2021-01-01", "--end", "2021-01-02")
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "listing (exchangeInfo) could not be fetched" in line and "cannot connect" in line, line
    assert "could not be fetched" in (tmp_path / "logs" / "loader.log").read_text()


def test_a_damaged_manifest_is_one_line(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-02").returncode == 0
    manifest = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m" / "manifest.json"
    good = json.loads(manifest.read_text())
    for damage in ("types", "outside", "folder"):
        doc = json.loads(json.dumps(good))
        if damage == "folder":
            manifest.unlink()
            manifest.mkdir()
        else:
            doc["chunks"][0].update(rows="many") if damage == "types" else doc["chunks"][0].update(file="../../x")
            manifest.write_text(json.dumps(doc))
        for args in (["status"], ["backfill", "--start", "2021-01-01", "--end", "2021-01-03"]):
            # the backfill in its own process once; status (read-only) in this one for each damage
            if args[0] == "backfill" and damage != "types":
                continue
            done = cli(env, *args) if args[0] == "backfill" else cli_here(monkeypatch, capsys, env, *args)
            assert done.returncode == 2 and "Traceback" not in done.stderr, (damage, args, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1, (damage, args, done.stderr)


def test_damaged_caches_are_asked_again(sim, tmp_path, monkeypatch, capsys):
    """symbols.json that is not an object, a listing dated in the future: neither is trusted."""
    env = env_for(sim, tmp_path, KLINE_PAIRS="futures:*/USDT")
    cache = tmp_path / "data" / ".kline_assets"
    cache.mkdir(parents=True)
    (cache / "symbols.json").write_text("[]")
    (cache / "listing_futures.json").write_text(json.dumps(
        {"market": "futures", "fetched_at_ms": 2**45, "symbols": {"OLDUSDT": ["OLD", "USDT", "TRADING", True]}}))
    done = cli(env, "--pair", "ETH/USDT", "backfill", "--start", "2021-01-01", "--end", "2021-01-02")
    assert done.returncode == 0, done.stderr
    # resolves the selectors: the listing is asked for again
    done = cli_here(monkeypatch, capsys, env, "verify", "--all")
    assert done.returncode == 0, done.stderr
    listing = json.loads((cache / "listing_futures.json").read_text())
    assert "OLDUSDT" not in listing["symbols"] and "BTCUSDT" in listing["symbols"]


def test_verify_only_reads_and_repair_on_a_read_only_root_is_one_line(sim, tmp_path, monkeypatch, capsys):
    env = env_for(sim, tmp_path)
    assert cli(env, "backfill", "--start", "2021-01-01", "--end", "2021-01-03").returncode == 0
    dataset = tmp_path / "data" / "binanceusdm" / "BTCUSDT" / "1m"
    next((dataset / "chunks").glob("chunk_000001_20210101_*.parquet")).unlink()
    view = tmp_path / "read-only"
    view.mkdir()
    bound = subprocess.run(["mount", "--bind", str(tmp_path / "data"), str(view)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip("no read-only mount to be had here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        env["KLINE_DATA_ROOT"] = str(view)
        found = cli_here(monkeypatch, capsys, env, "verify")
        assert found.returncode == 1 and "missing_file" in found.stdout and "Traceback" not in found.stderr
        done = cli(env, "verify", "--repair")
        assert done.returncode == 2 and "cannot write" in done.stderr and "Read-only" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["umount", str(view)], check=False)
