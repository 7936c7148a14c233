"""The code location module (`workspace.yaml`, `dagster ... -m kline_assets.definitions`).

Importing it builds nothing, opens no file and no socket: Dagster calls `defs` when it loads the code
location. To keep your own assets beside ours, write your own module with
`dg.Definitions.merge(build_definitions(), my_defs)` (see the README).
"""

import dagster as dg

from kline_assets.defs.component import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
