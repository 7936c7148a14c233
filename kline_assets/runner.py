"""Runs that the command line starts, executed in-process through Dagster and recorded in the
instance at DAGSTER_HOME, so they show in the UI beside the runs the UI starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from kline_assets.atomic import replace_atomic
from kline_assets.settings import DatasetSpec, Settings

DEFAULT_DAGSTER_HOME = ".dagster_home"
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    error: str | None = None

    @property
    def interrupted(self) -> bool:
        """Dagster turns SIGINT/SIGTERM during a run into this error; the caller should stop too."""
        return bool(self.error and self.error.startswith("interrupted"))


def ensure_instance_yaml(home: Path) -> None:
    """A missing or empty dagster.yaml (Dagster's defaults) gets our faster event-log storage, which
    keeps Dagster's files; a dagster.yaml with any content is the user's and is left alone."""
    path = home / "dagster.yaml"
    try:
        if path.stat().st_size:
            return
    except FileNotFoundError:
        pass
    from kline_assets.instance_storage import INSTANCE_YAML

    replace_atomic(path, INSTANCE_YAML.encode())


def dagster_instance() -> dg.DagsterInstance:
    """DAGSTER_HOME if set, else ./.dagster_home, so CLI runs are kept (Dagster's temp default is not)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    ensure_instance_yaml(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def _first_error(result: dg.ExecuteInProcessResult) -> str | None:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            while err.cause is not None and err.cls_name.startswith("DagsterExecution"):
                err = err.cause  # Dagster's wrappers: the user-facing reason is the cause
            line = err.message.strip().splitlines()[0] if err.message else err.cls_name
            head, sep, rest = line.partition(": ")
            text = rest if sep and head.endswith(err.cls_name) else line
            return text if "Interrupt" not in err.cls_name else f"interrupted ({err.cls_name})"
    return None if result.success else "the run failed (see the Dagster UI for its events)"


def materialize_range(settings: Settings, spec: DatasetSpec, first_key: str, last_key: str,
                      instance: dg.DagsterInstance, selection: dg.AssetSelection,
                      run_config: dict | None = None, tags: dict | None = None) -> RunOutcome:
    from kline_assets.definitions import build_assets, build_resources

    result = dg.materialize(
        build_assets(settings),
        resources=build_resources(settings),
        instance=instance,
        selection=selection,
        tags={"dagster/asset_partition_range_start": first_key, "dagster/asset_partition_range_end": last_key,
              "kline_assets/source": "cli", "kline_assets/dataset": spec.name, **(tags or {})},
        run_config={**_QUIET, **(run_config or {})},
        raise_on_error=False,
    )
    return RunOutcome(result.success, result.run_id, _first_error(result))


def materialize_unpartitioned(settings: Settings, instance: dg.DagsterInstance, selection: dg.AssetSelection,
                              run_config: dict | None = None) -> RunOutcome:
    from kline_assets.definitions import build_assets, build_resources

    result = dg.materialize(build_assets(settings), resources=build_resources(settings), instance=instance,
                            selection=selection, run_config={**_QUIET, **(run_config or {})},
                            tags={"kline_assets/source": "cli"}, raise_on_error=False)
    return RunOutcome(result.success, result.run_id, _first_error(result))
