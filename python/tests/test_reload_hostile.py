"""grpcReloadModel.py against hostile input and answers: bad version flags refused before anything is sent, an
empty config, a reload cut short by the deadline or by the server dying, answers with codes no client knows.

The scripts run as subprocesses against the real server; the answers it never gives (an error code or a state
this client does not know, a status check that hangs after an OK reload) come from `peer` below, a ModelService
that answers fixed bytes (tests/fake_server.py has no HandleReloadConfigRequest).
"""

import os
import re
import signal
import subprocess
import sys
import time
from concurrent import futures
from contextlib import contextmanager

import pytest
from script_helpers import PYTHON_DIR, run_script

from testing.server import ServerProcess
from tfsclient import protos

PROGRAM = "grpcReloadModel.py"
RELOADS = "Adding/updating models"  # the server logs it once for each reload it is sent


@pytest.fixture(scope="module")
def server(toy_models):
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models", "--max_num_load_retries=0") as s:
        yield s


def reload(server, *args, timeout=60):
    return run_script(PROGRAM, *args, server=server.target, timeout=timeout)


# -- defects 1 and 2: version flags that TF Serving cannot take, refused before anything is sent -------------

VERSIONS = "a version is a whole number from 0 to 2**63-1, e.g. --versions 1,2"
LATEST = "--latest N serves the N latest versions, N a whole number from 1 to 2**31-1, e.g. --latest 2"
LABEL = "a label names a version, a whole number from 0 to 2**63-1, e.g. --label stable=1"

BAD_FLAGS = [
    ("versions-minus-one", ["-m", "Toy", "--versions=-1"],
     f"--versions: -1 is negative: {VERSIONS} (for the latest version, give --latest 1)"),
    ("versions-1e20", ["-m", "Toy", "--versions", "1e20"], f"--versions: '1e20' is not a whole number: {VERSIONS}"),
    ("versions-1.0", ["-m", "Toy", "--versions", "1,1.0"], f"--versions: '1.0' is not a whole number: {VERSIONS}"),
    ("versions-int64", ["-m", "Toy", "--versions", "9223372036854775808"],
     f"--versions: 9223372036854775808 is more than 2**63-1: {VERSIONS}"),
    ("versions-superscript", ["-m", "Toy", "--versions", "²"],
     f"--versions: '²' is not written in the digits 0-9: {VERSIONS}"),
    ("versions-arabic-digit", ["-m", "Toy", "--versions", "1,٣"],  # int() reads it as 3
     f"--versions: '٣' is not written in the digits 0-9: {VERSIONS}"),
    ("versions-underscore", ["-m", "Toy", "--versions", "1_0"],  # int() reads it as 10
     f"--versions: '1_0' is not a number: {VERSIONS}"),
    ("versions-empty", ["-m", "Toy", "--versions", ""],  # it kept the versions served
     "--versions is empty: give the versions to serve, e.g. --versions 1,2"),
    ("versions-empty-item", ["-m", "Toy", "--versions", "1,,2"],
     "--versions: an empty item in '1,,2': give the versions to serve separated by commas, e.g. --versions 1,2"),
    ("versions-twice", ["-m", "Toy", "--versions", "1,2,1"],
     "--versions: version 1 is listed twice in '1,2,1': give each version once"),
    ("latest-5e9", ["-m", "Toy", "--latest", "5e9"], f"--latest: '5e9' is not a whole number: {LATEST}"),
    ("latest-uint32", ["-m", "Toy", "--latest", "5000000000"], f"--latest: 5000000000 is more than 2**31-1: {LATEST}"),
    ("latest-int32", ["-m", "Toy", "--latest", "2147483648"], f"--latest: 2147483648 is more than 2**31-1: {LATEST}"),
    ("latest-zero", ["-m", "Toy", "--latest", "0"], f"--latest: 0 is less than 1: {LATEST}"),
    ("latest-superscript", ["-m", "Toy", "--latest", "³"], f"--latest: '³' is not written in the digits 0-9: {LATEST}"),
    ("label-superscript", ["-m", "Toy", "--versions", "1", "--label", "stable=²"],
     f"--label stable=²: '²' is not written in the digits 0-9: {LABEL}"),
    ("label-1e3", ["-m", "Toy", "--label", "stable=1e3"], f"--label stable=1e3: '1e3' is not a whole number: {LABEL}"),
    ("label-negative", ["-m", "Toy", "--label", "stable=-1"], f"--label stable=-1: -1 is negative: {LABEL}"),
    ("label-int64", ["-m", "Toy", "--label", "stable=9223372036854775808"],
     f"--label stable=9223372036854775808: 9223372036854775808 is more than 2**63-1: {LABEL}"),
    ("label-twice", ["-m", "Toy", "--versions", "1,2", "--label", "stable=1", "--label", "stable=2"],  # the last won
     "--label stable is given twice (stable=1, then stable=2): give each label once"),
    ("label-not-utf8", ["-m", "Toy", "--label", "\udcff=1"], "--label '\\\\xff=1': the label is not valid UTF-8"),
    ("model-not-utf8", ["-m", "\udcff", "--versions", "1"], "-m '\\\\xff': the model name is not valid UTF-8"),
    ("base-path-not-utf8", ["-m", "Toy", "--base-path", "/tmp/\udcff"],
     "--base-path '/tmp/\\\\xff': the path is not valid UTF-8"),
    ("base-path-empty", ["-m", "Toy", "--base-path", ""],  # it took the default
     "--base-path is empty: give the model's folder, or leave the flag out for the default"),
    ("versions-empty-with-c", ["-c", "x.config", "--versions", ""],
     "--base-path, --versions, --latest and --label go with -m, not -c"),
]


