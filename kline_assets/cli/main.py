"""`kline-assets`: the classic verbs on top of the Dagster definitions.

Exit codes: 0 done, 1 the work failed or verify found problems, 2 bad input (one line, nothing written),
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import warnings
from dataclasses import replace

from kline_assets.defs.instance import STORAGES, instance_yaml
from kline_assets.errors import BadInput, ExchangeFinal, ExchangeTransient
from kline_assets.interrupts import RELAY, relay_interrupts
from kline_assets.logs import show_progress
from kline_assets.settings import (
    MARKETS,
    SETTINGS,
    DatasetSpec,
    Settings,
    get_market,
    load_settings,
    normalise_pair,
    parse_kinds,
)
from kline_assets.store.backend import open_root

log = logging.getLogger("kline_assets")

EXAMPLES = {
    "backfill": "example: kline-assets --market spot --pair ETH/USDT backfill --start 2021-01-01 --end 2021-02-01"
                "   (or: KLINE_PAIRS='futures:*/USDT' kline-assets backfill --all --start 2025-01-01)",
    "live": "example: kline-assets --market futures live   (or: kline-assets live --all)",
    "verify": "example: kline-assets verify --start 2021-01-01 --repair   (or --cross-check 20, or --all)",
    "status": "example: kline-assets status --json",
    "combine": "example: kline-assets combine --tz Europe/Zurich",
    "simulate": "example: kline-assets simulate --port 8099",
    "instance-config": "example: kline-assets instance-config --storage postgres > $DAGSTER_HOME/dagster.yaml",
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{message} (see {self.prog} --help)")


def _globals(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--market", default=default, help="spot, futures (USD-M, the default) or coinm (COIN-M)")
    parser.add_argument("--pair", default=default, help="BASE/QUOTE (default BTC/USDT, on coinm BTC/USD)")
    parser.add_argument("--align-tz", default=default, help="IANA zone or offset for local days (KLINE_ALIGN_TZ)")
    parser.add_argument("--data-root", default=default, help="data root (KLINE_DATA_ROOT)")
    parser.add_argument("--kind", default=default, help="klines (default), or a futures kind: mark, index, premium, "
                                                        "funding (with --all: narrows the configured datasets)")
    parser.add_argument("--strict", action="store_true", default=False if default is None else default,
                        help="fail instead of falling back to BTC/USDT (BTC/USD) for a pair the exchange does not "
                             "list")


def every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true",
                        help="every dataset KLINE_PAIRS defines (selectors included); --market narrows it")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="kline-assets", description=__doc__.splitlines()[0].replace("`", ""),
                           epilog=f"Environment: {', '.join(s.variable for s in SETTINGS if s.variable)} (KLINE_PAIRS: "
                                  "for --all), KLINE_STATE_DIR, DAGSTER_HOME.")
    _globals(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name])
        _globals(p, argparse.SUPPRESS)
        return p

    p = verb("backfill", "load closed klines for a window of local days through Dagster")
    every(p)
    p.add_argument("--start", help="first day, ISO date or date-time (inclusive; default: the dataset's start)")
    p.add_argument("--end", help="end, ISO date or date-time (exclusive, rounded up to a local midnight; default now)")
    p.add_argument("--chunk-size", type=str, default="1440",
                   help="minutes per chunk; chunks are local days, so only 1440 is accepted")
    p.add_argument("--source", help="auto (public archive for closed days, REST for the rest), rest or archive "
                                    "(KLINE_SOURCE)")
    p = verb("live", "keep today's chunk current every minute, in the foreground")
    every(p)
    p.add_argument("--cycles", type=int, default=0, help="stop after N cycles (default: run until Ctrl-C)")
    p = verb("verify", "check chunks against the manifest and continuity; --repair re-collects bad days")
    every(p)
    p.add_argument("--start", help="first day to check (inclusive)")
    p.add_argument("--end", help="end of the window (exclusive)")
    p.add_argument("--repair", action="store_true", help="re-collect bad or missing days through Dagster")
    p.add_argument("--cross-check", type=int, default=0, metavar="N",
                   help="fetch N random archive days of the window again from REST and compare row by row")
    p = verb("status", "what is stored, per dataset")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="FILE", help="write a coverage calendar PNG (one file per dataset)")
    p = verb("combine", "stream all chunks into one combined Parquet file through Dagster")
    p.add_argument("--from-index", type=int, help="first chunk index (inclusive)")
    p.add_argument("--to-index", type=int, help="last chunk index (inclusive)")
    p.add_argument("--tz", help="zone named in the file name suffix (default: none)")
    p = verb("simulate", "run the bundled Binance-compatible simulator (offline demos)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of kline responses that fail")
    p.add_argument("--spot-budget", type=int, default=6000, help="REQUEST_WEIGHT per minute")
    p.add_argument("--futures-budget", type=int, default=2400, help="REQUEST_WEIGHT per minute")
    p = verb("instance-config", "print the dagster.yaml we recommend (kline-assets never writes one)")
    p.add_argument("--storage", choices=STORAGES, default="sqlite",
                   help="sqlite (one machine, the default) or postgres (any number of machines)")
    return parser


def resolve_settings(args: argparse.Namespace) -> tuple[Settings, DatasetSpec]:
    settings = load_settings(data_root=args.data_root, align_tz=args.align_tz, source=getattr(args, "source", None))
    if getattr(args, "all", False) and args.pair is not None:
        raise BadInput("--all and --pair together: --all means every configured dataset (narrow it with --market)")
    market = get_market(args.market or "futures").name
    kinds = parse_kinds(args.kind, market) if args.kind is not None else ("klines",)
    if len(kinds) != 1:
        raise BadInput(f"--kind {args.kind}: one kind at a time (KLINE_PAIRS entries may name several)")
    spec = DatasetSpec(market, normalise_pair(args.pair or MARKETS[market].default_pair), kinds[0])
    open_root(settings.data_root)  # a data root that cannot be one (a file, an S3 root without a bucket)
    if getattr(args, "all", False):  # the configured datasets; commands resolve the selectors
        return settings, spec
    if hasattr(args, "all") and args.pair is None and os.environ.get("KLINE_PAIRS", "").strip() \
            and spec not in settings.pairs:
        print(f"kline-assets: note: KLINE_PAIRS is for --all (and the code location); this command works on "
              f"{spec.market} {spec.pair} (--market/--pair)", file=sys.stderr)
    return replace(settings, pairs=(spec,)), spec


def quiet_warnings() -> None:
    """Dagster's beta/preview notices are for developers of this package, not for its users."""
    warnings.filterwarnings("ignore", message=".*(is currently in beta|is currently in preview).*")


