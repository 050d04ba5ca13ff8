#!/usr/bin/env bash
# Stops a stack started in the background by `make demo` (it shuts its services down itself).
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile="${LORAFLOW_DATA_DIR:-data}/stack.pid"
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then echo "stop: no stack running"; exit 0; fi
kill -TERM "$pid"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { echo "stop: stopped"; exit 0; }; sleep 0.5; done
echo "stop: stack (pid $pid) did not stop in 30 s" >&2; exit 1