@pytest.mark.parametrize("args, message", [case[1:] for case in BAD_FLAGS], ids=[case[0] for case in BAD_FLAGS])
def test_bad_version_flags_are_one_line_and_send_nothing(server, args, message):
    reloads = server.log().count(RELOADS)
    result = reload(server, *args)
    assert (result.code, result.out, result.err) == (2, "", f"{PROGRAM}: error: {message}\n"), result
    assert server.log().count(RELOADS) == reloads  # nothing was sent
    assert run_script("grpcRequest.py", "-m", "Toy_double", server=server.target).code == 0  # still served


def test_versions_minus_one_is_refused_before_anything_is_sent(server):
    """--versions=-1 was sent: TF Serving has no version -1, so Toy and every other model were unloaded."""
    reloads = server.log().count(RELOADS)
    result = reload(server, "-m", "Toy", "--versions=-1")
    assert (result.code, result.out) == (2, ""), result
    assert result.err == (f"{PROGRAM}: error: --versions: -1 is negative: {VERSIONS} (for the latest version, "
                          "give --latest 1)\n")
    assert server.log().count(RELOADS) == reloads
    for model in ("Toy", "Toy_double", "MultiTask"):
        assert run_script("grpcModelStatus.py", "-m", model, server=server.target).out.count("AVAILABLE") >= 1


def test_good_spellings_still_reload(server, toy_models):
    """Spaces around the numbers, a leading zero and a label given once are all as before."""
    try:
        result = reload(server, "-m", "Toy", "--versions", " 1, 02", "--label", "stable=01", "--label", "canary=2")
        assert (result.code, result.out) == (0, "model Toy reloaded successfully\n"), result
        assert "value: 1" in run_script("grpcRequest.py", "-l", "stable", server=server.target).out
        result = reload(server, "-m", "Toy", "--latest", " 1")
        assert (result.code, result.out) == (0, "model Toy reloaded successfully\n"), result
    finally:
        reload(server, "-c", f"{toy_models}/toy_labels.config")


# -- defect 3: a config that lists no model ---------------------------------------------------------------

