from kline_assets.cli.main import run

run()
