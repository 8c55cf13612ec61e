#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, integration against a real server
# over HTTPS, kubectl and the official Python client). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
