#!/usr/bin/env bash
# `make run`: one worker driven by the simulator, watched with `segmenter top`
# (a live view on a terminal; one summary line every few seconds otherwise).
# Ctrl-C stops the worker, the simulator and the view. DEMO_EXIT_AFTER=N exits
# (status 0) N seconds after the simulation has been sent.
set -euo pipefail
cd "$(dirname "$0")/.."
SEG=.venv/bin/segmenter
PORT=${SEGMENTER_WEB_PORT:-6066}
DATA=${SEGMENTER_DATA_DIR:-.segmenter}
HOST=${SEGMENTER_WEB_HOST:-127.0.0.1}
case "$HOST" in 0.0.0.0 | :: | "") HOST=127.0.0.1 ;; esac  # bound everywhere: ask locally
URL="http://$HOST:$PORT"
mkdir -p "$DATA"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

echo "starting a worker on $URL (log: $DATA/worker.log)"
$SEG worker >"$DATA/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  if curl -fsS "$URL/ready" >/dev/null 2>&1; then break; fi
  sleep 1
done
curl -fsS "$URL/ready" >/dev/null || { echo "worker not ready; see $DATA/worker.log"; tail -30 "$DATA/worker.log"; exit 1; }
customers=${DEMO_CUSTOMERS:-300}
echo "worker ready; simulating $customers customers over ${DEMO_DAYS:-120} days (log: $DATA/simulate.log)"
echo "every change: $SEG tail segment-changes --all   |   a customer: $SEG customer c000001"
# The view runs in the background so that the simulator's end does not stop it.
$SEG top --url "$URL" &
pids+=($!)
top_pid=$!
$SEG simulate --customers "$customers" --days "${DEMO_DAYS:-120}" --rate "${DEMO_RATE:-3000}" \
  >"$DATA/simulate.log" 2>&1
if [ -n "${DEMO_EXIT_AFTER:-}" ]; then sleep "$DEMO_EXIT_AFTER"; exit 0; fi
wait "$top_pid"