def test_an_empty_model_list_says_nothing_is_served(server, toy_models, tmp_path):
    empty = tmp_path / "empty.config"
    empty.write_text("model_config_list {}\n")
    warning = (f"{PROGRAM}: warning: {empty} lists no model: TF Serving will unload every model and serve none "
               "(list the models to serve in its model_config_list)\n")
    try:
        result = reload(server, "-c", str(empty))
        # exit 0: TF Serving took it and serves what it lists (see grpcReloadModel.py)
        assert (result.code, result.out, result.err) == (
            0, "config reloaded successfully: TF Serving serves no model now\n", warning), result
        assert run_script("grpcRequest.py", "-m", "Toy", server=server.target).code == 1  # unloaded
        result = reload(server, "-c", str(empty), "--format", "json")
        assert (result.code, result.out, result.err) == (0, '{"reloaded": []}\n', warning), result
        address = f"127.0.0.1:{server.port}"
        result = reload(server, "--fleet", "-s", address, "-c", str(empty))
        assert (result.code, result.out) == (0, f"{address}  reloaded: serving no model\n"
                                                f"fleet {address}: 1 replica, all reloaded and serving\n"), result
        assert result.err == warning.replace("TF Serving will", "every replica will")
    finally:
        assert reload(server, "-c", f"{toy_models}/toy_labels.config").code == 0


# -- defect 4: a reload cut short may or may not have been applied ----------------------------------------

@pytest.fixture
def stuck_model(tmp_path):
    """A model folder whose version 1 never finishes loading: its saved_model.pb is a FIFO no one writes to, so
    the server's load blocks reading it, and the reload waits for that load. Released (EOF) at the end."""
    version = tmp_path / "Stuck" / "1"
    version.mkdir(parents=True)
    fifo = version / "saved_model.pb"
    os.mkfifo(fifo)
    yield tmp_path / "Stuck"
    release(fifo)


def release(fifo, timeout=2.0):
    """Give the reader of `fifo` an end of file (its load then fails); nothing to do once no one reads it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError:  # ENXIO: no reader (yet, or any more)
            time.sleep(0.05)


@pytest.fixture
def own_server(toy_models):
    """A server of this test's own, serving Toy (the test may kill it)."""
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy", "--max_num_load_retries=0") as s:
        yield s


def check(server, names):
    base = f"python3 grpcModelStatus.py -s {server.target}"
    return f"{base} -m {names[0]}" if len(names) == 1 else f"{base} -m NAME for each of {', '.join(names)}"


def test_a_reload_that_times_out_may_have_been_applied(own_server, stuck_model, tmp_path, toy_models):
    config = tmp_path / "stuck.config"
    config.write_text('model_config_list { config { name: "Toy" base_path: "%s/Toy" model_platform: "tensorflow" } '
                      'config { name: "Stuck" base_path: "%s" model_platform: "tensorflow" } }\n'
                      % (toy_models, stuck_model))
    started = time.monotonic()
    result = reload(own_server, "-c", str(config), "-t", "1")
    assert time.monotonic() - started < 20
    assert (result.code, result.out) == (1, ""), result
    assert result.err == (f"{PROGRAM}: error: no answer from TF Serving at {own_server.target} within 1s (raise it "
                          f"with --timeout) (it may have taken the config; to check, run: "
                          f"{check(own_server, ['Toy', 'Stuck'])})\n")
    own_server.wait_for_log(r"Reading SavedModel from: .*Stuck")  # the reload was under way


