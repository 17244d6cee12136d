"""The command line: TF Serving's flags and spellings, start-up errors, sockets, shutdown."""

import os
import re
import subprocess

import pytest
from testing.server_client import Client, values

from testing.paths import TESTDATA
from testing.server import EXECUTABLE, ServerProcess



def run(*flags, timeout=120):
    return subprocess.run([EXECUTABLE, *flags], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("flags, stderr", [
    (["--foo"], "unknown argument: --foo\nRun tensorflow_model_server --help for the list of flags.\n"),
    (["--port=abc"], "Couldn't interpret value abc for flag port.\n"
                     "Run tensorflow_model_server --help for the list of flags.\n"),
    # TF Serving's flags are int32 (int64 for a few): a value that does not fit is not a number to them.
    (["--port=99999999999"], "Couldn't interpret value 99999999999 for flag port.\n"
                             "Run tensorflow_model_server --help for the list of flags.\n"),
    (["--load_retry_interval_micros=9223372036854775808"], "Couldn't interpret value 9223372036854775808 for flag "
     "load_retry_interval_micros.\nRun tensorflow_model_server --help for the list of flags.\n"),
    (["--grpc_max_threads=1_000"], "Couldn't interpret value 1_000 for flag grpc_max_threads.\n"
                                   "Run tensorflow_model_server --help for the list of flags.\n"),
    (["--enable_batching=yes"], "Couldn't interpret value yes for flag enable_batching.\n"
                                "Run tensorflow_model_server --help for the list of flags.\n"),
    (["--model_base_path"], "flag --model_base_path needs a value: --model_base_path=VALUE\n"
                            "Run tensorflow_model_server --help for the list of flags.\n"),
    (["--use_alts_credentials=true"], "--use_alts_credentials is not supported by this server: ALTS credentials "
     "are not supported\nRun tensorflow_model_server --help for the list of flags.\n"),
    (["--grpc_channel_arguments=grpc.foo"], "--grpc_channel_arguments: expected key=value, got 'grpc.foo'\n"
     "Run tensorflow_model_server --help for the list of flags.\n"),
])
def test_bad_flags_fail_at_start_up(flags, stderr):
    result = run(*flags)
    assert (result.returncode, result.stdout, result.stderr) == (255, "", stderr)


def test_start_up_errors(toy_models, tmp_path):
    result = run(f"--model_config_file={TESTDATA}/bad_model_config.txt")
    assert result.returncode == 255 and result.stdout == ""
    assert result.stderr.splitlines()[-2:] == [
        'Error parsing text-format tensorflow.serving.ModelServerConfig: 1:1: Message type '
        '"tensorflow.serving.ModelServerConfig" has no field named "improperly".',
        f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: "
        f"'{TESTDATA}/bad_model_config.txt'"]
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list {\n  config { name: 'Toy' base_path: '/x' }\n  oops\n}\n")
    lines = run(f"--model_config_file={bad}").stderr.splitlines()
    assert lines[-2].startswith("Error parsing text-format tensorflow.serving.ModelServerConfig: 3:3: ")
    assert run("--model_config_file=/nope.config").stderr.splitlines()[-1] == (
        "Failed to start server. Error: NOT_FOUND: /nope.config; No such file or directory")
    assert run().stderr.splitlines()[-1] == (
        "Failed to start server. Error: INVALID_ARGUMENT: Both server_options.model_base_path and "
        "server_options.model_config_file are empty!")
    # Labels are checked before the models load, so TF Serving refuses them at start-up without the flag.
    result = run(f"--model_config_file={toy_models}/toy_labels.config", "--port=0", "--grpc_socket_path=/tmp/x")
    assert result.returncode == 255
    assert result.stderr.splitlines()[-1] == (
        "Failed to start server. Error: FAILED_PRECONDITION: Request to assign label to version 2 of model "
        "Toy, which is not currently available for inference")


def test_a_model_that_does_not_load_stops_start_up(tmp_path):
    os.makedirs(tmp_path / "m" / "1")
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"junk")
    result = run("--model_name=m", f"--model_base_path={tmp_path}/m", "--max_num_load_retries=1",
                 "--load_retry_interval_micros=1000")
    assert result.returncode == 255
    assert "Retrying of Loading servable: {name: m version: 1} retry: 1" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Failed to start server. Error: UNKNOWN: Some models did not become available: {{name: m version: 1}, }")