class SignalRecord:
    """Which signals arrived, whoever handled them (Dagster replaces the SIGINT and SIGTERM handlers while a
    run executes and turns both into one "interrupted" error): the interpreter writes each signal's number
    to a wakeup pipe, so the exit code can tell SIGTERM (143) from SIGINT (130)."""

    def __init__(self) -> None:
        self._read = None
        try:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            self._read = read
        except (OSError, ValueError):  # not the main thread (tests calling main()): 130 for both
            pass
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _terminate)

    def exit_code(self, code: int) -> int:
        """A command that did not end well after SIGINT or SIGTERM arrived ends as interrupted: 130 or 143."""
        if code == 0 or self._read is None:
            return code
        seen = b""
        with contextlib.suppress(OSError):
            seen = os.read(self._read, 1024)
        if signal.SIGTERM in seen:
            return 143
        relayed = RELAY is not None and RELAY in seen
        return 130 if signal.SIGINT in seen or relayed or code == 130 else code


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signals = SignalRecord()
    return signals.exit_code(_main(argv))


def run() -> None:
    """The `kline-assets` program: `main`, then out without the interpreter's teardown. Arrow's native
    thread pools may still be alive when Python finalises, and now and then that ends a finished command
    in `terminate called without an active exception` (SIGABRT, apache/arrow#34314): output flushed and
    logs closed first, the exit code is the command's own. Ctrl-C reaches this process, not Dagster's
    helpers (`interrupts`)."""
    relay_interrupts()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    quiet_warnings()
    # the CLI prints what users must see itself; without a handler Python would echo warnings again
    logging.getLogger("kline_assets").addHandler(logging.NullHandler())
    show_progress(sys.stderr, bars=sys.stderr.isatty())  # plain lines into pipes, files and CI logs
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        if args.command == "simulate":
            from kline_assets.sim import server

            return server.main([
                "--host", args.host, "--port", str(args.port), "--latency-ms", str(args.latency_ms),
                "--fault-rate", str(args.fault_rate), "--spot-budget", str(args.spot_budget),
                "--futures-budget", str(args.futures_budget)])
        if args.command == "instance-config":
            print(instance_yaml(args.storage), end="")
            return 0
        settings, spec = resolve_settings(args)
        from kline_assets.cli import commands

        return getattr(commands, f"cmd_{args.command}")(args, settings, spec)
    except BadInput as exc:
        print(f"kline-assets: error: {exc}", file=sys.stderr)
        return 2
    except (ExchangeFinal, ExchangeTransient) as exc:
        print(f"kline-assets: {exc}", file=sys.stderr)
        log.error("%s", exc)
        return 1
    except OSError as exc:  # the machine said no (a read-only or full disk, no permission): one line
        print(f"kline-assets: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        log.error("%s", exc, exc_info=True)
        return 1
    except KeyboardInterrupt:
        print("kline-assets: interrupted (Ctrl-C or SIGTERM): what was committed stays", file=sys.stderr)
        return 130

