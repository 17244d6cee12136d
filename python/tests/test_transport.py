"""TLS, mutual TLS, compression, retries, --wait-for-ready and the health service, against the real server."""

import json
import os
import subprocess
import sys

import grpc
import pytest
from certs import make_pki, ssl_config
from script_helpers import PYTHON_DIR, run_script

from testing.server import ServerProcess, free_port, wait_until

REPO = os.path.dirname(PYTHON_DIR)
TOY = os.path.join(REPO, "models", "save", "Toy")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    paths = make_pki(str(directory))
    for name, verify in (("tls.config", False), ("mtls.config", True)):
        paths[name] = str(directory / name)
        with open(paths[name], "w") as f:
            f.write(ssl_config(paths, client_verify=verify))
    return paths


def _credentials(pki, client=False):
    def read(name):
        with open(pki[name], "rb") as f:
            return f.read()
    if client:
        return grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
    return grpc.ssl_channel_credentials(read("ca.pem"))


@pytest.fixture(scope="module")
def tls_server(pki, toy_models):
    with ServerProcess("--model_name=Toy", f"--model_base_path={TOY}", f"--ssl_config_file={pki['tls.config']}",
                       "--enable_grpc_healthcheck_service", credentials=_credentials(pki)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki, toy_models):
    with ServerProcess("--model_name=Toy", f"--model_base_path={TOY}", f"--ssl_config_file={pki['mtls.config']}",
                       credentials=_credentials(pki, client=True)) as server:
        yield server


def one_error_line(result, code, *fragments):
    assert result.code == code, result
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result
    for fragment in fragments:
        assert fragment in lines[0], result
    return lines[0]


# -- TLS -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_twin(toy_models):
    """The TLS server's model, served in plaintext: the same answers, without TLS."""
    with ServerProcess("--model_name=Toy", f"--model_base_path={TOY}") as server:
        yield server


def test_tls_predict_prints_what_plaintext_prints(tls_server, plain_twin, pki):
    for extra in ([], ["--values"], ["--format", "json"]):
        secure = run_script("grpcRequest.py", "-m", "Toy", *extra, "--ca-cert", pki["ca.pem"], server=tls_server.target)
        plain = run_script("grpcRequest.py", "-m", "Toy", *extra, server=plain_twin.target)
        assert (secure.code, secure.err) == (plain.code, plain.err) == (0, ""), (secure, plain)
        assert "dense" in secure.out and secure.out == plain.out, (secure, plain)  # (Toy 3: output "dense")


def test_tls_by_ip_needs_the_certificate_name(tls_server, pki):
    by_ip = f"127.0.0.1:{tls_server.port}"
    ok = run_script("grpcRequest.py", "--ca-cert", pki["ca.pem"], "--server-name", "localhost", server=by_ip)
    assert ok.code == 0, ok
    wrong = run_script("grpcRequest.py", "--ca-cert", pki["ca.pem"], "--server-name", "wrong.example", server=by_ip)
    one_error_line(wrong, 1, "its certificate is not for that name", "--server-name")


def test_tls_without_the_ca_is_refused_clearly(tls_server, pki):
    result = run_script("grpcRequest.py", "--ca-cert", pki["other-ca.pem"], server=tls_server.target)
    one_error_line(result, 1, "TLS handshake with", "not signed by a CA we trust", "--ca-cert")
    result = run_script("grpcRequest.py", "--tls", server=tls_server.target)  # the system's CAs only
    one_error_line(result, 1, "not signed by a CA we trust")


def test_plaintext_client_to_a_tls_server_is_told_to_add_tls(tls_server):
    one_error_line(run_script("grpcRequest.py", server=tls_server.target), 1, "add --tls")


def test_tls_client_to_a_plaintext_server(toy_server, pki):
    result = run_script("grpcRequest.py", "--ca-cert", pki["ca.pem"], server=toy_server.target)
    one_error_line(result, 1, "the server does not speak TLS")