def test_help_and_version():
    result = run("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: tensorflow_model_server")
    for flag in ("--port=8500", "--model_config_file", "--grpc_socket_path", "--file_system_poll_wait_seconds=1",
                 "--allow_version_labels_for_unavailable_models=false", "--rest_api_port=8501"):
        assert flag in result.stdout
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("TensorFlow ModelServer: ")
    assert "TensorFlow Library: 2." in result.stdout


def test_space_separated_flags_unix_socket_and_channel_arguments(toy_models, tmp_path):
    socket_path = tmp_path / "tfs.sock"
    server = ServerProcess("--model_name", "Toy", "--model_base_path", f"{toy_models}/Toy",
                           f"--grpc_socket_path={socket_path}",
                           "--grpc_channel_arguments=grpc.max_connection_age_ms=60000,grpc.lb_policy_name=x",
                           "--enable_batching", "--enable_model_warmup=false", "--tensorflow_intra_op_parallelism=1")
    with server:
        for target in (server.target, f"unix://{socket_path}"):
            client = Client(target)
            assert client.predict().model_spec.version.value == 3
            client.close()
        assert f"Running gRPC ModelServer at UNIX socket {socket_path} ..." in server.log()
        assert f"Running gRPC ModelServer at 0.0.0.0:{server.port} ..." in server.log()
        assert server.stop() == 0
        assert "Done unloading servable version {name: Toy version: 3}" in server.log()


def test_tensor_content_responses_and_quiet_start_up(toy_models):
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy",
                       "--enable_serialization_as_tensor_content") as server:
        client = Client(server.target)
        output = client.predict(version=3).outputs["dense"]
        assert output.tensor_content and not output.float_val
        client.close()
        log = server.log()
    # Every line is ours, with a timestamp: TensorFlow's start-up noise is silenced.
    assert all(line[:4].isdigit() and ": " in line for line in log.splitlines()), log
    assert "oneDNN" not in log and "cuda" not in log.lower()


def test_tf_cpp_min_log_level_0_brings_tensorflows_own_lines_back(toy_models):
    """README: TensorFlow's start-up lines are silenced; TF_CPP_MIN_LOG_LEVEL=0 shows them."""
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy",
                       env={"TF_CPP_MIN_LOG_LEVEL": "0"}) as server:
        with Client(server.target) as client:
            assert client.predict(version=3).model_spec.version.value == 3
        log = server.log()
    tensorflows = [line for line in log.splitlines() if re.match(r"[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] ", line)]
    assert any("cpu_feature_guard.cc" in line or "port.cc" in line for line in tensorflows), log


def test_flags_with_no_meaning_here_are_accepted_and_change_nothing(toy_models):
    """README: --per_process_gpu_memory_fraction and --flush_filesystem_caches are accepted, not acted on."""
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy",
                       "--per_process_gpu_memory_fraction=0.5", "--flush_filesystem_caches=false") as server:
        with Client(server.target) as client:
            assert values(client.predict(version=3), "dense") == pytest.approx([0.9901618, 0.9934704])
        log = server.log()
    assert "per_process_gpu_memory_fraction" not in log and "flush_filesystem_caches" not in log, log


@pytest.mark.parametrize("flags", [(), ("--enable_batching",)], ids=["thread-pool", "grpc.aio"])
def test_port_in_use_is_a_start_up_error(toy_server, toy_models, flags):
    result = run(f"--port={toy_server.port}", "--model_name=Toy", f"--model_base_path={toy_models}/Toy", *flags)
    assert result.returncode == 255
    assert result.stderr.splitlines()[-1].startswith(
        f"Failed to start server. Error: UNAVAILABLE: Failed to BuildAndStart gRPC server: cannot bind "
        f"0.0.0.0:{toy_server.port}")
