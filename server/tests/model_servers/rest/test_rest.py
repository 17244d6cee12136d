"""The REST API and the metrics page, end to end: the real server over HTTP, as curl would call it."""

import json
import os
import re
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from testing.server_client import Client, values

from testing.paths import TESTDATA
from testing.server import ServerProcess, free_port

HALF_PLUS_TWO = os.path.join(TESTDATA, "saved_model_half_plus_two_cpu")
TWO_VERSIONS = os.path.join(TESTDATA, "saved_model_half_plus_two_2_versions")
METRICS = "/monitoring/prometheus/metrics"


def call(port, path, body=None, method=None):
    """(HTTP status, body text, headers) of one request."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"http://localhost:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


@pytest.fixture(scope="module")
def rest(tmp_path_factory, toy_models):
    """A server with the toy models and TF Serving's test models, REST on a free port, metrics on."""
    directory = tmp_path_factory.mktemp("rest")
    config = directory / "models.config"
    config.write_text("model_config_list {\n"
                      f"  config {{ name: 'Toy' base_path: '{toy_models}/Toy' model_platform: 'tensorflow' "
                      "model_version_policy { specific { versions: 1 versions: 2 } } "
                      "version_labels { key: 'stable' value: 1 } }\n"
                      f"  config {{ name: 'Toy_double' base_path: '{toy_models}/Toy_double' "
                      "model_platform: 'tensorflow' }\n"
                      f"  config {{ name: 'MultiTask' base_path: '{toy_models}/MultiTask' "
                      "model_platform: 'tensorflow' }\n"
                      f"  config {{ name: 'default' base_path: '{HALF_PLUS_TWO}' model_platform: 'tensorflow' }}\n"
                      f"  config {{ name: 'saved_model_half_plus_two_2_versions' base_path: '{TWO_VERSIONS}' "
                      "model_platform: 'tensorflow' }\n}\n")
    port = free_port()
    server = ServerProcess(f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models",
                           f"--monitoring_config_file={TESTDATA}/monitoring_config.txt")
    server.flags.append(f"--rest_api_port={port}")  # after ServerProcess's own --rest_api_port=0: the last one wins
    with server:
        server.rest_port = port
        server.wait_for_log(r"Exporting HTTP/REST API at:localhost:\d+ \.\.\.")
        yield server


def predict(rest, path, body):
    return call(rest.rest_port, path, body)


# -- the curl commands -----------------------------------------------------------------------

def test_predict_row_format_as_tf_serving_answers(rest):
    code, text, headers = predict(rest, "/v1/models/Toy/versions/1:predict", '{"instances": [[1.0, 2.0]]}')
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(text) == {"predictions": [[10.8054295]]}
    code, text, _ = predict(rest, "/v1/models/Toy_double/versions/1:predict", '{"instances": [[1.0, 2.0]]}')
    assert json.loads(text) == {"predictions": [[6.80301666]]}
    # no version: the latest (2, the guide's 0.9990350008010864); a label resolves like gRPC's
    assert json.loads(predict(rest, "/v1/models/Toy:predict", '{"instances": [[1.0, 2.0]]}')[1]) == \
        {"predictions": [[0.999035]]}
    assert json.loads(predict(rest, "/v1/models/Toy/labels/stable:predict", '{"instances": [[1.0, 2.0]]}')[1]) == \
        {"predictions": [[10.8054295]]}


def test_predict_layout_is_tf_servings(rest):
    code, text, _ = predict(rest, "/v1/models/default:predict", '{"instances": [1.0, 2.0, 5.0]}')
    assert (code, text) == (200, '{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}')


def test_predict_columnar(rest):
    code, text, _ = predict(rest, "/v1/models/default:predict",
                            '{"signature_name": "serving_default", "inputs": [3.0, 4.0]}')
    assert code == 200 and json.loads(text) == {"outputs": [3.5, 4.0]}
    code, text, _ = predict(rest, "/v1/models/Toy/versions/1:predict", '{"inputs": {"input_1": [[1.0, 2.0]]}}')
    assert code == 200 and json.loads(text) == {"outputs": [[10.8054295]]}


@pytest.mark.parametrize("columnar", [False, True], ids=["rows", "columnar"])
def test_an_output_of_2_mb_is_answered_whole(rest, columnar):
    # 500,000 float32 values: gRPC writes an output this large straight from its array into the answer's bytes;
    # REST once read the gRPC answer's (then empty) outputs and said "Cannot convert empty tensor map to JSON".
    count = 500_000
    body = json.dumps({"inputs" if columnar else "instances": list(range(count))})
    code, text, _ = predict(rest, "/v1/models/default:predict", body)
    assert code == 200, text[:200]
    answer = json.loads(text)["outputs" if columnar else "predictions"]
    assert len(answer) == count and answer[:3] == [2.0, 2.5, 3.0] and answer[-1] == (count - 1) / 2 + 2


