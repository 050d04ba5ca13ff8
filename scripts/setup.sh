#!/usr/bin/env bash
# Idempotent bootstrap for a fresh machine: Go-built Temporal CLI and S3 server, the GPU
# worker's Python environment, the tiny offline models, node_modules.
# Heavy, reproducible things live in a cache outside the repo, keyed by what they depend on,
# so a fresh clone on a warm machine sets up in seconds; .tools/ only links to them.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${LORAFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loraflow}"
TEMPORAL_CLI_VERSION=v1.5.1   # last CLI whose go.mod has no replace directives (go install refuses those)
VERSITYGW_VERSION=v1.7.0
TEMPORAL_TEST_SERVER_VERSION=1.38.0  # the Java SDK's time-skipping test server (unit tier)
UV_VERSION=0.13.8
mkdir -p "$CACHE" .tools/bin

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# --- Go tools, built from official source with `go install` --------------------------------
command -v go >/dev/null || die "Go >= 1.25 is required to build the Temporal CLI (install Go, then rerun)"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 25 ] 2>/dev/null || die "Go >= 1.25 is required, found $(go env GOVERSION)"

go_tool() { # name module version
  local dest="$CACHE/tools/$1-$3"
  if [ ! -x "$dest/$1" ]; then
    say "building $1 $3 from source (first time only, a few minutes)"
    rm -rf "$dest.tmp" && GOBIN="$dest.tmp" go install "$2@$3" && rm -rf "$dest" && mv "$dest.tmp" "$dest"
  fi
  ln -sfn "$dest/$1" ".tools/bin/$1"
}
go_tool temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_CLI_VERSION"
go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"

# --- Temporal's time-skipping test server, from the Java SDK's Maven artifact -----------------
# @temporalio/testing would download a native build at run time; the same server runs on the JVM.
command -v java >/dev/null && command -v mvn >/dev/null || die "Java and Maven are required for the time-skipping test server"
TSS="$CACHE/tools/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION"
if [ ! -f "$TSS/classpath" ] || ! tr ':' '\n' < "$TSS/classpath" | xargs -r ls >/dev/null 2>&1; then
  say "fetching Temporal's test server $TEMPORAL_TEST_SERVER_VERSION (first time only)"
  rm -rf "$TSS" && mkdir -p "$TSS"
  cat > "$TSS/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>loraflow</groupId><artifactId>temporal-test-server</artifactId><version>1</version>
  <dependencies><dependency><groupId>io.temporal</groupId><artifactId>temporal-test-server</artifactId>
    <version>$TEMPORAL_TEST_SERVER_VERSION</version></dependency></dependencies>
</project>
POM
  mvn -q -f "$TSS/pom.xml" dependency:build-classpath -Dmdep.outputFile="$TSS/classpath.tmp" >/dev/null \
    && mv "$TSS/classpath.tmp" "$TSS/classpath" || die "could not fetch io.temporal:temporal-test-server:$TEMPORAL_TEST_SERVER_VERSION with Maven"
fi
cat > .tools/bin/temporal-test-server <<SH
#!/bin/sh
# Temporal's time-skipping test server: \$1 is the port (as @temporalio/testing passes it).
exec java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "\$(cat "$TSS/classpath")" io.temporal.testserver.TestServer "\$@"
SH
chmod +x .tools/bin/temporal-test-server

# --- Python environment for the GPU worker, keyed by the pinned requirements ----------------
command -v python3 >/dev/null || die "python3 (>= 3.11) is required"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "python3 >= 3.11 is required"
UV="$CACHE/uv-$UV_VERSION/bin/uv"
if [ ! -x "$UV" ]; then
  say "installing uv $UV_VERSION"
  rm -rf "$CACHE/uv-$UV_VERSION" && python3 -m venv "$CACHE/uv-$UV_VERSION" \
    && "$CACHE/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"
fi
# requirements.txt (what the GPU image installs) and requirements-dev.txt (pytest) are compiled with
# --generate-hashes: uv checks every download against them.
PYENV="$CACHE/pyenv-$(hash_of gpu-worker/requirements.txt gpu-worker/requirements-dev.txt)"
if [ ! -f "$PYENV/.complete" ]; then
  say "creating the GPU worker's Python environment (torch is large: first time only)"
  rm -rf "$PYENV"
  "$UV" venv -q -p "$(command -v python3)" "$PYENV"
  UV_CACHE_DIR="$CACHE/uv" VIRTUAL_ENV="$PYENV" "$UV" pip install -q --require-hashes -r gpu-worker/requirements.txt -r gpu-worker/requirements-dev.txt
  touch "$PYENV/.complete"
fi
ln -sfn "$PYENV" .tools/pyenv

# --- Tiny offline models (no model hub): keyed by the build script and the environment ------
MODELS="$CACHE/models-$(hash_of gpu-worker/build_tiny_models.py gpu-worker/requirements.txt)"
if [ ! -f "$MODELS/.complete" ]; then
  say "building the tiny offline models"
  rm -rf "$MODELS"
  HF_HUB_OFFLINE=1 .tools/pyenv/bin/python gpu-worker/build_tiny_models.py --out "$MODELS"
  touch "$MODELS/.complete"
fi
ln -sfn "$MODELS" .tools/models

# --- node_modules, reinstalled only when the lock file changes -------------------------------
lock_hash=$(hash_of package-lock.json)
if [ "$(cat node_modules/.lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  say "installing node packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.lock-hash
fi
say "ready"
