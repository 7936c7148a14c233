"""kline-assets: an exact, verifiable local archive of Binance 1-minute klines as Dagster assets.

The code location is `kline_assets.definitions` (see workspace.yaml); importing the package itself
builds nothing, so the command line pays only for what it uses.
"""
