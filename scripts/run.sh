#!/usr/bin/env bash
# Sets everything up, then runs the single-node cluster in the foreground (Ctrl-C stops it).
# Extra arguments go to `svcnet server`, e.g. --data-dir /tmp/svcnet --port 6443.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/svcnet server "$@"
