"""Each script's flags, outputs and bad inputs, as subprocesses against the real local server."""

import json

import numpy as np
import pytest
from script_helpers import run_script

from testing.server import ServerProcess

SCRIPTS = ["grpcRequest.py", "grpcModelStatus.py", "grpcMetadata.py", "grpcReloadModel.py", "grpcRequestLog.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    result = run_script(script, "--help")
    assert result.code == 0 and result.err == ""
    assert result.out.startswith("usage: ")
    assert "example:\n  python3 " + script in result.out
    for flag in ("--server", "--timeout", "--format", "--debug"):
        assert flag in result.out


# -- grpcRequest.py ------------------------------------------------------------------------------

def test_values_and_json(run):
    result = run("grpcRequest.py", "-v", "1", "--values")
    assert (result.code, result.err) == (0, "")
    assert json.loads(result.out) == {"output_1": [[10.805429458618164], [14.010123252868652]]}
    result = run("grpcRequest.py", "-v", "1", "--format", "json")
    document = json.loads(result.out)
    assert document["model_spec"] == {"name": "Toy", "version": "1", "signature_name": "serving_default"}
    assert document["outputs"]["output_1"]["float_val"] == [10.805429, 14.010123]  # shortest float32 form


def test_inputs_from_json_files_and_numpy(run, tmp_path):
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.0]], np.float32))
    np.savez(tmp_path / "x.npz", input_1=np.array([[1.0, 3.0]], np.float32))
    (tmp_path / "x.json").write_text('{"input_1": [[1, 2], [1, 3]]}')
    (tmp_path / "v.json").write_text("[[1.0, 2.0]]")
    expected = {
        ("-i", "input_1=[[1.0, 2.0]]"): [[10.805429458618164]],
        ("-i", "input_1=[[1, 2]]"): [[10.805429458618164]],  # ints converted to the model's float32
        ("-i", f"input_1=@{tmp_path}/x.npy"): [[10.805429458618164]],
        ("-i", f"input_1=@{tmp_path}/v.json"): [[10.805429458618164]],
        ("-i", f"@{tmp_path}/x.npz"): [[14.010123252868652]],
        ("-i", f"@{tmp_path}/x.json"): [[10.805429458618164], [14.010123252868652]],
        ("-i", "input_1=[[1.0, 2.0]]", "--dtype", "input_1=float32"): [[10.805429458618164]],
    }
    for args, values in expected.items():
        result = run("grpcRequest.py", "-v", "1", "--values", *args)
        assert (result.code, result.err) == (0, ""), (args, result)
        assert json.loads(result.out) == {"output_1": values}, args


def test_output_filter(run):
    result = run("grpcRequest.py", "--output-filter", "output_1", "--values")
    assert list(json.loads(result.out)) == ["output_1"]


def test_a_script_does_not_start_tensorflow(run):
    result = run_script("-c", "import sys, grpcRequest, grpcRequestLog, grpcMetadata, grpcModelStatus, "
                        "grpcReloadModel; print(sorted(m for m in sys.modules if m.startswith('tensorflow.python')))")
    assert result.out == "[]\n", result