def test_every_output_of_a_large_multi_output_answer_is_in_every_row(rest):
    # 90,000 rows of MultiTask: its scores output (3 float32 a row) passes 1 MiB; REST once answered 200 with no
    # "scores" in any row (issue 29), the same cause as the test above.
    body = json.dumps({"instances": [{"age": 31.0, "income": 5.2}] * 90_000})
    code, text, _ = predict(rest, "/v1/models/MultiTask:predict", body)
    assert code == 200, text[:200]
    rows = json.loads(text)["predictions"]
    assert len(rows) == 90_000 and all(set(row) == {"classes", "prediction", "scores"} for row in rows)
    assert rows[0] == rows[-1] and len(rows[-1]["scores"]) == 3


def test_a_long_error_comes_back_whole_over_rest_and_cut_over_grpc(rest):
    # TF Serving cuts gRPC messages past 1024 characters (util/grpc_status_util.cc); its REST errors are whole.
    name = "s" * 3000
    message = f'Serving signature key "{name}" not found.'
    body = json.dumps({"signature_name": name, "instances": [1.0]})
    code, text, _ = predict(rest, "/v1/models/default:predict", body)
    assert (code, json.loads(text)["error"]) == (400, f'Serving signature name: "{name}" not found in signature def')
    code, text, _ = predict(rest, "/v1/models/default:regress", json.dumps({"signature_name": name, "examples": [{}]}))
    assert (code, json.loads(text)["error"]) == (400, f"No signature was found with the name: {name}")
    client = Client(rest.target)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            client.predict("default", signature=name, inputs={"x": np.array([1.0], np.float32)})
        assert raised.value.details() == message[:1024] + "...TRUNCATED"
    finally:
        client.close()


def test_status_endpoints(rest):
    code, text, _ = call(rest.rest_port, "/v1/models/default")
    assert code == 200
    assert json.loads(text) == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert text.startswith('{\n "model_version_status": [\n  {\n   "version": "123",')
    code, text, _ = call(rest.rest_port, "/v1/models/Toy/versions/1")
    assert code == 200 and [v["version"] for v in json.loads(text)["model_version_status"]] == ["1"]
    assert call(rest.rest_port, "/v1/models/Toy/labels/stable")[0] == 200


@pytest.mark.parametrize("name, expected", [
    ("default", "half_plus_two_model_metadata.json"),
    ("saved_model_half_plus_two_2_versions", "saved_model_half_plus_two_2_versions_metadata.json"),
])
def test_metadata_is_tf_servings_json(rest, name, expected):
    code, text, _ = call(rest.rest_port, f"/v1/models/{name}/metadata")
    assert code == 200
    with open(os.path.join(TESTDATA, expected)) as f:
        want = json.load(f)
    got = json.loads(text)
    want["model_spec"]["version"] = got["model_spec"]["version"]  # the file's are 123 and 124
    assert got == want


def test_classify_and_regress(rest):
    code, text, _ = predict(rest, "/v1/models/default:regress",
                            '{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}')
    assert code == 200 and json.loads(text) == {"results": [42.0]}
    code, text, _ = predict(rest, "/v1/models/default:classify",
                            '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": 10.0}]}')
    assert code == 200 and json.loads(text) == {"results": [[["", 12.0]], [["", 7.0]]]}


