"""tfsclient.Client, the Python API, against the real local server: its answers are the scripts' answers, and a
failure is a ServingError of its code with TF Serving's message."""

import ast
import json
import os
import socket

import grpc
import numpy as np
import pytest

import tfsclient
from script_helpers import run_script
from testing.server import ServerProcess

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = [{"age": 31.0, "income": 5.2}, {"age": 45.0, "income": 1.0}]


@pytest.fixture
def client(toy_server):
    with tfsclient.Client(toy_server.target, timeout=30) as client:
        yield client


def test_predict_returns_the_arrays_the_script_prints(client, run):
    outputs = client.predict({"input_1": np.array([[1.0, 2.0], [1.0, 3.0]], np.float32)}, "Toy", version=1)
    printed = json.loads(run("grpcRequest.py", "-m", "Toy", "-v", "1", "--values").out)
    assert list(outputs) == list(printed) == ["output_1"]
    assert outputs["output_1"].dtype == np.float32
    np.testing.assert_array_equal(outputs["output_1"], np.array(printed["output_1"], np.float32))
    # lists as tf.make_tensor_proto takes them; a label for a version
    by_label = client.predict({"input_1": [[1.0, 2.0], [1.0, 3.0]]}, "Toy", label="stable")
    np.testing.assert_array_equal(by_label["output_1"], outputs["output_1"])


def test_status_and_metadata_are_the_scripts_json(client, run):
    assert client.status("Toy_double") == json.loads(run("grpcModelStatus.py", "-m", "Toy_double",
                                                         "--format", "json").out)
    assert client.metadata("Toy", version=1) == json.loads(run("grpcMetadata.py", "-m", "Toy", "-v", "1",
                                                               "--format", "json").out)


def test_classify_regress_and_multi_inference(client, run):
    printed = run("grpcMultiTask.py", "-m", "MultiTask", "--task", "classify:classify", "--task", "regress:regress",
                  "-e", "age=31.0,income=5.2", "-e", "age=45.0,income=1.0", "--format", "json").out
    results = json.loads(printed)["results"]
    classes = [[(c["label"], c["score"]) for c in row["classes"]]
               for row in results[0]["classification_result"]["classifications"]]
    values = [r["value"] for r in results[1]["regression_result"]["regressions"]]
    def same_classes(got):
        assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in classes]
        np.testing.assert_allclose([[score for _, score in row] for row in got],
                                   [[score for _, score in row] for row in classes], rtol=1e-6)

    same_classes(client.classify(EXAMPLES, "MultiTask", signature="classify"))
    np.testing.assert_allclose(client.regress(EXAMPLES, "MultiTask", signature="regress"), values, rtol=1e-6)
    classified, regressed = client.multi_inference([("classify", "classify"), ("regress", "regress")], EXAMPLES,
                                                   "MultiTask")
    same_classes(classified)
    np.testing.assert_allclose(regressed, values, rtol=1e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.predict({"input_1": [[1.0, 2.0]]}, "nope"), tfsclient.NotFoundError,
     "Servable not found for request: Latest(nope)"),
    (lambda c: c.status("Toy", version=9), tfsclient.NotFoundError,
     "Could not find version 9 of model Toy"),
    (lambda c: c.predict({"wrong": [[1.0, 2.0]]}, "Toy"), tfsclient.InvalidArgumentError, "wrong"),
])
def test_a_failure_is_a_serving_error_of_its_code(client, call, error, message):
    with pytest.raises(error) as raised:
        call(client)
    assert isinstance(raised.value, tfsclient.ServingError) and isinstance(raised.value, grpc.RpcError)
    assert raised.value.code().name == error.code_name and message in raised.value.message
    assert raised.value.details() == raised.value.message


def test_no_server_is_unavailable_and_a_deadline_is_deadline_exceeded():
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tfsclient.Client(f"127.0.0.1:{port}", timeout=10) as client:
        with pytest.raises(tfsclient.UnavailableError):
            client.status("Toy")
    with socket.socket() as silent:  # listens, never answers: the deadline ends the call
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with tfsclient.Client(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5) as client:
            with pytest.raises(tfsclient.DeadlineExceededError):
                client.status("Toy")


def test_reload_serves_the_config_and_a_refused_one_raises(toy_models, tmp_path):
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models") as server, \
            tfsclient.Client(server.target, timeout=60) as client:
        config = (f'model_config_list {{ config {{ name: "Toy_double" base_path: "{toy_models}/Toy_double" '
                  'model_platform: "tensorflow" } }')
        client.reload(config)
        assert client.status("Toy_double")["model_version_status"][0]["state"] == "AVAILABLE"
        with pytest.raises(tfsclient.ServingError) as refused:
            client.reload('model_config_list { config { name: "X" base_path: "/nonexistent" '
                          'model_platform: "tensorflow" } }')
        assert "/nonexistent" in refused.value.message
        assert client.status("Toy_double")["model_version_status"][0]["state"] == "AVAILABLE"  # still served


def test_a_closed_client_refuses_calls(toy_server):
    client = tfsclient.Client(toy_server.target)
    with client:
        client.status("Toy")
    with pytest.raises(ValueError):
        client.status("Toy")


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="compression"):
        tfsclient.Client("localhost:1", compression="brotli")
    with tfsclient.Client("localhost:1") as client:
        with pytest.raises(ValueError, match="not both"):
            client.predict({}, "Toy", version=1, label="stable")
        with pytest.raises(ValueError, match="no such RPC"):
            client.call("Nope", None)