BAD_INPUTS = [
    (("-i", "input_1=[[1,2"),
     "grpcRequest.py: error: -i input_1: not valid JSON (Expecting ',' delimiter at column 6): [[1,2\n"),
    (("-i", "input_1"),
     "grpcRequest.py: error: -i wants NAME=JSON, NAME=@file.npy, @file.json or @file.npz, not 'input_1'\n"),
    (("-i", "input_1=@/nope.npy"), "grpcRequest.py: error: -i input_1: file not found: /nope.npy\n"),
    (("-i", "input_1=[[1,2],[3]]"),
     "grpcRequest.py: error: input 'input_1': the JSON is not a rectangular array (rows of different lengths?)\n"),
    (("-i", "x=[[1,2]]"), "grpcRequest.py: error: model Toy has no input 'x'; its inputs: input_1\n"),
    (("-i", 'input_1=[["a","b"]]'),
     "grpcRequest.py: error: input 'input_1' holds the text 'a' where model Toy expects float32: "
     "write every value as a JSON number\n"),
    (("-i", "input_1=[[1,2]]", "--dtype", "input_1=float64"), None),  # the server's own dtype error
    (("--dtype", "input_1=float32"), "grpcRequest.py: error: --dtype applies to inputs given with -i\n"),
    (("-i", "input_1=[[1,2]]", "--dtype", "input_1=float99"),
     "grpcRequest.py: error: unknown dtype 'float99': use e.g. float32, float64, int32, int64, bool, string\n"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_inputs_exit_2_with_one_line(run, args, message):
    result = run("grpcRequest.py", *args)
    if message is None:
        assert (result.code, result.out) == (1, "")
        assert result.err == ("grpcRequest.py: error: INVALID_ARGUMENT: Expects arg[0] to be float but double "
                              "is provided\n")
        return
    assert (result.code, result.out, result.err) == (2, "", message)


@pytest.mark.parametrize("dtype", ["float64", "int64", "float16"])
def test_an_array_from_a_file_keeps_its_dtype_and_json_follows_the_signature(run, tmp_path, dtype):
    """python/README.md: JSON values are converted to the signature's dtype, arrays from .npy files are not."""
    np.save(tmp_path / "x.npy", np.array([[1, 2]], dtype))
    result = run("grpcRequest.py", "-i", f"input_1=@{tmp_path}/x.npy")
    assert (result.code, result.out, result.err) == (
        2, "", f"grpcRequest.py: error: input 'input_1' is {dtype} but model Toy expects float32: "
               "convert it with --dtype input_1=float32\n")
    converted = run("grpcRequest.py", "-i", f"input_1=@{tmp_path}/x.npy", "--dtype", "input_1=float32", "--values")
    (tmp_path / "x.json").write_text("[[1, 2]]")
    from_json = run("grpcRequest.py", "-i", f"input_1=@{tmp_path}/x.json", "--values")
    assert converted.code == from_json.code == 0 and converted.out == from_json.out, (converted, from_json)


@pytest.mark.parametrize("args, code, message", [
    (("-m", "nope"), 1, "grpcRequest.py: error: NOT_FOUND: Servable not found for request: Latest(nope)\n"),
    (("-v", "7"), 1, "grpcRequest.py: error: NOT_FOUND: Servable not found for request: Specific(Toy, 7)\n"),
    (("-l", "foo"), 1, "grpcRequest.py: error: INVALID_ARGUMENT: Unrecognized servable version label: foo\n"),
    (("--signature", "foo"), 1, 'grpcRequest.py: error: FAILED_PRECONDITION: Serving signature key "foo" not found.\n'),
    (("--output-filter", "foo"), 1, "grpcRequest.py: error: INVALID_ARGUMENT: output tensor alias not found in "
                                    "signature: foo Outputs expected to be in the set {output_1}.\n"),
])
def test_server_errors_exit_1_with_the_servers_message(run, args, code, message):
    result = run("grpcRequest.py", *args)
    assert (result.code, result.out, result.err) == (code, "", message)


@pytest.mark.parametrize("args, message", [
    (("-v", "1", "-l", "stable"), "argument -l/--version-label: not allowed with argument -v/--version"),
    (("-v", "x"), "argument -v/--version: not a version number: 'x'"),
    (("-t", "0"), "argument -t/--timeout: the timeout must be > 0, not 0"),
    (("--format", "xml"), "argument --format: invalid choice: 'xml'"),
])
def test_usage_errors_exit_2(run, args, message):
    result = run("grpcRequest.py", *args)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("usage: grpcRequest.py") and message in result.err
    assert len(result.err.splitlines()) == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_server_down(script, tmp_path):
    from testing.server import free_port
    port = free_port()
    args = ["-c", str(tmp_path / "x.config")] if script == "grpcReloadModel.py" else []
    if args:
        (tmp_path / "x.config").write_text(
            "model_config_list { config { name: 'Toy' base_path: '/m/Toy' model_platform: 'tensorflow' } }")
    result = run_script(script, "-s", f"localhost:{port}", *args)
    assert (result.code, result.out) == (1, "")
    assert result.err == (f"{script}: error: cannot reach TF Serving at localhost:{port} (connection refused): "
                          "is the server running?\n")


def test_server_from_the_environment_and_unix_target(toy_models, tmp_path):
    """$TFS_SERVER picks the server, and a unix: target reaches one listening on --grpc_socket_path only."""
    socket_path = tmp_path / "tfs.sock"
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config", f"--grpc_socket_path={socket_path}",
                       "--allow_version_labels_for_unavailable_models"):
        for target in (f"unix://{socket_path}", f"unix:{socket_path}"):
            result = run_script("grpcModelStatus.py", "-m", "Toy_double", server=target)
            assert (result.code, result.err) == (0, ""), result
            assert "state: AVAILABLE" in result.out
            flag = run_script("grpcModelStatus.py", "-m", "Toy_double", "-s", target, server="localhost:1")
            assert flag.out == result.out, flag
    gone = run_script("grpcModelStatus.py", "-m", "Toy_double", "-t", "2", server=f"unix://{socket_path}")
    assert (gone.code, gone.out) == (1, ""), gone  # the server has stopped: nothing answers on the socket


def test_timeout_names_the_flag():
    import socket
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        target = f"localhost:{silent.getsockname()[1]}"
        result = run_script("grpcRequest.py", "-t", "0.5", server=target)
    assert (result.code, result.out) == (1, "")
    assert result.err == (f"grpcRequest.py: error: no answer from TF Serving at {target} within 0.5s "
                          "(raise it with --timeout)\n")


def test_debug_shows_the_traceback(run):
    result = run("grpcRequest.py", "-m", "nope", "--debug")
    assert result.code == 1 and "Traceback" in result.err


# -- grpcModelStatus.py --------------------------------------------------------------------------

def test_status_all_versions_and_wait(run):
    result = run("grpcModelStatus.py")
    assert result.out.count("state: AVAILABLE") == 2
    result = run("grpcModelStatus.py", "-v", "1", "--wait", "10", "--format", "json")
    assert json.loads(result.out)["model_version_status"][0]["state"] == "AVAILABLE"


def test_status_errors(run):
    result = run("grpcModelStatus.py", "-m", "nope")
    assert (result.code, result.err) == (
        1, "grpcModelStatus.py: error: NOT_FOUND: Could not find any versions of model nope\n")
    result = run("grpcModelStatus.py", "-l", "stable")
    assert result.code == 2 and "use -v" in result.err
    result = run("grpcModelStatus.py", "-m", "nope", "--wait", "0.5")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("grpcModelStatus.py: error: model nope not AVAILABLE after 0.5s; last seen: NOT_FOUND")


# -- grpcMetadata.py -----------------------------------------------------------------------------

def test_metadata_expanded_and_summary(run):
    result = run("grpcMetadata.py")
    assert result.code == 0
    assert 'name: "serving_default_input_1:0"' in result.out and "tensorflow/serving/predict" in result.out
    result = run("grpcMetadata.py", "-v", "1", "--summary")
    assert result.out == (
        "model Toy version 1\n\n"
        "signature 'serving_default' (tensorflow/serving/predict):\n"
        "          alias     dtype  shape    tensor\n"
        "  input   input_1   float  (-1, 2)  serving_default_input_1:0\n"
        "  output  output_1  float  (-1, 1)  StatefulPartitionedCall:0\n\n"
        "signature '__saved_model_init_op' (no method):\n"
        "          alias                  dtype    shape    tensor\n"
        "  output  __saved_model_init_op  invalid  unknown  NoOp\n")
    document = json.loads(run("grpcMetadata.py", "--format", "json").out)
    assert "serving_default" in document["metadata"]["signature_def"]["signature_def"]


# -- grpcReloadModel.py --------------------------------------------------------------------------

def test_reload_config_checked_before_sending(run, tmp_path):
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list {\n  config { name: 'Toy'\n    oops: 1 }\n}\n")
    result = run("grpcReloadModel.py", "-c", str(bad))
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"grpcReloadModel.py: error: {bad}:3:5: Message type \"tensorflow.serving.ModelConfig\" "
                          "has no field named \"oops\".\n")
    relative = tmp_path / "relative.config"
    relative.write_text("model_config_list { config { name: 'Toy' base_path: 'models/Toy' "
                        "model_platform: 'tensorflow' } }")
    result = run("grpcReloadModel.py", "-c", str(relative))
    assert result.code == 2 and "base_path must be absolute" in result.err
    result = run("grpcReloadModel.py", "-c", str(tmp_path / "missing.config"))
    assert result.code == 2 and "cannot read config" in result.err
    result = run("grpcReloadModel.py")
    assert result.code == 2 and "give -c FILE (a whole config) or -m NAME (one model)" in result.err