# -- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body, code, message", [
    ("POST", "/v1/models/nope:predict", '{"instances": [1.0]}', 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/Toy/versions/7", None, 404, "Could not find version 7 of model Toy"),
    ("POST", "/v1/models/Toy/labels/nope:predict", '{"instances": [[1.0, 2.0]]}', 400,
     "Unrecognized servable version label: nope"),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("POST", "/v1/models/Toy:PREDICT", "{}", 400, "Malformed request: POST /v1/models/Toy:PREDICT"),
    ("GET", "/v1/models/Toy/versions/1/extra", None, 400, "Malformed request: GET /v1/models/Toy/versions/1/extra"),
    ("GET", "/v1/models/Toy?x=1", None, 404, "Could not find any versions of model Toy?x=1"),  # as TF Serving's
    # regex, which sees the query as part of the name
    ("DELETE", "/v1/models/Toy", None, 400, "Malformed request: DELETE /v1/models/Toy"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("POST", "/v1/models/Toy/versions/99999999999999999999:predict", "{}", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("POST", "/v1/models/default:predict", '{"instances": [1.0], "signature_name": "nope"}', 400,
     'Serving signature name: "nope" not found in signature def'),
])
def test_errors_are_json_with_tf_servings_http_codes(rest, method, path, body, code, message):
    got_code, text, headers = call(rest.rest_port, path, body, method=method)
    assert got_code == code, text
    assert headers["Content-Type"] == "application/json"
    assert json.loads(text)["error"].startswith(message), text
    assert text.startswith('{\n    "error": ')


def test_a_path_outside_v1_is_a_plain_404(rest):
    code, text, headers = call(rest.rest_port, "/favicon.ico")
    assert code == 404 and "404 Not Found" in text and headers["Content-Type"] == "text/html"


def test_rest_and_grpc_are_the_same_server(rest):
    from testing.server_client import Client
    client = Client(rest.target)
    try:
        assert [s.version for s in client.status("Toy").model_version_status] == [2, 1]
    finally:
        client.close()


# -- metrics ------------------------------------------------------------------------------------------------

def samples(text, name):
    """{labels text: value} of the metric's samples in a Prometheus page."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{re.escape(name)}\{{(.*?)\}} (\S+)$", text, re.M)}


def test_metrics_count_requests_by_model_and_status(rest):
    page = call(rest.rest_port, METRICS)[1]
    before = samples(page, ":tensorflow:serving:request_count")
    latency_before = samples(page, ":tensorflow:serving:request_latency_count")
    for _ in range(3):
        predict(rest, "/v1/models/Toy_double:predict", '{"instances": [[1.0, 2.0]]}')
    predict(rest, "/v1/models/Toy_double:predict", '{"instances": [[1.0, 2.0, 3.0]]}')  # fails in the model
    code, page, headers = call(rest.rest_port, METRICS)
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    after = samples(page, ":tensorflow:serving:request_count")
    ok, failed = 'model_name="Toy_double",status="OK"', 'model_name="Toy_double",status="INVALID_ARGUMENT"'
    assert after[ok] - before.get(ok, 0) == 3
    assert after[failed] - before.get(failed, 0) == 1
    counts = samples(page, ":tensorflow:serving:request_latency_count")
    latency = 'API="Predict",entrypoint="REST",model_name="Toy_double"'
    assert counts[latency] - latency_before.get(latency, 0) == 3  # as TF Serving: the latency of successes only
    assert "# TYPE :tensorflow:serving:request_latency histogram" in page
    by_version = samples(page, ":tensorflow:serving:request_count_by_version")
    assert by_version['API="Predict",model_name="Toy_double",status="OK",version="1"'] >= 3
    loads = samples(page, ":tensorflow:cc:saved_model:load_attempt_count")
    assert any(key.endswith('status="success"') and "Toy_double" in key for key in loads)
    assert "batching_session" not in page  # no batch has run: TF Serving prints no batching series yet


def test_metrics_path_with_a_query_is_refused(rest):
    code, text, _ = call(rest.rest_port, METRICS + "?x=1")
    assert (code, text) == (400, f"Unexpected path: {METRICS}?x=1. Should be {METRICS}")


# -- start-up ------------------------------------------------------------------------------------------------

def test_rest_port_equal_to_grpc_port_is_skipped_with_an_error(toy_models):
    port = free_port()
    with ServerProcess(f"--port={port}", f"--rest_api_port={port}", "--model_name=Toy",
                       f"--model_base_path={toy_models}/Toy") as server:
        server.wait_for_log("server_options.http_port cannot be same as grpc_port. Please use a different port for "
                            "HTTP/REST API. Skipped exporting HTTP/REST API.")


def test_a_busy_rest_port_leaves_grpc_serving(toy_models):
    import socket
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy")
        server.flags.append(f"--rest_api_port={port}")
        with server:
            server.wait_for_log(rf"Failed to start HTTP Server at localhost:{port}")
            with Client(server.target) as client:  # gRPC still serves the model
                assert values(client.predict(), "dense") == pytest.approx([0.9901618, 0.9934704])
            assert server.process.poll() is None


def test_no_metrics_page_without_a_monitoring_config(toy_models):
    port = free_port()
    server = ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy")
    server.flags.append(f"--rest_api_port={port}")
    with server:
        server.wait_for_log("Exporting HTTP/REST API")
        assert call(port, METRICS)[0] == 404
        assert call(port, "/v1/models/Toy")[0] == 200


def test_rest_api_timeout_in_ms_answers_504(tmp_path):
    from testing.slow_model import build_slow_model
    build_slow_model(tmp_path / "Slow" / "1")
    port = free_port()
    server = ServerProcess("--model_name=Slow", f"--model_base_path={tmp_path / 'Slow'}",
                           "--rest_api_timeout_in_ms=300")
    server.flags.append(f"--rest_api_port={port}")
    with server:
        server.wait_for_log("Exporting HTTP/REST API")
        body = json.dumps({"inputs": {"x": [1.0, 2.0], "sleep_us": 0, "marker": str(tmp_path / "fast")}})
        code, text, _ = call(port, "/v1/models/Slow:predict", body)
        assert (code, json.loads(text)) == (200, {"outputs": [2.0, 4.0]})
        body = json.dumps({"inputs": {"x": [1.0], "sleep_us": 1_000_000, "marker": str(tmp_path / "slow")}})
        code, text, _ = call(port, "/v1/models/Slow:predict", body)
        assert code == 504, text
        assert json.loads(text) == {"error": "Timed out waiting for notification"}  # TensorFlow cancelled the run
