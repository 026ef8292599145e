#!/usr/bin/env bash
# Creates .venv and installs aidc with every extra the tests use. Idempotent: a venv whose
# installed project matches pyproject.toml is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.aidc-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "setup-venv: .venv up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# The CPU build of torch first: CI machines carry it on local disk; a looser spec would pull a
# multi-GB CUDA build. GPU hosts install their CUDA build instead (README).
.venv/bin/pip install -q 'torch==2.13.0'
.venv/bin/pip install -q -e '.[workloads,ansible,dev]'
echo "$want" > "$stamp"
echo "setup-venv: installed"