def test_ctrl_c_exits_130_quietly(toy_server):
    import os
    import signal
    import subprocess
    import sys
    import time

    from script_helpers import PYTHON_DIR
    process = subprocess.Popen([sys.executable, "grpcModelStatus.py", "-s", toy_server.target, "-m", "nope",
                                "--wait", "60"], cwd=PYTHON_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 30
    while len(os.listdir(f"/proc/{process.pid}/task")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling: gRPC's threads appear once the script is calling the server
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (130, "", "")


def test_messages_over_grpcs_default_4mb_limit(run, tmp_path):
    import numpy as np
    rows = 1_200_000  # 9.6 MB request, 4.8 MB of float_val in the response
    np.save(tmp_path / "big.npy", np.tile(np.array([[1.0, 2.0]], np.float32), (rows, 1)))
    result = run("grpcRequest.py", "-v", "1", "-i", f"input_1=@{tmp_path}/big.npy", "--values", timeout=120)
    assert (result.code, result.err) == (0, "")
    values = json.loads(result.out)["output_1"]
    assert len(values) == rows and values[-1] == [10.805429458618164]


def test_health_without_grpcio_health_checking_says_how_to_install_it(tmp_path):
    # The guide's own setup line does not install it. Before: "unexpected ModuleNotFoundError", exit 1.
    hidden = tmp_path / "site" / "grpc_health"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'grpc_health'\")\n")
    result = run_script("grpcModelStatus.py", "-s", "localhost:1", "--health", env={"PYTHONPATH": str(hidden.parent)})
    assert (result.code, result.out) == (2, "")
    assert result.err == ("grpcModelStatus.py: error: --health needs grpcio-health-checking, which is not installed "
                          "(pip install grpcio-health-checking)\n")
