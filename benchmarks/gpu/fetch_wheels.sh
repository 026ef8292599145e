#!/usr/bin/env bash
# Here (with network): download the wheels of wheels.txt for the GPU machine (CPython 3.12,
# x86-64) into .whl/ at the repo root, which git ignores through .git/info/exclude. The device
# run carries .whl and session.sh installs it there with --no-index.
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
py=${PYTHON:-.venv/bin/python}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
grep -Ev '^\s*(#|$)' benchmarks/gpu/wheels.txt | while read -r req; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$req"
done
# One version per project: two would stop the install on the GPU machine.
ls .whl | sed -E 's/-[0-9].*//' | sort | uniq -d | { ! grep .; } || { echo "duplicate projects in .whl" >&2; exit 1; }
du -sh .whl
ls .whl
