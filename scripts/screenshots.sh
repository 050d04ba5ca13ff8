#!/usr/bin/env bash
# Regenerates the README's screenshots of the real Temporal Web UI with headless Chromium:
#   docs/img/webui-running.png   a pipeline's detail page while it trains (Pending Activities: the
#                                trainOnGpu activity and its heartbeat with step, loss and ETA)
#   docs/img/webui-finished.png  the workflow list filtered on LoraStage = "published", with the
#                                LoraName and LoraStage search attributes as columns, once it published
# It uploads samples/demo to the stack's S3 (so the workflow input names an s3:// dataset, not a
# local path), starts a longer pipeline (a fresh seed, so a new run every time), captures the first
# page while the GPU stage trains, waits for the run to publish and captures the second.
# The worker identity (pid@hostname) is blanked on the page before a capture, and a capture whose page
# text still holds this machine's hostname, home, repo path, a presigned URL or a known secret is refused.
# If the Web UI does not answer, the stack is started with `make demo` (stop it with `make stop`).
#
# usage: scripts/screenshots.sh
#   LORAFLOW_WEBUI_URL  the Web UI (default http://127.0.0.1:$TEMPORAL_UI_PORT, port 8233)
#   TEMPORAL_NAMESPACE  its namespace (default default)
#   SCREENSHOT_STEPS    training steps of the captured run (default 1500: ~1.5 min on an idle 2-core CPU, more under load)
#   SCREENSHOT_NAME     the LoRA name (default robot-webui)
#   SCREENSHOT_DIR      where the PNGs go (default docs/img)
#   SCREENSHOT_SIZE     browser window of the detail page, WxH (default 1440x900; the list is as wide, 560 high)
#   CHROMIUM            the browser binary (default: chromium, chromium-browser or google-chrome on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."

ui="${LORAFLOW_WEBUI_URL:-http://127.0.0.1:${TEMPORAL_UI_PORT:-8233}}"
ui="${ui%/}"
ns="${TEMPORAL_NAMESPACE:-default}"
steps="${SCREENSHOT_STEPS:-1500}"
name="${SCREENSHOT_NAME:-robot-webui}"
out="${SCREENSHOT_DIR:-docs/img}"
size="${SCREENSHOT_SIZE:-1440x900}"
say() { printf '\033[1mscreenshots:\033[0m %s\n' "$*"; }
die() { printf 'screenshots: error: %s\n' "$*" >&2; exit 1; }

chromium="${CHROMIUM:-}"
if [ -z "$chromium" ]; then
  for c in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$c" >/dev/null && { chromium="$c"; break; }
  done
fi
[ -n "$chromium" ] || die "no Chromium found: install chromium or set CHROMIUM"
mkdir -p "$out"

if ! curl -sf -o /dev/null "$ui/"; then
  say "the Web UI at $ui does not answer: starting the stack with make demo"
  make demo
  curl -sf -o /dev/null "$ui/" || die "the Web UI at $ui still does not answer"
fi

# Captures one page: CDP over --remote-debugging-pipe (fds 3 and 4), no npm packages needed.
# Waits until the page's text holds every string of SHOT_WAIT (JSON array), redacts worker
# identities, refuses pages that show local paths or secrets, writes SHOT_OUT.
capture_js=$(cat <<'JS'
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = process.env;
const [width, height] = env.SHOT_SIZE.split('x').map(Number);
const wait = JSON.parse(env.SHOT_WAIT);
const profile = mkdtempSync(path.join(os.tmpdir(), 'loraflow-shot-'));
const chrome = spawn(env.SHOT_CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
  '--no-default-browser-check', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank'],
  { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
let chromeLog = '';
chrome.stderr.on('data', (d) => { chromeLog = (chromeLog + d).slice(-4000); });
const exited = new Promise((resolve) => chrome.once('exit', resolve));
let nextId = 1, buffer = '';
const pending = new Map();
chrome.stdio[4].on('data', (d) => {
  buffer += d;
  for (let i; (i = buffer.indexOf('\0')) >= 0; buffer = buffer.slice(i + 1)) {
    const msg = JSON.parse(buffer.slice(0, i));
    const p = msg.id && pending.get(msg.id);
    if (p) { pending.delete(msg.id); msg.error ? p.reject(new Error(msg.error.message)) : p.resolve(msg.result); }
  }
});
const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, { resolve, reject });
  chrome.stdio[3].write(JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) }) + '\0');
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Text that must never be in a screenshot: this machine's names and paths, presigned URLs, secrets.
const host = os.hostname();
const forbidden = [path.resolve('.'), os.homedir() + '/', `@${host}`, 'X-Amz-', 'loraflow-local-secret', 'local-dev-key',
  env.AWS_SECRET_ACCESS_KEY, env.RUNPOD_API_KEY, env.LORAFLOW_CODEC_TOKEN, env.HF_TOKEN, host.length >= 4 && host]
  .filter((s) => s && s.length >= 3);
// Worker identities are `pid@hostname`: blanked wherever the UI shows them, also after re-renders.
const redact = `(() => {
  const re = /\\b\\d+@[A-Za-z0-9._-]+/g;
  const fix = (root) => {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n; (n = walk.nextNode());) {
      const v = n.nodeValue.replace(re, '(worker identity hidden)');
      if (v !== n.nodeValue) n.nodeValue = v;
    }
  };
  fix(document.body);
  if (!window.__redacting) { window.__redacting = new MutationObserver(() => fix(document.body)); window.__redacting.observe(document.body, { subtree: true, childList: true, characterData: true }); }
})()`;