def test_mutual_tls(mtls_server, pki):
    ok = run_script("grpcRequest.py", "--ca-cert", pki["ca.pem"], "--client-cert", pki["client.pem"],
                    "--client-key", pki["client.key"], server=mtls_server.target)
    assert ok.code == 0 and "outputs" in ok.out, ok
    refused = run_script("grpcRequest.py", "--ca-cert", pki["ca.pem"], server=mtls_server.target)
    one_error_line(refused, 1, "may want a client certificate", "--client-cert")
    mismatched = run_script("grpcRequest.py", "--ca-cert", pki["ca.pem"], "--client-cert", pki["other-ca.pem"],
                            "--client-key", pki["client.key"], server=mtls_server.target)
    one_error_line(mismatched, 1, "not a valid certificate and its key")


def test_tls_flags_from_the_environment(mtls_server, pki):
    env = {"TFS_CA_CERT": pki["ca.pem"], "TFS_CLIENT_CERT": pki["client.pem"], "TFS_CLIENT_KEY": pki["client.key"]}
    result = run_script("grpcModelStatus.py", "-m", "Toy", server=mtls_server.target, env=env)
    assert result.code == 0 and "AVAILABLE" in result.out, result


@pytest.mark.parametrize("args, message", [
    (["--ca-cert", "/nonexistent/ca.pem"], "--ca-cert: cannot read /nonexistent/ca.pem: No such file or directory"),
    (["--ca-cert", os.path.join(PYTHON_DIR, "requirements.txt")], "is not a PEM file"),
    (["--client-cert", os.path.join(PYTHON_DIR, "requirements.txt")], "mutual TLS needs both --client-cert and "
                                                                       "--client-key"),
    (["--compression", "brotli"], "invalid choice: 'brotli'"),
    (["--retries", "-1"], "a count is >= 0, not -1"),
])
def test_bad_transport_flags_exit_2_before_sending(args, message):
    result = run_script("grpcRequest.py", *args, server="localhost:1")
    assert result.code == 2 and result.out == "" and message in result.err, result
    assert len(result.err.splitlines()) <= 2, result


def test_gzip_compression_gives_the_same_answer(toy_server):
    plain = run_script("grpcRequest.py", "-v", "2", server=toy_server.target)
    gzip = run_script("grpcRequest.py", "-v", "2", "--compression", "gzip", server=toy_server.target)
    env = run_script("grpcRequest.py", "-v", "2", server=toy_server.target, env={"TFS_COMPRESSION": "deflate"})
    assert plain.code == gzip.code == env.code == 0
    assert plain.out == gzip.out == env.out


