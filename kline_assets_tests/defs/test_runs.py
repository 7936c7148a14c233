"""What a failed run tells the command line: one line with its cause, and whether a rerun helps."""

from kline_assets.defs.runs import RunOutcome, one_line


def test_a_message_introducing_its_cause_with_a_colon_keeps_the_cause():
    dagster_says = ("1 blocking asset check failed with ERROR severity:\n"
                    "binanceusdm/BTCUSDT/klines_1m: integrity (chunk_000003_20210103.parquet sha256 differs)\n")
    line = one_line(dagster_says, "DagsterAssetCheckFailedError")
    assert line == ("1 blocking asset check failed with ERROR severity: binanceusdm/BTCUSDT/klines_1m: integrity "
                    "(chunk_000003_20210103.parquet sha256 differs)")
    assert one_line("ExchangeTransient: origin: klines failed 8 times, last: HTTP 503", "ExchangeTransient") == (
        "origin: klines failed 8 times, last: HTTP 503")


def test_the_next_step_says_whether_a_rerun_helps():
    assert "a rerun completes the rest" in RunOutcome(False, "r", "x", "ExchangeTransient").next_step
    assert "a rerun completes the rest" in RunOutcome(False, "r", "interrupted (Ctrl-C or SIGTERM)").next_step
    for kind in ("BadInput", "UnknownSymbol", "ExchangeFinal"):
        assert "a rerun completes" not in RunOutcome(False, "r", "x", kind).next_step