try {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  const evaluate = async (expression) => (await page('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })).result.value;
  await page('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
  await page('Page.enable');
  if (env.SHOT_INIT) await page('Page.addScriptToEvaluateOnNewDocument', { source: env.SHOT_INIT });
  await page('Page.navigate', { url: env.SHOT_URL });
  // The detail page redirects to .../<run id>/history; the tab is picked after that.
  if (env.SHOT_TAB) {
    for (let t = 0; t < 60 && !/\/history$/.test(await evaluate('location.pathname')); t++) await sleep(500);
    await page('Page.navigate', { url: (await evaluate('location.href')).replace(/\/history$/, `/${env.SHOT_TAB}`) });
  }
  let text = '';
  for (let t = 0; t < 60; t++) {
    await sleep(1000);
    text = (await evaluate('document.body ? document.body.innerText : ""')) ?? '';
    if (wait.every((w) => text.includes(w))) break;
  }
  const missing = wait.filter((w) => !text.includes(w));
  if (missing.length) throw new Error(`the page never showed ${JSON.stringify(missing)} (${env.SHOT_URL})`);
  if (env.SHOT_CLICK) await evaluate(`document.querySelector(${JSON.stringify(env.SHOT_CLICK)})?.click()`);
  await evaluate(redact);
  await sleep(1500); // let the layout and fonts settle
  await evaluate(redact);
  text = await evaluate('document.body.innerText');
  const leaks = forbidden.filter((f) => text.includes(f));
  if (leaks.length) throw new Error(`refusing to save ${env.SHOT_OUT}: the page shows local or secret text (${leaks.length} item(s))`);
  const { data } = await page('Page.captureScreenshot', { format: 'png' });
  writeFileSync(env.SHOT_OUT, Buffer.from(data, 'base64'));
} catch (err) {
  console.error(`capture failed: ${err.message}\n${chromeLog}`);
  process.exitCode = 1;
} finally {
  await send('Browser.close').catch(() => chrome.kill());
  await Promise.race([exited, sleep(10000).then(() => chrome.kill('SIGKILL'))]);
  rmSync(profile, { recursive: true, force: true });
}
JS
)
capture() { # url out wait-json size [tab] [click-selector] [init-script]
  SHOT_CHROMIUM="$chromium" SHOT_URL="$1" SHOT_OUT="$2" SHOT_WAIT="$3" SHOT_SIZE="$4" SHOT_TAB="${5:-}" SHOT_CLICK="${6:-}" SHOT_INIT="${7:-}" \
    node --input-type=module -e "$capture_js"
}
json_field() { node -e 'let v=JSON.parse(process.argv[1]);for(const k of process.argv[2].split("."))v=v?.[k];console.log(v??"")' "$1" "$2"; }

# The dataset goes to S3 first: a local --images path would be shown (absolute) in the workflow input.
dataset=$(npx tsx --input-type=module -e '
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { loadConfig } from "./lib/config.ts";
import { makeStorage, putBytes } from "./lib/s3.ts";
const [dir, prefix] = process.argv.slice(-2);
const storage = makeStorage(loadConfig());
for (const file of (await readdir(dir)).sort()) await putBytes(storage, `${prefix}/${file}`, await readFile(path.join(dir, file)), "application/octet-stream");
console.log(`s3://${storage.bucket}/${prefix}`);
' samples/demo "datasets/$name")
say "dataset uploaded to $dataset"

seed=$(( $(date +%s) % 1000000 ))
started=$(npx tsx client.ts train --name "$name" --images "$dataset" --trigger lfrobot --steps "$steps" --seed "$seed" --json)
id=$(json_field "$started" workflowId)
[ "$(json_field "$started" attached)" = "false" ] || die "$id already existed; run the script again (a new seed makes a new run)"
say "started $id ($steps steps)"

# Wait until the GPU stage has trained a little, so the heartbeat shows progress.
for _ in $(seq 1 300); do
  s=$(npx tsx client.ts status "$id" --json)
  stage=$(json_field "$s" stage); step=$(json_field "$s" step)
  case "$(json_field "$s" status)" in RUNNING) ;; *) die "$id ended ($(json_field "$s" status)) before it could be captured training: raise SCREENSHOT_STEPS";; esac
  [ "$stage" = train ] && [ "${step:-0}" -ge $(( steps / 10 )) ] && break
  sleep 1
done
say "capturing $out/webui-running.png (training step ${step:-?}/$steps)"
capture "$ui/namespaces/$ns/workflows/$id" "$out/webui-running.png" '["Running","trainOnGpu","totalSteps"]' "$size" pending-activities \
  || die "could not capture the running pipeline (if it finished first, raise SCREENSHOT_STEPS)"

say "waiting for $id to publish"
for _ in $(seq 1 720); do
  s=$(npx tsx client.ts status "$id" --json)
  status=$(json_field "$s" status)
  [ "$status" = RUNNING ] || break
  sleep 5
done
[ "$status" = COMPLETED ] || die "$id ended $status: $(json_field "$s" state)"

query=$(node -e 'console.log(encodeURIComponent(`LoraStage = "published"`))')
columns=$(node -e 'const [ns]=process.argv.slice(1);console.log(`localStorage.setItem("namespace-workflow-table-columns", ${JSON.stringify(JSON.stringify({[ns]:["Status","Workflow ID","LoraName","LoraStage","End","Execution Duration"].map((label)=>({label}))}))})`)' "$ns")
say "capturing $out/webui-finished.png"
capture "$ui/namespaces/$ns/workflows?query=$query" "$out/webui-finished.png" "[\"$id\",\"published\"]" "${size%x*}x560" '' \
  'button[aria-label="Collapse saved views"]' "$columns" || die "could not capture the workflow list"

say "wrote $out/webui-running.png and $out/webui-finished.png ($id)"