def test_a_connection_lost_during_a_reload_may_have_applied_it(own_server, stuck_model):
    script = subprocess.Popen([sys.executable, PROGRAM, "-s", own_server.target, "-m", "Stuck", "--base-path",
                               str(stuck_model), "--versions", "1", "-t", "30"],
                              cwd=PYTHON_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        own_server.wait_for_log(r"Reading SavedModel from: .*Stuck")  # the reload waits on the load
        own_server.process.send_signal(signal.SIGKILL)
        out, err = script.communicate(timeout=30)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait(10)
    assert (script.returncode, out) == (1, ""), err
    lines = err.splitlines()
    assert lines[0].startswith(f"{PROGRAM}: warning: TF Serving will serve only model Stuck now")
    assert re.fullmatch(re.escape(f"{PROGRAM}: error: the connection to TF Serving at {own_server.target} was lost "
                                  "during the call (") + r".+" +
                        re.escape(f"): did the server stop? (it may have taken the config; to check, run: "
                                  f"{check(own_server, ['Stuck'])})"), lines[1]), err
    assert len(lines) == 2, err


# -- defect 5 (and a status check that fails after an OK reload): answers the real server never gives --------

@contextmanager
def peer(reload_answer, status_answer, status_delay=0.0):
    """A ModelService on 127.0.0.1 that answers every reload and every status with these bytes (the status after
    status_delay seconds)."""
    import grpc

    def reload_call(request, context):
        return reload_answer

    def status_call(request, context):
        time.sleep(status_delay)
        return status_answer

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "HandleReloadConfigRequest": grpc.unary_unary_rpc_method_handler(reload_call),
        "GetModelStatus": grpc.unary_unary_rpc_method_handler(status_call)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(10)


def reload_answer(code=0, message=""):
    response = protos.model_management_pb2.ReloadConfigResponse()
    response.status.error_code, response.status.error_message = code, message
    return response.SerializeToString()


def status_answer(state):
    response = protos.get_model_status_pb2.GetModelStatusResponse()
    version = response.model_version_status.add()
    version.version, version.state = 1, state
    version.status.error_code, version.status.error_message = 99, "odd"
    return response.SerializeToString()


AVAILABLE = protos.get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


@pytest.mark.parametrize("code, message, shown", [
    (99, "odd", "reload failed: unknown error code 99: odd"),
    (99, "", "reload failed: unknown error code 99 (no message)"),
    (9, "no", "reload failed: FAILED_PRECONDITION: no"),
])
def test_an_error_code_in_the_reload_answer_is_named(code, message, shown):
    with peer(reload_answer(code, message), status_answer(AVAILABLE)) as target:
        result = run_script(PROGRAM, "-s", target, "-m", "Toy", "--versions", "1", timeout=30)
    assert (result.code, result.out) == (1, ""), result
    assert result.err.splitlines()[1:] == [f"{PROGRAM}: error: {shown}"], result


def test_an_unknown_state_after_the_reload_is_named():
    with peer(reload_answer(), status_answer(42)) as target:
        result = run_script(PROGRAM, "-s", target, "-m", "Toy", "--versions", "1", timeout=30)
        fleet = run_script(PROGRAM, "--fleet", "-s", target, "-m", "Toy", "--versions", "1", timeout=30)
    assert (result.code, result.out) == (1, ""), result
    not_served = ("model Toy is not served after the reload: no version loaded; the status shows versions 1 unknown "
                  "state 42; version 1: odd")
    assert result.err.splitlines()[1:] == [f"{PROGRAM}: error: {not_served}"], result
    assert (fleet.code, fleet.out.splitlines()[0]) == (1, f"{target}  NOT SERVED: {not_served} (it took the config)")


def test_a_status_check_that_fails_after_an_ok_reload_says_the_config_was_taken(toy_models):
    with peer(reload_answer(), status_answer(AVAILABLE), status_delay=3) as target:
        result = run_script(PROGRAM, "-s", target, "-c", f"{toy_models}/toy_labels.config", "-t", "1", timeout=30)
    assert (result.code, result.out) == (1, ""), result
    base = f"python3 grpcModelStatus.py -s {target}"
    assert result.err == (f"{PROGRAM}: error: the reload answered OK but the status check failed: no answer from TF "
                          f"Serving at {target} within 1s (raise it with --timeout) (it took the config; to check, "
                          f"run: {base} -m NAME for each of Toy, Toy_double, MultiTask)\n"), result
