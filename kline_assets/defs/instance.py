"""The Dagster instance: the one the command line records its runs in, and the `dagster.yaml` we recommend.

kline-assets never writes or edits a `dagster.yaml`: the instance is the user's (or the platform team's).
`kline-assets instance-config [--storage sqlite|postgres]` prints the recommended file, built here, and
the tests load both (and `deploy/dagster.yaml`) so none of them can rot.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kline_assets.store.atomic import locked

if TYPE_CHECKING:
    import dagster as dg

DEFAULT_DAGSTER_HOME = ".dagster_home"
STORAGES = ("sqlite", "postgres")

# Dagster's run queue (`dagster dev` and `dagster-daemon` honour it): at most 4 runs at once, one of them
# from a backfill, so a backfill of every dataset queues its runs behind each other while the minute's
# live run still goes; every run shares each market's weight budget in any case
RUN_QUEUE = {"max_concurrent_runs": 4, "tag_concurrency_limits": [{"key": "dagster/backfill", "limit": 1}]}
# the queue looked at every second instead of every 5: the minute's live run must be done ~20 s after the
# minute closed, and its launch (a process loading the code location) already takes ~5 s
RUN_COORDINATOR = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
                   "config": {"dequeue_interval_seconds": 1}}
POSTGRES_DB = {"username": {"env": "DAGSTER_PG_USERNAME"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
               "hostname": {"env": "DAGSTER_PG_HOST"}, "db_name": {"env": "DAGSTER_PG_DB"}, "port": 5432}

HEADERS = {
    "sqlite": "Dagster's embedded SQLite storage under DAGSTER_HOME: one machine (the webserver, the daemon\n"
              "# and every run process on it share these files).",
    "postgres": "Dagster's storage in Postgres (pip install 'kline-assets[postgres]'): the webserver, the\n"
                "# daemon and run workers on any machine share it, and so do the weight budget and ban memory of\n"
                "# each Binance market (tables kline_assets_weight in the same database).",
}


def instance_config(storage: str) -> dict:
    """The recommended instance settings for `storage` (sqlite or postgres), as dagster.yaml's mapping."""
    if storage == "postgres":
        store = {"postgres": {"postgres_db": dict(POSTGRES_DB)}}
    else:
        store = {"sqlite": {"base_dir": {"env": "DAGSTER_HOME"}}}
    return {"storage": store, "run_coordinator": RUN_COORDINATOR, "concurrency": {"runs": RUN_QUEUE}}


def instance_yaml(storage: str) -> str:
    """`instance_config` as the text of a dagster.yaml, with a comment on why each part is there."""
    return (f"# A Dagster instance for kline-assets, printed by `kline-assets instance-config --storage {storage}`.\n"
            f"# {HEADERS[storage]}\n"
            "# run_coordinator: the run queue looked at every second (the minute's live run is due ~20 s after\n"
            "# the minute); concurrency.runs: at most 4 runs at once, one of them from a backfill.\n"
            + yaml.safe_dump(instance_config(storage), sort_keys=False))


def dagster_instance() -> dg.DagsterInstance:  # dagster imported when called: `instance-config` prints at once
    """The instance at DAGSTER_HOME, so CLI runs are kept beside the UI's; the command line alone defaults
    DAGSTER_HOME (for itself and the processes it starts) to ./.dagster_home, since Dagster's own default is
    a temp instance that forgets every run. Whatever dagster.yaml is there is used as it is."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    # two first commands at once would both create the SQLite tables of a new instance ("table runs already
    # exists"): one at a time, until the instance is there
    import dagster as dg

    with locked(home / ".kline_assets.lock"), _without_missing_yaml_notice():
        return dg.DagsterInstance.get()


@contextlib.contextmanager
def _without_missing_yaml_notice() -> Iterator[None]:
    """Dagster warns on stderr, on every command, that a DAGSTER_HOME has no dagster.yaml and advises
    creating one. Without one, Dagster's defaults apply, a setup we support (and the command line's own
    default home has none: we never write one; `kline-assets instance-config` prints one), so that line
    is left out of the command's one-line output while the instance loads."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No dagster instance configuration file")

    logger = logging.getLogger("dagster")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
