#!/usr/bin/env bash
# make demo: start the embedded stack in the background (unless it is up), train a LoRA on the
# bundled samples through the whole pipeline, print where it is. `make stop` stops the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${LORAFLOW_DATA_DIR:-data}"
mkdir -p "$data/logs"

if [ -f "$data/stack.ready" ] && kill -0 "$(cat "$data/stack.pid" 2>/dev/null)" 2>/dev/null; then
  echo "demo: the stack is already running"
else
  echo "demo: starting the stack in the background (log: $data/logs/stack.log)"
  rm -f "$data/stack.ready"
  nohup npx tsx client.ts dev >>"$data/logs/stack.log" 2>&1 &
  for _ in $(seq 1 240); do
    [ -f "$data/stack.ready" ] && break
    kill -0 $! 2>/dev/null || { tail -n 30 "$data/logs/stack.log"; echo "demo: the stack failed to start" >&2; exit 1; }
    sleep 0.5
  done
  [ -f "$data/stack.ready" ] || { echo "demo: the stack did not come up in 2 minutes: see $data/logs" >&2; exit 1; }
fi

echo "demo: training a LoRA on samples/demo (6 images, 3 with sidecar captions, 3 captioned on the GPU worker)"
result=$(npx tsx client.ts train --name robot-demo --images samples/demo --trigger lfrobot --steps 40 --wait --json)
field() { node -e 'const r=JSON.parse(process.argv[1]);console.log(process.argv[2].split(".").reduce((o,k)=>o[k],r))' "$result" "$1"; }
uri=$(field published.uri)
id=$(field workflowId)
ui_port="${TEMPORAL_UI_PORT:-8233}"
cat <<TXT

demo: published ${uri}
  workflow:  ${id}
  Web UI:    http://127.0.0.1:${ui_port}/namespaces/default/workflows/${id}
  download:  npx loraflow download ${id} --out ./robot-lora
  stop the stack with: make stop
TXT