def test_every_call_of_the_scripts_goes_through_the_client():
    # One path: no script or module but client.py makes a channel or a TF Serving stub (grpcModelStatus's health
    # stub rides the client's channel).
    makers = {"insecure_channel", "secure_channel", "intercept_channel", "PredictionServiceStub",
              "ModelServiceStub"}
    found = []
    for folder in (PYTHON_DIR, os.path.join(PYTHON_DIR, "tfsclient")):
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".py") or name in ("client.py", "transport.py"):
                continue
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            found += [f"{name}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr in makers]
    assert found == []


def test_a_predict_without_bfloat16_and_co_never_imports_ml_dtypes(toy_server):
    # ml_dtypes takes 20-700 ms to import (0.7.0, which pip picks for `pip install ./python`, the most): only a
    # tensor of one of its dtypes loads it. Before, every script imported it at start.
    code = ("import sys, grpcRequest\n"
            f"code = grpcRequest.main(['-s', '{toy_server.target}', '-m', 'Toy', '-v', '1', '--values'])\n"
            "print(code, 'ml_dtypes' in sys.modules, file=sys.stderr)\n"
            "from tfsclient import codec\n"
            "import ml_dtypes, numpy as np\n"
            "proto = codec.make_tensor_proto(np.array([1.5], ml_dtypes.bfloat16))\n"
            "print(codec.make_ndarray(proto).dtype, codec.numpy_dtype(proto.dtype), file=sys.stderr)\n")
    result = run_script("-c", code)
    assert result.err.splitlines() == ["0 False", "bfloat16 bfloat16"], result


RACE = r'''
import sys, threading
from tfsclient import codec
import numpy as np  # (not ml_dtypes: the threads meet it first)
proto = codec.make_tensor_proto(np.arange(4, dtype=np.float32))  # built before: no ml dtype met yet
proto.dtype = 14  # DT_BFLOAT16
proto.ClearField("tensor_content"); proto.half_val.extend([16256] * 4)
barrier, failures = threading.Barrier(16), []
def decode():
    barrier.wait()
    try:
        codec.make_ndarray(proto)
    except Exception as e:
        failures.append(repr(e))
threads = [threading.Thread(target=decode) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join(30)
print(len(failures), failures[:1])
'''


def test_threads_meeting_ml_dtypes_at_once_all_get_them():
    # The first meeting fills the dtype tables under a lock. Before, the other threads saw the tables half filled:
    # "bfloat16 has no numpy equivalent (install ml_dtypes)", and --fleet sent bfloat16 inputs as float32.
    result = run_script("-c", RACE)
    assert result.out == "0 []\n", result


def test_a_serving_error_pickles():
    # A multiprocessing pool sends a worker's exception back pickled. Before, unpickling it failed (and the pool's
    # get() hung for good).
    import pickle

    error = pickle.loads(pickle.dumps(tfsclient.rpc_errors.from_code(grpc.StatusCode.NOT_FOUND, "gone")))
    assert type(error) is tfsclient.NotFoundError and error.code() == grpc.StatusCode.NOT_FOUND
    assert error.message == "gone" and error.trailing_metadata() is None


def test_the_api_refuses_what_it_would_send_wrong(client):
    with pytest.raises(TypeError, match="Predict takes a tensorflow.serving.PredictRequest"):
        client.Predict(None)
    with pytest.raises(TypeError, match="not GetModelStatusRequest"):
        client.Predict(tfsclient.protos.get_model_status_pb2.GetModelStatusRequest())
    for call, match in [(lambda: client.predict([[1.0, 2.0]], "Toy"), "inputs: a dict"),
                        (lambda: client.predict({"input_1": [[1.0, 2.0]]}, None), "model: a model name"),
                        (lambda: client.multi_inference([], [{"age": 1.0}], "MultiTask"), "at least one"),
                        (lambda: client.reload("garbage {"), "not a ModelServerConfig"),
                        (lambda: client.status("Toy", timeout=float("nan")), "timeout"),
                        (lambda: tfsclient.Client("localhost:1", retries="2"), "retries")]:
        with pytest.raises(ValueError, match=match):
            call()
    # a str output filter is one name, not its letters; inf is no deadline
    outputs = client.predict({"input_1": [[1.0, 2.0]]}, "Toy", output_filter="output_1", timeout=float("inf"))
    assert list(outputs) == ["output_1"]
    with tfsclient.Client(client.target, timeout=float("inf")) as forever:
        assert forever.status("Toy")["model_version_status"]


def test_example_values_keep_their_python_types(client):
    # A str is a bytes feature, never read as a number: "31.0" is not a float here (the scripts read text, and
    # infer; the API has typed values). MultiTask's age is a float feature, so the server refuses it.
    assert client.regress([{"age": np.float32(31.0), "income": 5.2}], "MultiTask", signature="regress")
    with pytest.raises(tfsclient.InvalidArgumentError):
        client.regress([{"age": "31.0", "income": 5.2}], "MultiTask", signature="regress")


def test_the_lazy_names_are_listed():
    assert {"Client", "ServingError", "NotFoundError"} <= set(dir(tfsclient))