@pytest.mark.parametrize("config, message", [
    ('server_key: "/etc/ssl/server.key"\nserver_cert: "/etc/ssl/server.pem"\n',
     "server_key must hold a PEM block (-----BEGIN ...), the file's contents, not its path"),
    ("client_verify: true\n", "server_key is missing: it must hold a PEM block (-----BEGIN ...)"),
    ("server_key: 3 {\n", "Invalid protobuf file"),
])
def test_server_refuses_a_bad_ssl_config(tmp_path, config, message):
    path = tmp_path / "ssl.config"
    path.write_text(config)
    result = subprocess.run([os.path.join(REPO, "server", "tensorflow_model_server"), f"--port={free_port()}",
                             "--model_name=Toy", f"--model_base_path={TOY}", f"--ssl_config_file={path}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 255, result
    assert message in result.stderr.splitlines()[-1], result.stderr


@pytest.mark.parametrize("fault, message", [
    ("another key", "server_key and server_cert are not a key and its certificate (KEY_VALUES_MISMATCH)"),
    ("a CA that is not a certificate", "custom_ca holds no certificate OpenSSL can read"),
])
def test_tls_material_that_does_not_fit_is_named_before_any_model_loads(tmp_path, pki, fault, message):
    # gRPC found these only as the port bound: "UNAVAILABLE: ... cannot bind 0.0.0.0:PORT", after every model loaded.
    config = ssl_config(pki, client_verify=True)
    if fault == "another key":
        with open(pki["client.key"]) as f:
            config = config.replace(config.split('"')[1], f.read().replace("\n", "\\n"), 1)
    else:
        config = config.replace('custom_ca: "-----BEGIN CERTIFICATE-----', 'custom_ca: "-----BEGIN CERTIFICATE-----'
                                '\\ngarbage')
    path = tmp_path / "ssl.config"
    path.write_text(config)
    result = subprocess.run([os.path.join(REPO, "server", "tensorflow_model_server"), f"--port={free_port()}",
                             "--model_name=Toy", f"--model_base_path={TOY}", f"--ssl_config_file={path}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 255
    assert result.stderr.splitlines()[-1] == f"Failed to start server. Error: INVALID_ARGUMENT: {path}: {message}"
    assert "Reading SavedModel" not in result.stderr  # refused before a model loads


def test_client_verify_needs_a_custom_ca(tmp_path, pki):
    path = tmp_path / "ssl.config"
    path.write_text(ssl_config(pki) + "client_verify: true\n")
    result = subprocess.run([os.path.join(REPO, "server", "tensorflow_model_server"), f"--port={free_port()}",
                             "--model_name=Toy", f"--model_base_path={TOY}", f"--ssl_config_file={path}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 255
    assert "client_verify needs custom_ca" in result.stderr.splitlines()[-1], result.stderr


# -- health --------------------------------------------------------------------------------------

def test_health_service_names_and_overall_status(tls_server, pki):
    for service in ("", "PredictionService", "ModelService", "tensorflow.serving.PredictionService"):
        args = ["--health"] + ([service] if service else []) + ["--ca-cert", pki["ca.pem"]]
        result = run_script("grpcModelStatus.py", *args, server=tls_server.target)
        assert (result.code, result.out, result.err) == (0, "SERVING\n", ""), (service, result)
    result = run_script("grpcModelStatus.py", "--health", "--format", "json", "--ca-cert", pki["ca.pem"],
                        server=tls_server.target)
    assert json.loads(result.out) == {"service": "", "status": "SERVING"}
    unknown = run_script("grpcModelStatus.py", "--health", "Nope", "--ca-cert", pki["ca.pem"], server=tls_server.target)
    one_error_line(unknown, 1, "knows no service 'Nope'")


def test_health_is_not_serving_while_a_model_has_no_version(tmp_path, toy_models):
    base = tmp_path / "Toy"
    base.mkdir()
    os.symlink(os.path.join(TOY, "1"), base / "1")
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n"
                      f"  config {{ name: 'Toy' base_path: '{TOY}' model_platform: 'tensorflow' }}\n"
                      f"  config {{ name: 'Other' base_path: '{base}' model_platform: 'tensorflow' }}\n}}\n")

    def overall():
        return run_script("grpcModelStatus.py", "--health", server=server.target)

    with ServerProcess(f"--model_config_file={config}", "--enable_grpc_healthcheck_service",
                       "--file_system_poll_wait_seconds=1") as server:
        assert (overall().code, overall().out) == (0, "SERVING\n")
        os.unlink(base / "1")  # Other's only version goes: the poll unloads it
        wait_until(lambda: overall().out == "NOT_SERVING\n", timeout=30, what="overall NOT_SERVING")
        result = overall()
        assert (result.code, result.err) == (1, ""), result
        prediction = run_script("grpcModelStatus.py", "--health", "PredictionService", server=server.target)
        assert (prediction.code, prediction.out) == (0, "SERVING\n"), prediction
        os.symlink(os.path.join(TOY, "1"), base / "1")  # back again
        wait_until(lambda: overall().code == 0, timeout=30, what="overall SERVING again")


def test_health_without_the_service(toy_server):
    result = run_script("grpcModelStatus.py", "--health", server=toy_server.target)
    one_error_line(result, 1, "has no health service", "--enable_grpc_healthcheck_service")


# -- retries and waiting ---------------------------------------------------------------------------

def _popen(script, *args, port):
    env = dict(os.environ)
    env.pop("TFS_SERVER", None)
    return subprocess.Popen([sys.executable, script, "-s", f"localhost:{port}", *args], cwd=PYTHON_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_server_is_one_line_and_retries_ride_over_a_restart(toy_models):
    port = free_port()
    server = ServerProcess(f"--port={port}", "--model_name=Toy", f"--model_base_path={TOY}").start()
    assert run_script("grpcRequest.py", server=server.target).code == 0
    server.process.kill()
    server.stop()
    dead = run_script("grpcRequest.py", server=f"localhost:{port}")
    one_error_line(dead, 1, f"cannot reach TF Serving at localhost:{port}", "connection refused")
    retried = run_script("grpcRequest.py", "--retries", "2", server=f"localhost:{port}")
    one_error_line(retried, 1, "after 3 attempts")
    # Retries wait at least 0.5 + 1 + 2 + 4 + 5 s in all: the restarted server (ready in ~3 s) is in time.
    script = _popen("grpcRequest.py", "--retries", "5", "-t", "60", port=port)
    with ServerProcess(f"--port={port}", "--model_name=Toy", f"--model_base_path={TOY}"):
        out, err = script.communicate(timeout=90)
    assert script.returncode == 0 and err == "" and "outputs" in out, (out, err)


def test_a_reload_is_never_retried(toy_models):
    port = free_port()
    result = run_script("grpcReloadModel.py", "-c", os.path.join(toy_models, "toy_labels.config"), "--retries", "3",
                        server=f"localhost:{port}")
    line = one_error_line(result, 1, "cannot reach TF Serving")
    assert "attempts" not in line


def test_wait_for_ready_waits_for_a_starting_server(toy_models):
    port = free_port()
    script = _popen("grpcModelStatus.py", "-m", "Toy", "--wait-for-ready", "-t", "90", port=port)
    with ServerProcess(f"--port={port}", "--model_name=Toy", f"--model_base_path={TOY}"):
        out, err = script.communicate(timeout=120)
    assert script.returncode == 0 and err == "" and "AVAILABLE" in out, (out, err)
    env_script = run_script("grpcModelStatus.py", "-m", "Toy", "-t", "1", server=f"localhost:{port}",
                            env={"TFS_WAIT_FOR_READY": "1"})
    one_error_line(env_script, 1, "within 1s")


def test_health_watchers_see_each_change_once_and_not_serving_on_sigterm(toy_models):
    import signal
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    server = ServerProcess("--model_name=Toy", f"--model_base_path={TOY}", "--enable_grpc_healthcheck_service").start()
    seen = []
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def watch():
            try:
                for response in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                    seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
            except grpc.RpcError as e:
                seen.append(e.code().name)

        watcher = threading.Thread(target=watch)
        watcher.start()
        wait_until(lambda: seen == ["SERVING"], timeout=10, what="the first status")
        assert run_script("grpcModelStatus.py", "--health", server=server.target).code == 0  # a poll or two later
        server.process.send_signal(signal.SIGTERM)
        watcher.join(30)
    assert server.stop() == 0
    assert seen == ["SERVING", "NOT_SERVING", "UNAVAILABLE"], seen


def test_a_client_key_without_its_certificate_is_refused(tmp_path):
    # Before, --client-key alone was ignored, and the call went out in plaintext (exit 0).
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    result = run_script("grpcModelStatus.py", "-s", "localhost:1", "--client-key", str(key))
    assert (result.code, result.out) == (2, "")
    assert result.err == "grpcModelStatus.py: error: mutual TLS needs both --client-cert and --client-key\n"


def test_tls_against_a_plaintext_server_is_one_line_without_grpcs_own(toy_server):
    # gRPC's C core logs a failed handshake itself ("I... ssl_transport_security.cc Handshake failed"); the scripts
    # quiet it before grpc is first imported. Seen again when the Client's import came first.
    result = run_script("grpcModelStatus.py", "-s", toy_server.target, "--tls", "-t", "10")
    assert result.code == 1 and len(result.err.splitlines()) == 1, result.err
