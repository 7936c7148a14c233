"""The chunk IO manager: `klines_1m` as the input of downstream assets (its days are written as they come by
`defs.writer`, so it handles no output)."""

from __future__ import annotations

import datetime as dt
import typing

import dagster as dg
import pyarrow as pa

from kline_assets.defs.resources import StoreResource
from kline_assets.store.reader import day_table


class ChunkIOManager(dg.ConfigurableIOManager):
    root: StoreResource  # the data root whose chunks it reads

    def handle_output(self, context: dg.OutputContext, obj: None) -> None:
        """`klines_1m` emits no output value: its days are committed by `defs.writer` as they come."""

    def load_input(self, context: dg.InputContext):
        """`klines_1m` as the input of a downstream asset: the day's rows for one partition, a
        `dict[partition_key, frame]` for several; `pyarrow.Table` when the input is annotated so (also as
        `dict[str, pyarrow.Table]`), else `pandas.DataFrame`. Every chunk is verified first; a day with no
        chunk, or one that does not match the manifest, fails the step with what to run."""
        store = self.root.store_for_key(context.asset_key)
        manifest = store.manifest()
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
        else:
            keys = [manifest.chunks[i].partition for i in sorted(manifest.chunks)]
        arrow = _wants_arrow(context.dagster_type.typing_type)
        frames = {}
        for key in keys:
            table = day_table(store, manifest, dt.date.fromisoformat(key))
            frames[key] = table if arrow else table.to_pandas()
        return frames[keys[0]] if len(keys) == 1 else frames


def _wants_arrow(annotation) -> bool:
    if typing.get_origin(annotation) is dict:
        annotation = (typing.get_args(annotation) or (None, None))[-1]
    return annotation is pa.Table
