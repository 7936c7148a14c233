"""kline-assets: an exact, verifiable local archive of Binance 1-minute klines as Dagster assets.

The code location is `kline_assets.definitions` (see workspace.yaml). The Python API below (see
`kline_assets.api`) is imported on first use, so `import kline_assets` and the command line load
neither Dagster nor pandas until they need them.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {"read_klines", "read_funding", "open_dataset", "load_manifest", "build_combined", "klines_asset_key",
        "build_definitions"}
_ERRORS = {"BadInput", "ChunkUnavailable"}
_COMPONENTS = {"KlineArchive"}  # `type: kline_assets.KlineArchive` in a dg project's defs.yaml
__all__ = sorted(_API | _ERRORS | _COMPONENTS)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("kline_assets.api"), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("kline_assets.errors"), name)
    if name in _COMPONENTS:
        return getattr(importlib.import_module("kline_assets.defs.component"), name)
    raise AttributeError(f"module 'kline_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names too: `dg` finds components by listing the module our entry point names."""
    return sorted(set(globals()) | set(__all__))
