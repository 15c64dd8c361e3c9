#!/usr/bin/env bash
# `make run`: one worker driven by the simulator; segment changes and churn-risk
# events are printed as they arrive. Ctrl-C stops the worker and the tails.
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
echo "worker ready; tailing segment-changes and churn-risk"
$SEG tail segment-changes &
pids+=($!)
$SEG tail churn-risk &
pids+=($!)
sleep 2
$SEG simulate --customers "${DEMO_CUSTOMERS:-300}" --days "${DEMO_DAYS:-120}" --rate "${DEMO_RATE:-3000}"
echo
echo "simulation sent. Try: $SEG customer c000001   |   curl $URL/segments"
echo "Ctrl-C to stop (the broker keeps running: $SEG kafka stop)"
if [ -n "${DEMO_EXIT_AFTER:-}" ]; then sleep "$DEMO_EXIT_AFTER"; exit 0; fi
wait
