#!/usr/bin/env bash
# Runs the GPU work of issues 5-7 on the lent GPU machine, one part per device call, each inside
# the 10-minute call limit. The machine reaches no package index, so the wheels of wheels.txt
# travel as .whl/ (fetch_wheels.sh here first). The copy there has no .git: type the commit in
# literally (here: git rev-parse HEAD), or every JSON records "unknown". From this machine:
#
#   benchmarks/gpu/fetch_wheels.sh
#   run(command="AIDC_COMMIT=<sha> bash benchmarks/gpu/session.sh check", carry=[".whl"])
#   ... then hosts, serve, train (calls back to back: the machine stays warm 30 s)
#   .venv/bin/python benchmarks/gpu/record.py <each call's files_at> --append benchmarks/RESULTS.md
#
# Parts (outputs under $OUT, which the device tool sends back):
#   check          GPU pytest: CUDA-graph engine vs HF (fp32) and vs eager (bf16), the Triton decode
#                  attention kernel vs fp64, compiled bf16 training              -> check.xml/.log
#   hosts          tests/hosts against this machine (--hosts=local://)            -> hosts.xml/.log
#   serve          serve_throughput.py, all sections (HF static+compile last)     -> serve.json/.log
#   serve-hf       only HF static+compile, if serve ran out of time               -> serve-hf.json
#   train          train_mfu.py (default --with-1.3b)                             -> mfu.json/.log
#   profile-serve  gpu_profile.py serve: kernel table of a 64-stream decode step  -> profile-serve.txt
#   profile-train  gpu_profile.py train: kernel table of 350m training steps      -> profile-train.txt
# Extra arguments go to the part's program. Each part also writes env-<part>.txt (nvidia-smi,
# versions). Exit status: the part's.
set -uo pipefail
part=${1:?usage: session.sh check|hosts|serve|serve-hf|train|profile-serve|profile-train [extra args]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
out=${OUT:-$root/out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 AIDC_COMMIT=${AIDC_COMMIT:-unknown}
py=${PYTHON:-python3}

wheels=${AIDC_WHEELS-.whl}  # empty: use the Python as it is (CPU smoke runs here)
if [ -n "$wheels" ] && compgen -G "$wheels/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$wheels"/*.whl || { echo "wheel install from $wheels failed" >&2; exit 3; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}  # the repo's packages, no install needed

{
  echo "part=$part commit=$AIDC_COMMIT date=$(date -u +%FT%TZ)"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$py" - <<'PY'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("transformers", "pydantic", "fastapi", "uvicorn", "pytest-testinfra", "triton"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "missing")
PY
} >"$out/env-$part.txt" 2>&1
cat "$out/env-$part.txt"

pytest_run() {  # name, timeout, pytest args...: junit XML + full log, exit status kept
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$py" -m pytest -p no:cacheprovider -rA --junitxml "$out/$name.xml" "$@" 2>&1 |
    tee "$out/$name.log"
}

case $part in
  check)
    pytest_run check 560 tests/unit/serve/test_serve_engine_gpu.py tests/unit/serve/test_serve_decode_attention.py \
      tests/integration/test_train_gpu.py "$@"
    ;;
  hosts)
    # The GPU machine is not converged by site.yml (no package index there): the package and
    # hold checks report that honestly; the gpu-marked checks are the ones issue 5 asks for.
    pytest_run hosts 300 tests/hosts --hosts=local:// --aidc-extra-vars benchmarks/gpu/device_vars.yml \
      --aidc-python "$py" "$@"
    ;;
  serve)
    timeout 570 "$py" benchmarks/serve_throughput.py --out "$out/serve.json" "$@" 2>&1 | tee "$out/serve.log"
    ;;
  serve-hf)
    timeout 570 "$py" benchmarks/serve_throughput.py --sections hf_static_compile --out "$out/serve-hf.json" "$@" \
      2>&1 | tee "$out/serve-hf.log"
    ;;
  train)
    [ $# -gt 0 ] || set -- --with-1.3b
    timeout 570 "$py" benchmarks/train_mfu.py --json "$out/mfu.json" "$@" 2>&1 | tee "$out/mfu.log"
    ;;
  profile-serve | profile-train)
    timeout 570 "$py" benchmarks/gpu/gpu_profile.py "${part#profile-}" --out "$out/$part.txt" "$@" 2>&1 |
      tee "$out/$part.log"
    ;;
  *)
    echo "unknown part '$part': choose check, hosts, serve, serve-hf, train, profile-serve or profile-train" >&2
    exit 2
    ;;
esac
