#!/usr/bin/env bash
# Sets up everything svcnet needs on a Debian machine, as root: system packages, a virtualenv
# in .venv with svcnet and its pinned dependencies. Safe to run again; quick when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for tool in ip:iproute2 nft:nftables conntrack:conntrack curl:curl dig:bind9-dnsutils; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
done
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  need_apt+=(python3 python3-venv python3-pip)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v kubectl >/dev/null 2>&1 || echo "setup: note: kubectl is not installed; the tests that drive kubectl need it" >&2

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.svcnet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
