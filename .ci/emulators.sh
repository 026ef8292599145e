#!/usr/bin/env bash
# Start / stop the AWS API emulators the emulator tests run against (no Docker):
#   LocalStack 4.8.1 in host mode (its own venv, .ci/localstack-venv) and moto server (.venv).
#
#   .ci/emulators.sh start    # idempotent; writes .ci/state/emulators.env
#   .ci/emulators.sh status   # exit 0 when both answer
#   .ci/emulators.sh stop     # stops what `start` started and waits for it to exit
#
# Readiness: LocalStack GET /_localstack/health; moto GET /moto-api/ (its dashboard page; not
# /moto-api/data.json, which serialises the whole emulator state and takes tens of seconds once a
# test run has filled it, while each abandoned poll keeps the server busy).
# Both listen on loopback only, on 4566 / 5000 when free, else on a free port. The chosen
# endpoints go to .ci/state/emulators.env (AIDC_LOCALSTACK_ENDPOINT, AIDC_MOTO_ENDPOINT), which
# callers source with `set -a; . .ci/state/emulators.env; set +a`. Logs and pid files are in
# .ci/state/. Overrides: PYTHON311 (interpreter for the LocalStack venv), MOTO_SERVER (binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.ci/state"
LS_VENV="$ROOT/.ci/localstack-venv"
ENV_FILE="$STATE/emulators.env"
PYTHON311="${PYTHON311:-python3.11}"
MOTO_SERVER="${MOTO_SERVER:-$ROOT/.venv/bin/moto_server}"
# Pins measured to work on Python 3.11 (newer LocalStack needs py3.12+ and an auth token).
LS_PINS=("localstack-core[runtime]==4.8.1" "cbor2<6" "pyopenssl<26" "cryptography<46" "service_identity")
LS_READY_S=90     # first start of LocalStack loads its plugins; later starts take ~2 s
MOTO_READY_S=30
STOP_WAIT_S=20

STARTING=0  # set while `start` runs: a failed start stops what it already started

log() { printf 'emulators: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    if ((STARTING)); then STARTING=0; cmd_stop; fi
    exit 1
}

alive() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

port_free() {
    "$PYTHON311" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

free_port() {  # preferred port when free, else one the kernel picks
    if port_free "$1"; then echo "$1"; return; fi
    "$PYTHON311" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ensure_localstack_venv() {
    # The marker is written only after a complete install of exactly these pins.
    local marker="$LS_VENV/.aidc-pins"
    if [[ -x "$LS_VENV/bin/python" && -f "$marker" && "$(cat "$marker")" == "${LS_PINS[*]}" ]]; then
        return
    fi
    command -v "$PYTHON311" >/dev/null || die "$PYTHON311 not found; LocalStack 4.8.1 needs Python 3.11 (set PYTHON311=...)"
    log "installing LocalStack 4.8.1 into $LS_VENV (first time only: a few minutes)"
    "$PYTHON311" -m venv "$LS_VENV"
    "$LS_VENV/bin/pip" install -q "${LS_PINS[@]}" >"$STATE/localstack-venv.log" 2>&1 \
        || die "pip install of LocalStack failed; see $STATE/localstack-venv.log"
    echo "${LS_PINS[*]}" >"$marker"
}

wait_ready() {  # name path seconds
    local name=$1 url limit=$3 i
    url="$(endpoint_of "$name")$2"
    for ((i = 0; i < limit * 2; i++)); do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            log "$name ready at $(endpoint_of "$name")"
            return 0
        fi
        alive "$name" || die "$name exited during start; last log lines:
$(tail -n 20 "$STATE/$name.log")"
        sleep 0.5
    done
    die "$name not ready after ${limit}s at $url; see $STATE/$name.log"
}

endpoint_of() {  # name -> endpoint recorded by the last start
    [[ -f "$STATE/$1.endpoint" ]] && cat "$STATE/$1.endpoint"
}

start_one() {  # name preferred_port command...
    local name=$1 preferred=$2 port
    shift 2
    if alive "$name" && [[ -n "$(endpoint_of "$name")" ]]; then
        log "$name already running (pid $(cat "$STATE/$name.pid"))"
        return
    fi
    port=$(free_port "$preferred")
    echo "http://127.0.0.1:$port" >"$STATE/$name.endpoint"
    # setsid: the emulator leads its own process group, so `stop` ends it and its children only.
    PORT="$port" setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}

start_localstack() {
    start_one localstack 4566 bash -c '
        exec env OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN="127.0.0.1:$PORT" DNS_ADDRESS=0 \
            FILESYSTEM_ROOT="$0/localstack-fs" CONFIG_DIR="$0/localstack-config" DISABLE_EVENTS=1 \
            SKIP_SSL_CERT_DOWNLOAD=1 "$1/bin/python" -m localstack.runtime.main' "$STATE" "$LS_VENV"
}

start_moto() {
    [[ -x "$MOTO_SERVER" ]] || die "moto_server not found at $MOTO_SERVER (pip install 'moto[server]==5.2.5' into .venv)"
    start_one moto 5000 bash -c 'exec env MOTO_ACCOUNT_ID=000000000000 "$0" -H 127.0.0.1 -p "$PORT"' "$MOTO_SERVER"
}

write_env() {
    {
        echo "AIDC_LOCALSTACK_ENDPOINT=$(endpoint_of localstack)"
        echo "AIDC_MOTO_ENDPOINT=$(endpoint_of moto)"
    } >"$ENV_FILE"
    log "endpoints written to $ENV_FILE"
    cat "$ENV_FILE" >&2
}

cmd_start() {
    STARTING=1
    mkdir -p "$STATE"
    ensure_localstack_venv
    start_moto
    start_localstack
    wait_ready moto /moto-api/ "$MOTO_READY_S"
    wait_ready localstack /_localstack/health "$LS_READY_S"
    write_env
    STARTING=0
}

stop_one() {
    local name=$1 pid i
    if ! alive "$name"; then
        rm -f "$STATE/$name.pid" "$STATE/$name.endpoint"
        return
    fi
    pid=$(cat "$STATE/$name.pid")
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_WAIT_S * 2; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not exit in ${STOP_WAIT_S}s; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid" "$STATE/$name.endpoint"
}

cmd_stop() {
    stop_one localstack
    stop_one moto
    rm -f "$ENV_FILE"
}

cmd_status() {
    local rc=0 name ep path
    for name in localstack moto; do
        ep=$(endpoint_of "$name" || true)
        path=/moto-api/
        [[ $name == localstack ]] && path=/_localstack/health
        if alive "$name" && curl -fsS -o /dev/null --max-time 2 "$ep$path" 2>/dev/null; then
            echo "$name: running at $ep (pid $(cat "$STATE/$name.pid"))"
        else
            echo "$name: not running"
            rc=1
        fi
    done
    return $rc
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
