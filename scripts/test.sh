#!/usr/bin/env bash
# Runs every test: the type check, pytest (GPU worker) and vitest (the unit tier in test/unit/,
# with the checks of generated files; then the integration tests against real Temporal, S3 and
# the runpod worker loop). Prints one closing line "N passed, N failed" and exits non-zero if
# anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export LORAFLOW_PYTHON="$PWD/.tools/pyenv/bin/python" LORAFLOW_MODEL_DIR="$PWD/.tools/models" HF_HUB_OFFLINE=1
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
failed_steps=()

echo "== types"
npx tsc --noEmit || failed_steps+=(typecheck)

echo "== pytest (gpu-worker)"
(cd gpu-worker && "$LORAFLOW_PYTHON" -m pytest -q tests --junitxml="$reports/pytest.xml") || failed_steps+=(pytest)

echo "== vitest"
npx vitest run --reporter=default --reporter=json --outputFile.json="$reports/vitest.json" || failed_steps+=(vitest)

# One summary line over both runners, read from their machine-readable reports.
read -r passed failed < <("$LORAFLOW_PYTHON" - "$reports" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
d = Path(sys.argv[1]); passed = failed = 0
if (d / "pytest.xml").exists():
    for s in ET.parse(d / "pytest.xml").getroot().iter("testsuite"):
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        failed += bad; passed += int(s.get("tests", 0)) - bad - int(s.get("skipped", 0))
if (d / "vitest.json").exists():
    v = json.loads((d / "vitest.json").read_text())
    passed += v.get("numPassedTests", 0); failed += v.get("numFailedTests", 0)
print(passed, failed)
PY
)
echo
if [ ${#failed_steps[@]} -gt 0 ]; then echo "FAILED steps: ${failed_steps[*]}"; fi
echo "${passed:-0} passed, ${failed:-0} failed"
[ ${#failed_steps[@]} -eq 0 ] && [ "${passed:-0}" -gt 0 ]
