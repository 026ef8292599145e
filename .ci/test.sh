#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine (root): installs what the tests need
# (apt + pip), starts the AWS emulators, runs pytest, and stops everything it started — also
# when the tests fail. Called by `make test` (the README's test command) and so by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: needs root (apt installs, systemd-nspawn test hosts); run: sudo make test" >&2
  exit 2
fi

echo "== apt prerequisites"
bash .ci/hosts-prereqs.sh
echo "== python environment"
bash .ci/setup-venv.sh

cleanup() {
  echo "== stopping emulators"
  bash .ci/emulators.sh stop || true
}
trap cleanup EXIT INT TERM
echo "== starting emulators"
bash .ci/emulators.sh start
set -a; . .ci/state/emulators.env; set +a
# With CI set, an emulator or test host that is missing fails its tests instead of skipping them.
export CI=${CI:-1} AIDC_REQUIRE_HOSTS=1

echo "== lint (ruff, yamllint, ansible-lint production profile)"
.venv/bin/ruff check infra policies workloads tests benchmarks
PATH="$PWD/.venv/bin:$PATH" make --no-print-directory lint-ansible

echo "== tests"
# pytest exits 5 when it collects nothing: that is a broken run, and `set -e` fails on it too.
.venv/bin/pytest tests/unit tests/integration -q -ra --timeout=900 -p no:cacheprovider "$@"
