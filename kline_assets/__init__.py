"""kline-assets: an exact, verifiable local archive of Binance 1-minute klines as Dagster assets.

`defs` is loaded lazily so that the command line does not build the code location it does not use.
"""


def __getattr__(name: str):
    if name == "defs":
        from kline_assets.definitions import defs

        return defs
    raise AttributeError(name)
