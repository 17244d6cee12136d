#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./run.sh          set up (.venv, dependencies, toy models), start the local server, run the guide's commands
#   ./run.sh test     set up, then run every test (in .venv), then the script tests again in .venv-light
#   ./run.sh test-light [ARGS]   only the script tests in .venv-light (the scripts' install: no TensorFlow)
#   ./run.sh lint     set up, then ruff check (pyproject.toml's settings; .ci/run runs it before the tests)
#   ./run.sh mutation [GROUP]   set up, then mutation testing (testing/mutation.py, README "Tests"; not in CI)
#   ./run.sh stop     stop the server that ./run.sh left running
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
repo="$PWD"
venv="$repo/.venv"
py="$venv/bin/python"
light="$repo/.venv-light"  # the scripts as pip install ./python has them, without TensorFlow, and the test tools
light_py="$light/bin/python"
port="${TFS_PORT:-8500}"
rest_port="${TFS_REST_PORT:-8501}"
state="$repo/.run"

setup() {
    if [ ! -x "$py" ]; then
        echo "== creating .venv" >&2
        python3 -m venv "$venv"
    fi
    # Reinstall only when the requirements change.
    stamp="$venv/.requirements.sha256"
    want="$(cat requirements-dev.txt server/requirements.txt python/requirements.txt | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "== installing dependencies into .venv (pinned in requirements-dev.txt)" >&2
        "$py" -m pip install -q --disable-pip-version-check -r requirements-dev.txt >&2
        echo "$want" > "$stamp"
    fi
    "$py" models/build_toy_models.py >&2
}

setup_light() {
    if [ ! -x "$light_py" ]; then
        echo "== creating .venv-light (the scripts without TensorFlow)" >&2
        python3 -m venv "$light"
    fi
    stamp="$light/.requirements.sha256"
    want="$(cat python/requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "== installing the scripts' dependencies into .venv-light (python/requirements.txt)" >&2
        "$light_py" -m pip install -q --disable-pip-version-check -r python/requirements.txt -r requirements-test.txt >&2
        echo "$want" > "$stamp"
    fi
}

# Every test in .venv; then, unless ARGS name tests to run, the script tests again in .venv-light.
run_tests() {
    local status=0 named=0
    for arg in "$@"; do [[ "$arg" == -* ]] || named=1; done
    "$py" -m pytest "$@" || status=$?
    if [ "$named" = 0 ]; then
        echo "== the script tests again, in .venv-light (no TensorFlow)" >&2
        "$light_py" -m pytest python/tests "$@" || status=$?
    fi
    return "$status"
}

server_up() {
    "$py" - "$port" <<'PY'
import sys, grpc
with grpc.insecure_channel(f"localhost:{sys.argv[1]}") as channel:
    try:
        grpc.channel_ready_future(channel).result(timeout=0.5)
    except grpc.FutureTimeoutError:
        sys.exit(1)
PY
}

start_server() {
    mkdir -p "$state"
    if server_up; then
        echo "== a server already answers on localhost:$port; using it" >&2
        return
    fi
    echo "== starting server/tensorflow_model_server on port $port, REST on $rest_port (log: .run/server.log)" >&2
    nohup server/tensorflow_model_server --port="$port" --rest_api_port="$rest_port" \
        --monitoring_config_file=models/config/monitoring.config \
        --model_config_file=models/save/toy_labels.config \
        --allow_version_labels_for_unavailable_models > "$state/server.log" 2>&1 &
    echo $! > "$state/server.pid"
    for _ in $(seq 1 600); do
        server_up && return
        kill -0 "$(cat "$state/server.pid")" 2>/dev/null || { cat "$state/server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "server did not become ready; see .run/server.log" >&2
    exit 1
}

# The guide's commands, in its order, then a reload that puts the demo config back.
GUIDE_COMMANDS='python3 grpcRequest.py -m Toy
python3 grpcRequest.py -m Toy_double
python3 grpcRequest.py -v 1
python3 grpcRequest.py -v 2
python3 grpcRequest.py -l stable
python3 grpcRequest.py -l canary
python3 grpcRequest.py -m MultiTask -i "age=[31.0, 45.0]" -i "income=[5.2, 1.0]" --output-filter scores --output-filter prediction --values
python3 grpcMultiTask.py --task classify:classify --task regress:regress -e age=31.0,income=5.2 -e age=45.0,income=1.0 --values
python grpcModelStatus.py -m Toy_double -v 1
python grpcMetadata.py
python grpcMetadata.py --raw
python grpcReloadModel.py -m Toy
python grpcRequestLog.py -m Toy
python grpcReloadModel.py -c ../models/save/toy_labels.config'

demo() {
    cd python
    export TFS_SERVER="localhost:$port"
    while IFS= read -r command; do
        echo "\$ $command"
        PATH="$venv/bin:$PATH" bash -c "$command"
    done <<< "$GUIDE_COMMANDS"
    cd "$repo"
    echo "== the server is still running on localhost:$port (stop it: ./run.sh stop)" >&2
}

case "${1:-demo}" in
    demo) setup; start_server; demo ;;
    test) setup; setup_light; shift; run_tests "$@" ;;
    test-light) setup; setup_light; shift; exec "$light_py" -m pytest python/tests "$@" ;;
    mutation) setup; shift; exec "$py" -m testing.mutation "$@" ;;
    lint) setup; exec "$venv/bin/ruff" check . ;;
    stop)
        if [ -f "$state/server.pid" ] && kill "$(cat "$state/server.pid")" 2>/dev/null; then
            echo "stopped the server (pid $(cat "$state/server.pid"))"
        else
            echo "no server started by ./run.sh is running"
        fi
        rm -f "$state/server.pid" ;;
    *) echo "usage: ./run.sh [demo|test|test-light|lint|mutation|stop]" >&2; exit 2 ;;
esac
