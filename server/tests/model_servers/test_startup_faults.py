"""Start-up and polling faults: flag values out of range, files that are not files or are too large, channel
arguments that must override the server's own, the command run through a symlink."""

import os
import resource
import signal
import subprocess

import numpy as np
import pytest
from google.protobuf import text_format
from testing.server_client import Client, model_config, rpc_error

from server.model_servers.config import MAX_FILE_BYTES
from testing.server import EXECUTABLE, ServerProcess, free_port, wait_until

# A guard for the machine, not a measure: a server reading /dev/zero to the end (13.7 GB once) stops at this.
MEMORY_LIMIT = 2 * 2**30


def limit_memory(pid):
    """(Set on the process once started, which is seconds before it reads a file: Python and TensorFlow load.)"""
    resource.prlimit(pid, resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(*flags, cwd=None, executable=EXECUTABLE, env=None):
    """The server run to its end with `flags` (and `env` added to its environment)."""
    with subprocess.Popen([executable, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=cwd, env=dict(os.environ, **env) if env else None) as process:
        limit_memory(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def failed(result):
    """The one line a start-up failure prints (and nothing else: no traceback, no log)."""
    assert (result.returncode, result.stdout) == (255, ""), result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.rstrip("\n")


@pytest.mark.parametrize("flag, error", [
    ("--port=70000", "--port=70000 is out of range: must be 0..65535 (a TCP port; 0: no gRPC port)"),
    ("--port=-1", "--port=-1 is out of range: must be 0..65535 (a TCP port; 0: no gRPC port)"),
    ("--rest_api_port=-5", "--rest_api_port=-5 is out of range: must be 0..65535 (a TCP port; 0: no REST API)"),
    ("--grpc_max_threads=-5", "--grpc_max_threads=-5 is out of range: must be 0..2147483647 "
                              "(a number of threads; 0: 2 x CPUs)"),
    ("--rest_api_num_threads=-1", "--rest_api_num_threads=-1 is out of range: must be 0..2147483647 "
                                  "(a number of threads; 0: 4 x CPUs)"),
    ("--tensorflow_intra_op_parallelism=4294967296", "--tensorflow_intra_op_parallelism=4294967296 is out of "
     "range: must be 0..2147483647 (a number of threads; 0: TensorFlow picks)"),
    ("--num_load_threads=-1", "--num_load_threads=-1 is out of range: must be 0..2147483647 (a number of threads)"),
    ("--load_retry_interval_micros=9223372036854775807", "--load_retry_interval_micros=9223372036854775807 is out "
     "of range: must be at most 2147483647000000 (68 years; negative: no wait)"),
])
def test_flag_values_out_of_range_stop_start_up(flag, error):
    # No model flags: the range is checked first, before "Both ... are empty!" (and before any model loads).
    assert failed(run(flag)) == f"Failed to start server. Error: INVALID_ARGUMENT: {error}"


@pytest.mark.parametrize("name, value", [("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "yes"),
                                         ("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", ""),
                                         ("TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD", "2")])
def test_a_onednn_switch_that_is_not_a_boolean_stops_start_up(name, value, toy_models):
    """TensorFlow would abort on it, with a C++ stack trace, once the model loads (before: killed by SIGABRT)."""
    result = run(f"--port={free_port()}", f"--rest_api_port={free_port()}", "--model_name=Toy",
                 f"--model_base_path={toy_models}/Toy", env={name: value})
    assert failed(result) == (f"Failed to start server. Error: INVALID_ARGUMENT: ${name} must be 0, 1, true or "
                              f"false, not {value!r}")


@pytest.fixture
def sparse_big_file(tmp_path):
    path = tmp_path / "big.config"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # holes: no disk used
    return path


@pytest.mark.parametrize("flags, what", [
    (["--model_config_file={zero}"], "{zero} is not a regular file (a character device)"),
    (["--model_config_file={link}"], "{link} is not a regular file (a character device)"),
    (["--model_config_file={fifo}"], "{fifo} is not a regular file (a FIFO)"),
    (["--model_config_file={tmp}"], "{tmp} is not a regular file (a directory)"),
    (["--model_config_file={big}"], "{big} is larger than 67108864 bytes"),
    (["--model_name=Toy", "--model_base_path={toy}", "--enable_batching", "--batching_parameters_file={link}"],
     "{link} is not a regular file (a character device)"),
    (["--model_name=Toy", "--model_base_path={toy}", "--tensorflow_session_config_file={big}"],
     "{big} is larger than 67108864 bytes"),
    (["--model_name=Toy", "--model_base_path={toy}", "--ssl_config_file={zero}"],
     "{zero} is not a regular file (a character device)"),
    (["--model_name=Toy", "--model_base_path={toy}", "--rest_api_port={rest}", "--monitoring_config_file={zero}"],
     "{zero} is not a regular file (a character device)"),
])
def test_files_that_are_not_files_or_too_large_stop_start_up(flags, what, tmp_path, sparse_big_file, toy_models):
    from testing.server import free_port
    link, fifo = tmp_path / "zero.config", tmp_path / "fifo.config"
    link.symlink_to("/dev/zero")
    os.mkfifo(fifo)
    names = dict(zero="/dev/zero", link=link, fifo=fifo, tmp=tmp_path, big=sparse_big_file,
                 toy=f"{toy_models}/Toy", rest=free_port())
    result = run(f"--port={free_port()}", *(f.format(**names) for f in flags))
    if "--model_name=Toy" in flags:  # the model loads (and unloads) first, as in TF Serving
        assert (result.returncode, result.stdout) == (255, "") and "Traceback" not in result.stderr, result
        line = result.stderr.splitlines()[-1]
    else:
        line = failed(result)
    assert line == f"Failed to start server. Error: INVALID_ARGUMENT: {what.format(**names)}"


def write_config(path, *models):
    """Replace `path` at once (a rename), as an editor or a config push would."""
    new = f"{path}.new"
    with open(new, "w") as f:
        f.write(text_format.MessageToString(model_config(*models)))
    os.replace(new, path)


def test_polled_config_replaced_by_dev_zero_keeps_serving_and_polling(toy_models, tmp_path):
    config = tmp_path / "models.config"
    write_config(config, ("Toy", f"{toy_models}/Toy"))
    with ServerProcess(f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1") as server:
        limit_memory(server.process.pid)
        client = Client(server.target)
        assert client.predict().model_spec.version.value == 3
        link = tmp_path / "zero.link"
        link.symlink_to("/dev/zero")
        os.replace(link, config)
        error = (f"E tensorflow_serving/model_servers] Failed to read ModelServerConfig file: INVALID_ARGUMENT: "
                 f"{config} is not a regular file (a character device)")
        server.wait_for_log(error.replace("(", r"\(").replace(")", r"\)"), count=2)  # each poll, one line
        assert client.predict().model_spec.version.value == 3  # the models served stay as they were
        assert rpc_error(client.predict, "Toy_double")[0] == "NOT_FOUND"
        write_config(config, ("Toy", f"{toy_models}/Toy"), ("Toy_double", f"{toy_models}/Toy_double"))
        wait_until(lambda: _predicts(client, "Toy_double"), what="Toy_double from the config put back")
        assert client.predict().model_spec.version.value == 3
        client.close()
        assert "Traceback" not in server.log()


def _predicts(client, model):
    try:
        client.predict(model)
        return True
    except Exception:
        return False


def test_channel_arguments_lower_the_message_limit(toy_models):
    limit = 4 * 2**20
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy",
                       f"--grpc_channel_arguments=grpc.max_receive_message_length={limit}") as server:
        client = Client(server.target)
        small = np.ones([400000, 2], np.float32)  # 3.2 MB as tensor_content
        assert client.predict(inputs={"input_1": small}).outputs["dense"].tensor_shape.dim[0].size == 400000
        code, details = rpc_error(client.predict, inputs={"input_1": np.ones([600000, 2], np.float32)})  # 4.8 MB
        assert code == "RESOURCE_EXHAUSTED" and f"vs. {limit})" in details, details
        assert client.predict(inputs={"input_1": small}).model_spec.version.value == 3  # and it keeps serving
        client.close()


def test_the_command_runs_through_a_symlink_from_any_folder(tmp_path):
    bin_dir, elsewhere = tmp_path / "bin", tmp_path / "elsewhere"
    os.makedirs(bin_dir)
    os.makedirs(elsewhere / "server")
    # A ./server package in the caller's folder must not stand in for the real one.
    (elsewhere / "server" / "__init__.py").write_text("")
    (elsewhere / "server" / "__main__.py").write_text("raise SystemExit('the wrong server package')\n")
    (bin_dir / "tensorflow_model_server").symlink_to(EXECUTABLE)
    result = run("--version", cwd=elsewhere, executable=str(bin_dir / "tensorflow_model_server"))
    assert result.returncode == 0, result
    assert result.stdout.startswith("TensorFlow ModelServer: ") and "TensorFlow Library: 2." in result.stdout
    # A relative link, from a folder with no ./server at all.
    (bin_dir / "relative").symlink_to(os.path.relpath(EXECUTABLE, bin_dir))
    result = run("--version", cwd="/", executable=str(bin_dir / "relative"))
    assert result.returncode == 0 and result.stdout.startswith("TensorFlow ModelServer: "), result


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_tensorflow_loads_ends_the_server_quietly(signum):
    # Before the server's handler is in place the signal ends the process, as TF Serving's binary. Before, SIGINT
    # printed a KeyboardInterrupt traceback from inside TensorFlow's import.
    with subprocess.Popen([EXECUTABLE, "--model_name=E", "--model_base_path=/nonexistent"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        def importing_tensorflow():  # its shared library is mapped: main's handler comes seconds later
            with open(f"/proc/{process.pid}/maps") as maps:
                return "tensorflow" in maps.read()
        wait_until(importing_tensorflow, timeout=60, interval=0.005, what="TensorFlow's import to start")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout) == (-signum, "")
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_first_load_is_a_clean_stop_not_the_models_fault(tmp_path, signum):
    # A model with no version yet: start-up waits for one. Before, the signal ended it with "Failed to start
    # server. Error: UNKNOWN: Some models did not become available: {{name: E}, }" and 255.
    (tmp_path / "E").mkdir()
    server = ServerProcess("--model_name=E", f"--model_base_path={tmp_path}/E")
    server.start(expect_ready=False)
    server.wait_for_log(r"No versions of servable E found under base path")
    server.process.send_signal(signum)
    assert server.process.wait(60) == 0
    log = server.log()
    assert log.rstrip().endswith(f"Start-up stopped by {signum.name}. Server stopped.") and "Failed to start" not in log
    server.__exit__()


def test_a_signal_during_a_load_that_does_not_end_stops_within_the_grace(tmp_path, slow_model):
    # A load cannot be interrupted: here its warmup runs a 60 s sleep. Before, the stop waited for the load (pool
    # threads joined at shutdown and again at exit), whatever it took.
    import shutil

    from tensorflow_serving.apis import prediction_log_pb2

    from testing.slow_model import slow_request
    from tfsclient import tfrecord

    shutil.copytree(slow_model, tmp_path / "Slow")
    entry = prediction_log_pb2.PredictionLog()
    entry.predict_log.request.CopyFrom(slow_request(60_000_000, tmp_path / "warming"))
    (tmp_path / "Slow" / "1" / "assets.extra").mkdir()
    tfrecord.append(str(tmp_path / "Slow" / "1" / "assets.extra" / "tf_serving_warmup_requests"),
                    [entry.SerializeToString()])
    server = ServerProcess("--model_name=Slow", f"--model_base_path={tmp_path}/Slow")
    server.start(expect_ready=False)
    wait_until(lambda: (tmp_path / "warming").exists(), timeout=60, what="the warmup's run to start")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0  # the 5 s grace, then out: not the 60 s the load would take
    log = server.log()
    assert "1 model load(s) still running after the grace; exiting without them." in log
    assert "Start-up stopped by SIGTERM. Server stopped." in log
    server.__exit__()


def test_a_signal_during_a_new_versions_load_gives_it_one_grace(tmp_path, slow_model):
    """Version 2 arrives while version 1 serves, and its warmup runs a 60 s sleep when SIGTERM comes. With no load
    threads (the default) the load runs on the manager's thread: the stop gave that thread the 5 s grace, then
    the load 5 s more (10 s from the signal to leaving). One grace now, for both."""
    import datetime
    import re
    import shutil

    from tensorflow_serving.apis import prediction_log_pb2

    from testing.slow_model import slow_request
    from tfsclient import tfrecord

    shutil.copytree(slow_model, tmp_path / "Slow")
    with ServerProcess("--model_name=Slow", f"--model_base_path={tmp_path}/Slow",
                       "--file_system_poll_wait_seconds=1") as server:
        version = tmp_path / "Slow" / "2"
        shutil.copytree(tmp_path / "Slow" / "1", tmp_path / "staging")
        entry = prediction_log_pb2.PredictionLog()
        entry.predict_log.request.CopyFrom(slow_request(60_000_000, tmp_path / "warming"))
        (tmp_path / "staging" / "assets.extra").mkdir()
        tfrecord.append(str(tmp_path / "staging" / "assets.extra" / "tf_serving_warmup_requests"),
                        [entry.SerializeToString()])
        os.rename(tmp_path / "staging", version)  # whole at once, as a model pusher does
        wait_until(lambda: (tmp_path / "warming").exists(), timeout=60, what="version 2's warmup to start")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        log = server.log()

    def when(line_start):
        line = next(line for line in log.splitlines() if line_start in line)
        return datetime.datetime.strptime(re.match(r"(\S+ \S+):", line)[1], "%Y-%m-%d %H:%M:%S.%f")

    took = (when("still running after the grace") - when("Received SIGTERM")).total_seconds()
    assert "1 model load(s) still running after the grace; exiting without them." in log
    assert took < 8.0, f"{took:.1f} s from the signal to leaving"
