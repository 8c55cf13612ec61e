#!/usr/bin/env bash
# Sets everything up, then runs the seed scenario: a single-node svcnet cluster inside network
# namespaces (laptop 192.168.1.10 and node 192.168.1.2 on a LAN), with examples/seed.yaml
# applied. It prints how to reach the pods and use kubectl, and runs until Ctrl-C, which
# removes everything it made. The machine's own network namespace is never changed.
# Extra arguments go to `python -m svcnet.demo` (--prefix, --data-dir, --exit-after-ready).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m svcnet.demo "$@"
