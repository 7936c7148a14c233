#!/usr/bin/env bash
# Fresh machine to a working archive: installs into .venv, then backfills the last 30 days of
# futures and spot BTC/USDT and prints the status. Uses the real exchange when it answers, and the
# bundled simulator otherwise (its data then goes to ./demo-data, never mixed with real data).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/kline-assets ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
fi
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
if .venv/bin/python -c "import urllib.request as u; u.urlopen('${KLINE_FUTURES_URL:-https://fapi.binance.com}/fapi/v1/ping', timeout=5)" 2>/dev/null; then
  echo "exchange reachable: loading real data into ${KLINE_DATA_ROOT:-data}"
else
  port="${SIM_PORT:-8099}"
  echo "exchange not reachable: starting the bundled simulator on 127.0.0.1:$port (data in ./demo-data)"
  .venv/bin/kline-assets simulate --port "$port" > /dev/null 2>&1 &
  sim_pid=$!
  trap 'kill $sim_pid 2>/dev/null || true' EXIT
  export KLINE_SPOT_URL="http://127.0.0.1:$port" KLINE_FUTURES_URL="http://127.0.0.1:$port" KLINE_ARCHIVE_URL="http://127.0.0.1:$port"
  export KLINE_DATA_ROOT="${KLINE_DATA_ROOT:-demo-data}"
  for _ in $(seq 50); do .venv/bin/python -c "import urllib.request as u; u.urlopen('$KLINE_SPOT_URL/api/v3/ping')" 2>/dev/null && break; sleep 0.1; done
fi
start="$(date -u -d '30 days ago' +%F)"
for market in futures spot; do
  .venv/bin/kline-assets --market "$market" backfill --start "$start"
done
.venv/bin/kline-assets status
