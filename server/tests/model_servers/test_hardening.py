"""Production hardening: bad requests are INVALID_ARGUMENT and the server serves on; a model that fails to load
leaves the others serving; SIGTERM/SIGINT finish the requests in flight; a soak holds its memory; new versions
and reloads under load fail no request.

Every server here is a real subprocess on a free loopback port; every wait polls, with a deadline.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from testing.server_client import Client, model_config, rpc_error, values
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, predict_pb2, regression_pb2

from testing.paths import TESTDATA
from testing.server import REPO, ServerProcess, client_connected, connection_refused, wait_until
from testing.slow_model import slow_request

PYTHON_DIR = os.path.join(REPO, "python")
TOY_V2_OUTPUT = [0.9990350008010864, 0.9997349381446838]  # Toy version 2 on the guide's input
CAP = 1 << 30  # server.tensors.MAX_TENSOR_BYTES
CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def proc_status(pid, field):
    """A /proc/PID/status field in bytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def assert_serving(client):
    """A good Predict after a bad request: the server is still up and answers it right."""
    response = client.predict(timeout=30)
    assert response.model_spec.version.value == 2
    assert values(response, "output_1") == TOY_V2_OUTPUT


# -- bad requests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_server(toy_models, tmp_path_factory):
    """Toy (versions 1 and 2) and TF Serving's half_plus_two (TF1 and TF2 exports), for the bad requests."""
    config = tmp_path_factory.mktemp("config") / "bad.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'Toy' base_path: '{toy_models}/Toy' model_platform: 'tensorflow' "
        "model_version_policy { specific { versions: 1 versions: 2 } } }\n"
        f"  config {{ name: 'tf1' base_path: '{TESTDATA}/saved_model_half_plus_two_cpu' "
        "model_platform: 'tensorflow' }\n"
        f"  config {{ name: 'tf2' base_path: '{TESTDATA}/saved_model_half_plus_two_tf2_cpu' "
        "model_platform: 'tensorflow' }\n"
        "}\n")
    with ServerProcess(f"--model_config_file={config}") as server:
        yield server


@pytest.fixture(scope="module")
def client(bad_server):
    with Client(bad_server.target) as c:
        yield c


GARBAGE = b"this is not a protobuf"  # 't' is field 14 with wire type 4 (end group): no message parses it

METHODS = [
    ("PredictionService", "Predict", "PredictRequest"),
    ("PredictionService", "Classify", "ClassificationRequest"),
    ("PredictionService", "Regress", "RegressionRequest"),
    ("PredictionService", "MultiInference", "MultiInferenceRequest"),
    ("PredictionService", "GetModelMetadata", "GetModelMetadataRequest"),
    ("ModelService", "GetModelStatus", "GetModelStatusRequest"),
    ("ModelService", "HandleReloadConfigRequest", "ReloadConfigRequest"),
]


@pytest.mark.parametrize("service, method, message_type", METHODS)
def test_garbage_bytes_are_invalid_argument_on_every_method(client, service, method, message_type):
    # gRPC Python alone answers INTERNAL "Exception deserializing request!".
    raw = client.channel.unary_unary(f"/tensorflow.serving.{service}/{method}",
                                     request_serializer=None, response_deserializer=None)
    for garbage in (GARBAGE, b"\x0a\xff\xff\xff\xff\x0f"):  # the second: field 1 longer than the message
        assert rpc_error(raw, garbage, timeout=10) == (
            "INVALID_ARGUMENT", f"Could not parse the request ({len(garbage)} bytes) as a "
                                f"tensorflow.serving.{message_type}: Wire format was corrupt")
    assert_serving(client)


def tensor(dtype=types_pb2.DT_FLOAT, dims=(), **fields):
    """A TensorProto built field by field, as a careless or hostile client may send it."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    for name, value in fields.items():
        if isinstance(value, list):
            getattr(proto, name).extend(value)
        else:
            setattr(proto, name, value)
    return proto


def too_large(shape, size):
    return (f"tensor parsing error: input_1: shape [{','.join(str(d) for d in shape)}] would take {size} bytes, "
            f"more than the {CAP} a request tensor may take")


PARSING = "tensor parsing error: input_1"  # TF Serving's message when C++ Tensor::FromProto fails
FLOAT = types_pb2.DT_FLOAT
STRING = types_pb2.DT_STRING

BAD_TENSORS = [
    # Shapes no tensor can have: TF's TensorShape refuses them (TF Serving's exact message).
    ("negative dim", tensor(dims=(-5, 2), float_val=[1.0]), PARSING),
    ("dim -1", tensor(dims=(-1, 2), float_val=[1.0]), PARSING),
    ("unknown rank", tensor_pb2.TensorProto(dtype=FLOAT, tensor_shape={"unknown_rank": True}), PARSING),
    ("element count overflows int64", tensor(dims=(2**62, 2**62), float_val=[1.0]), PARSING),
    ("rank 70", tensor(dims=(1,) * 70, float_val=[1.0]), PARSING),
    ("no elements, dims numpy cannot hold", tensor(dims=(0, 2**62)), PARSING),
    # Absurd shapes: a few bytes asking for terabytes; refused before anything is allocated.
    ("dims of 2**40", tensor(dims=(2**40, 2), float_val=[1.0]), too_large((2**40, 2), 2**43)),
    # One value filling 2**30 floats: was 17 GB of RSS and no answer within a minute.
    ("2**30 floats from one value", tensor(dims=(2**29, 2), float_val=[1.0]), too_large((2**29, 2), 2**32)),
    ("one float over the cap", tensor(dims=(2**28 + 1,), float_val=[1.0]), too_large((2**28 + 1,), CAP + 4)),
    ("huge dims with tensor_content", tensor(dims=(2**31, 2**31), tensor_content=b"\0" * 16),
     too_large((2**31, 2**31), 2**64)),
    ("2**30 strings from one value", tensor(STRING, dims=(2**30,), string_val=[b"x"]),
     too_large((2**30,), 2**30 * 33)),
    ("1000 copies of a 5 MB string", tensor(STRING, dims=(1000,), string_val=[b"x" * 5_000_000]),
     too_large((1000,), 1000 * (5_000_000 + 32))),
    # tensor_content that does not match its shape.
    ("tensor_content one byte long", tensor(dims=(2, 2), tensor_content=b"\0" * 17), PARSING),
    ("tensor_content of 50 MB for 4 floats", tensor(dims=(2, 2), tensor_content=b"\0" * 50_000_000), PARSING),
    # Types no request tensor has.
    ("dtype 999", tensor(999, dims=(2, 2), float_val=[1.0]), PARSING),
    ("DT_INVALID", tensor(types_pb2.DT_INVALID, dims=(2, 2), float_val=[1.0]), PARSING),
    ("DT_RESOURCE", tensor(types_pb2.DT_RESOURCE, dims=(2, 2)), PARSING),
    ("DT_VARIANT", tensor(types_pb2.DT_VARIANT, dims=(2, 2)), PARSING),
    ("DT_FLOAT_REF", tensor(types_pb2.DT_FLOAT_REF, dims=(2, 2), float_val=[1.0]), PARSING),
    # Types that parse, fed to a float input: TF's FunctionCallFrame message.
    ("a 50 MB string for a float input", tensor(STRING, dims=(1,), string_val=[b"x" * 50_000_000]),
     "Expects arg[0] to be float but string is provided"),
    # A negative half_val: C++ keeps its low 16 bits; it parses, then is the wrong type.
    ("negative half_val", tensor(types_pb2.DT_HALF, dims=(1, 2), half_val=[-1]),
     "Expects arg[0] to be float but half is provided"),
]


@pytest.mark.parametrize("proto, message", [case[1:] for case in BAD_TENSORS], ids=[c[0] for c in BAD_TENSORS])
def test_bad_tensors_are_invalid_argument(client, bad_server, proto, message):
    # Too many, missing and misnamed inputs, and a short tensor_content: test_predict.py.
    peak = proc_status(bad_server.process.pid, "VmHWM")
    started = time.monotonic()
    assert rpc_error(client.predict, inputs={"input_1": proto}, timeout=20) == ("INVALID_ARGUMENT", message)
    assert time.monotonic() - started < 5
    # Refused without a spike: at most what the request's own bytes cost (the 50 MB ones: the message, parsed).
    assert proc_status(bad_server.process.pid, "VmHWM") - peak < 200 * 2**20 + 3 * proto.ByteSize()
    assert_serving(client)


def test_a_huge_string_into_a_string_input_is_answered_with_a_bounded_message(client):
    """50 MB that is not a tf.Example, fed to a classify signature through Predict: TF's error, cut at 1024."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf1"
    request.model_spec.signature_name = "classify_x_to_y"
    request.inputs["inputs"].CopyFrom(tensor(STRING, dims=(1,), string_val=[b"\x01" * 50_000_000]))
    code, message = rpc_error(client.predictions.Predict, request, timeout=30)
    assert code == "INVALID_ARGUMENT"
    assert message.startswith("Could not parse example input, value: ")
    assert len(message) <= 1024 + len("...TRUNCATED")
    assert_serving(client)


def classification(model, signature="classify_x_to_y"):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    return request


def regression(model, signature="regress_x_to_y"):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    return request


def multi_inference(model):
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add(method_name=REGRESS)
    task.model_spec.name, task.model_spec.signature_name = model, "regress_x_to_y"
    return request


def bytes_feature(input_proto):
    input_proto.example_list.examples.add().features.feature["x"].bytes_list.value.append(b"abc")


def int64_feature(input_proto):
    input_proto.example_list.examples.add().features.feature["x"].int64_list.value.append(3)


def two_floats(input_proto):
    input_proto.example_list.examples.add().features.feature["x"].float_list.value.extend([1.0, 2.0])


def no_float(input_proto):
    input_proto.example_list.examples.add().features.feature["x"].float_list.SetInParent()


def feature_of_no_kind(input_proto):
    input_proto.example_list.examples.add().features.feature["x"].SetInParent()


def context_of_the_wrong_type(input_proto):
    input_proto.example_list_with_context.context.features.feature["x"].bytes_list.value.append(b"a")
    input_proto.example_list_with_context.examples.add()


def context_and_no_example(input_proto):
    input_proto.example_list_with_context.context.features.feature["x"].float_list.value.append(1.0)


def empty_example_list(input_proto):
    input_proto.example_list.SetInParent()


def large_context_times_many_examples(input_proto):
    """A 1 MB context copied into each of 1100 examples: 1.1 GB to build from a 1 MB request."""
    target = input_proto.example_list_with_context
    target.context.features.feature["pad"].bytes_list.value.append(b"x" * 1_000_000)
    for _ in range(1100):
        target.examples.add().features.feature["x"].float_list.value.append(1.0)


def context_times_examples(input_proto):
    """The bytes of the serialized examples, the context copied into each."""
    with_context = input_proto.example_list_with_context
    return sum(with_context.context.ByteSize() + e.ByteSize() for e in with_context.examples)


MALFORMED_INPUTS = [
    (bytes_feature, "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: string but expected "
                    "type: float"),
    (int64_feature, "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but expected "
                    "type: float"),
    (two_floats, "Name: <unknown>, Key: x, Index: 0.  Number of float values != expected.  Values size: 2 but "
                 "output shape: [1]"),
    (no_float, "Name: <unknown>, Key: x, Index: 0.  Number of float values != expected.  Values size: 0 but "
               "output shape: [1]"),
    (feature_of_no_kind, "Name: <unknown>, Feature: x (data type: float) is required but could not be found."),
    (context_of_the_wrong_type, "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: string "
                                "but expected type: float"),
    (context_and_no_example, "Input is empty."),
    (empty_example_list, "Input is empty."),
    (large_context_times_many_examples, lambda input_proto: (
        f"Input is too large: its 1100 serialized examples would take {context_times_examples(input_proto)} bytes, "
        f"more than the {CAP} a request tensor may take")),
]


@pytest.mark.parametrize("model", ["tf1", "tf2"])
@pytest.mark.parametrize("fill, message", MALFORMED_INPUTS, ids=[m[0].__name__ for m in MALFORMED_INPUTS])
def test_malformed_examples_are_invalid_argument(client, model, fill, message):
    # Beyond test_inference.py's empty input and missing feature: wrong types and sizes, contexts, a huge batch.
    for build, call in ((classification, client.predictions.Classify), (regression, client.predictions.Regress),
                        (multi_inference, client.predictions.MultiInference)):
        request = build(model)
        fill(request.input)
        expected = message(request.input) if callable(message) else message
        code, got = rpc_error(call, request, timeout=30)
        assert (code, got.split("\n\t [[")[0]) == ("INVALID_ARGUMENT", expected), got
    assert_serving(client)


# -- a model that fails to load --------------------------------------------------------------------


def break_version(path):
    """A version folder whose saved_model.pb does not parse."""
    os.makedirs(path)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"not a saved model")


def status_of(client, model):
    """{version: (state name, error_code, error_message)} from GetModelStatus."""
    from tensorflow_serving.apis import get_model_status_pb2
    names = get_model_status_pb2.ModelVersionStatus.State
    return {s.version: (names.Name(s.state), s.status.error_code, s.status.error_message)
            for s in client.status(model).model_version_status}


@pytest.fixture
def models_dir(toy_models, tmp_path):
    """Toy versions 1 and 2 and Toy_double, copied: the tests add and break versions."""
    shutil.copytree(os.path.join(toy_models, "Toy"), tmp_path / "Toy", ignore=shutil.ignore_patterns("3"))
    shutil.copytree(os.path.join(toy_models, "Toy_double"), tmp_path / "Toy_double")
    return tmp_path


def test_a_broken_version_at_start_up_leaves_the_good_ones_serving(models_dir, tmp_path):
    # A model with no loadable version at all stops start-up, as in TF Serving (test_cli.py); one broken
    # version of a model that has another is reported and the rest serves.
    shutil.copytree(models_dir / "Toy" / "1", models_dir / "Mixed" / "1")
    break_version(models_dir / "Mixed" / "2")
    config = tmp_path / "models.config"
    from google.protobuf import text_format
    config.write_text(text_format.MessageToString(
        model_config(("Toy", models_dir / "Toy"), ("Mixed", models_dir / "Mixed", "all"))))
    with ServerProcess(f"--model_config_file={config}", "--max_num_load_retries=0") as server:
        client = Client(server.target)
        assert_serving(client)
        assert client.predict("Mixed").model_spec.version.value == 1
        states = status_of(client, "Mixed")
        assert states[1] == ("AVAILABLE", 0, "")
        state, code, message = states[2]
        assert state == "END" and code != 0 and message, states
        server.wait_for_log(r"Encountered an error for servable version \{name: Mixed version: 2\}")
        client.close()


def test_a_saved_model_that_does_not_load_is_reported_in_tensorflows_words(models_dir):
    # TensorFlow's C++ loader's codes and messages (cc/saved_model/reader.cc, core/platform/env.cc), where Python's
    # loader raised RuntimeError, OSError "Cannot parse file b'...'" and ValueError, reported as UNKNOWN.
    bad = models_dir / "Bad"
    os.makedirs(bad / "1")
    (bad / "1" / "saved_model.pb").write_bytes(b"")  # parses as an empty SavedModel: no MetaGraphDef
    break_version(bad / "2")
    os.makedirs(bad / "3")
    shutil.copy(models_dir / "Toy" / "1" / "saved_model.pb", bad / "3")  # and no variables/
    with ServerProcess("--model_name=Toy", f"--model_base_path={models_dir}/Toy", "--max_num_load_retries=0") as server:
        client = Client(server.target)
        assert rpc_error(client.reload, model_config(("Toy", models_dir / "Toy"), ("Bad", bad, "all")))[0] == "UNKNOWN"
        assert status_of(client, "Bad") == {
            3: ("END", 5, f"The SavedModel's variables could not be restored: {bad}/3/variables/variables.index was "
                          "not found"),
            2: ("END", 15, f"Can't parse {bad}/2/saved_model.pb as binary proto"),
            1: ("END", 5, "Could not find meta graph def matching supplied tags: { serve }. To inspect available "
                          "tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`"),
        }
        assert_serving(client)
        client.close()


def test_a_broken_model_in_a_reload_leaves_the_good_ones_serving(models_dir):
    break_version(models_dir / "Broken" / "1")
    with ServerProcess("--model_name=Toy", f"--model_base_path={models_dir}/Toy", "--max_num_load_retries=0") as server:
        client = Client(server.target)
        code, message = rpc_error(client.reload, model_config(
            ("Toy", models_dir / "Toy"), ("Toy_double", models_dir / "Toy_double"), ("Broken", models_dir / "Broken")))
        assert code == "UNKNOWN"
        assert message.startswith("1 model(s) did not become available: {{name: Broken version: 1 due to error: ")
        state, error_code, error = status_of(client, "Broken")[1]
        assert state == "END" and error_code != 0 and error and error in message
        assert_serving(client)
        # The failed reload changed nothing (Toy_double, which did load, is unloaded again); a good one still works.
        assert rpc_error(client.predict, "Toy_double")[0] == "NOT_FOUND"
        client.reload(model_config(("Toy", models_dir / "Toy"), ("Toy_double", models_dir / "Toy_double")))
        assert client.predict("Toy_double").model_spec.version.value == 1
        assert_serving(client)
        client.close()


# -- SIGTERM and SIGINT with a request in flight -----------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_request_in_flight_finish_refuses_new_ones_and_exits_0(slow_model, tmp_path, signum):
    server = ServerProcess("--model_name=Slow", f"--model_base_path={slow_model}")
    with server:
        client = Client(server.target)
        assert list(client.predictions.Predict(slow_request(0, tmp_path / "fast"), timeout=30)
                    .outputs["y"].float_val) == [2.0, 4.0]
        marker = tmp_path / "in-flight"
        started = time.monotonic()
        in_flight = client.predictions.Predict.future(slow_request(1_000_000, marker), timeout=30)  # ~2 s
        wait_until(marker.exists, timeout=20, what="the slow request to be running")
        server.process.send_signal(signum)
        wait_until(lambda: connection_refused(server.port), timeout=5, what="the port to refuse connections")
        assert not in_flight.done()  # refused while the request still runs
        with grpc.insecure_channel(server.target) as channel:  # a new client
            from tensorflow_serving.apis import prediction_service_pb2_grpc
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert rpc_error(stub.Predict, slow_request(0, tmp_path / "late"), timeout=5)[0] == "UNAVAILABLE"
        assert rpc_error(client.predict, "Slow", timeout=5)[0] == "UNAVAILABLE"  # the old channel too
        response = in_flight.result(timeout=30)
        assert list(response.outputs["y"].float_val) == [2.0, 4.0]
        assert time.monotonic() - started >= 1.5  # it did run its full course
        assert server.process.wait(timeout=30) == 0
        log = server.log()
        client.close()
    received = log.index(f"Received {signal.Signals(signum).name}, shutting down.")
    unloaded = log.index("Done unloading servable version {name: Slow version: 1}")
    assert received < unloaded < log.index("Server stopped.")
    assert not os.path.exists(tmp_path / "late")  # the refused request never ran


def test_signals_repeated_through_the_whole_shutdown_still_end_it_cleanly(slow_model):
    """An impatient operator or a process manager that signals again and again: every signal after the
    first changes nothing, up to the last moment. Before, one that came while the interpreter tore down
    (after "Server stopped.") found Python's handler gone and killed the server: exit -15, not 0."""
    server = ServerProcess("--model_name=Slow", f"--model_base_path={slow_model}")
    with server:
        process = server.process
        signals, deadline = 0, time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):  # it may end between poll() and the signal
                process.send_signal((signal.SIGTERM, signal.SIGINT)[signals % 2])
                signals += 1
            time.sleep(0.005)
        assert process.wait(timeout=30) == 0
        log = server.log()
    assert signals > 2 and "Server stopped." in log


@pytest.mark.parametrize("flags", [(), ("--enable_batching",)], ids=["sync", "batching"])
def test_a_grpc_deadline_frees_the_thread_of_a_run_that_outlives_it(slow_model, tmp_path, flags):
    """Two gRPC threads; six 10 s runs whose clients wait 1 s, then three tiny ones that wait 8 s. The call's
    deadline bounds its session run (TF Serving's RunOptions timeout), so TensorFlow cancels each slow run
    soon after its client gave up and the tiny ones are served; before, each slow run held its thread for
    10 s after its client had gone, and the tiny ones timed out behind them. With --enable_batching these
    scalar inputs do not batch: the event loop's Predict runs them on the thread pool, bounded alike."""
    server = ServerProcess("--model_name=Slow", f"--model_base_path={slow_model}", "--grpc_max_threads=2", *flags)
    with server:
        client = Client(server.target)
        assert list(client.predictions.Predict(slow_request(0, tmp_path / "warm"), timeout=30)
                    .outputs["y"].float_val) == [2.0, 4.0]  # the first run's one-off costs are paid
        markers = [tmp_path / f"slow{i}" for i in range(6)]
        slow = [client.predictions.Predict.future(slow_request(5_000_000, marker), timeout=1) for marker in markers]
        # Any of them may reach a thread first; the others wait, and may expire before they run.
        wait_until(lambda: any(marker.exists() for marker in markers), what="a slow run to start")
        tiny = [client.predictions.Predict.future(slow_request(0, tmp_path / f"tiny{i}"), timeout=8)
                for i in range(3)]
        for future in slow:
            assert future.exception(timeout=30).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for future in tiny:
            assert list(future.result(timeout=30).outputs["y"].float_val) == [2.0, 4.0]
        client.close()


# -- soak and reloads under load -------------------------------------------------------------------


def bench(target, *args, timeout=120):
    """Run python/grpcBench.py --format json; (exit code, report, stderr)."""
    environment = {k: v for k, v in os.environ.items() if k != "TFS_SERVER"}
    result = subprocess.run([sys.executable, "grpcBench.py", "-s", target, "--format", "json", *args],
                            cwd=PYTHON_DIR, env=environment, capture_output=True, text=True, timeout=timeout)
    return result.returncode, json.loads(result.stdout), result.stderr


@contextlib.contextmanager
def half_plus_two_unlimited(env=None):
    """(a half_plus_two server, its Predict on a channel with no message size limit)."""
    model = os.path.join(TESTDATA, "saved_model_half_plus_two_cpu")
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with ServerProcess("--model_name=half_plus_two", f"--model_base_path={model}", env=env) as server, \
            grpc.insecure_channel(server.target, options=unlimited) as channel:
        yield server, channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                          request_serializer=predict_pb2.PredictRequest.SerializeToString,
                                          response_deserializer=predict_pb2.PredictResponse.FromString)


def test_a_large_predict_with_onednn_gives_its_memory_back():
    """With oneDNN on (as TensorFlow turns it on by itself on CPUs like this one), a 128 MB Predict's memory is
    given back once it is answered: oneDNN's own allocator would pool it for good (main.py gives oneDNN the
    system allocator). Figures: benchmarks/bench_memory.py."""
    with half_plus_two_unlimited(env={"TF_ENABLE_ONEDNN_OPTS": "1"}) as (server, predict):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(2**20, np.float32)))
        predict(request, timeout=60)  # the first run's own allocations are not the large request's
        idle = proc_status(server.process.pid, "VmRSS")
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full(32 * 2**20, 3, np.float32)))  # 128 MB
        response = predict(request, timeout=120)
        y = np.asarray(response.outputs["y"].float_val, np.float32)  # the server's default answer: float_val
        assert y.size == 32 * 2**20 and y[0] == y[-1] == 3.5
        del request, response, y
        rss = lambda: proc_status(server.process.pid, "VmRSS")  # noqa: E731
        wait_until(lambda: rss() < idle + 64 * 2**20, timeout=20,
                   what=f"the server's RSS back within 64 MB of {idle / 2**20:.0f} MB (it is {rss() / 2**20:.0f} MB)")


def test_mid_size_predicts_leave_no_memory_behind():
    """A 16 MB and a 64 MB Predict leave the server no larger than it was once the trim has run: its threads
    share glibc's main arena (memory.use_one_arena), all of which malloc_trim reaches. With an arena a
    thread, what they freed at their arenas' tops stayed: 92 MB over idle here. Figures:
    benchmarks/bench_memory.py."""
    with half_plus_two_unlimited() as (server, predict):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(2**16, np.float32)))
        predict(request, timeout=60)  # the first run's own allocations are not the large requests'
        idle = proc_status(server.process.pid, "VmRSS")
        for megabytes in (16, 64):
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.full(megabytes * 2**18, 3, np.float32)))
            y = np.asarray(predict(request, timeout=120).outputs["y"].float_val, np.float32)
            assert y.size == megabytes * 2**18 and y[0] == y[-1] == 3.5
        del request, y
        rss = lambda: proc_status(server.process.pid, "VmRSS")  # noqa: E731
        wait_until(lambda: rss() < idle + 12 * 2**20, timeout=15,
                   what=f"the server's RSS back within 12 MB of {idle / 2**20:.0f} MB (it is {rss() / 2**20:.0f} MB)")


def test_soak_20000_predicts_at_concurrency_32_no_error_and_flat_memory(toy_models):
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models") as server:
        code, warm, err = bench(server.target, "-n", "3000", "-c", "32")
        assert (code, warm["ok"], warm["errors"]) == (0, 3000, {}), err
        before = proc_status(server.process.pid, "VmRSS")
        code, report, err = bench(server.target, "-n", "20000", "-c", "32")
        after = proc_status(server.process.pid, "VmRSS")
        figures = (f"20000 requests at {report['throughput_rps']:.0f} req/s; server RSS {before / 2**20:.1f} MB "
                   f"after warm-up, {after / 2**20:.1f} MB at the end")
        print(figures)
        assert (code, report["requests"], report["ok"], report["errors"]) == (0, 20000, 20000, {}), err
        assert after - before <= max(0.10 * before, 30 * 2**20), figures
        assert_serving(Client(server.target))


def test_new_versions_and_reloads_under_load_fail_no_request(models_dir):
    with ServerProcess("--model_name=Toy", f"--model_base_path={models_dir}/Toy", "--file_system_poll_wait_seconds=1",
                       "--max_num_load_retries=0") as server:
        client = Client(server.target)
        environment = {k: v for k, v in os.environ.items() if k != "TFS_SERVER"}
        load = subprocess.Popen([sys.executable, "grpcBench.py", "-s", server.target, "--duration", "8",
                                 "--concurrency", "8", "--format", "json"], cwd=PYTHON_DIR, env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: client_connected(server.port) or load.poll() is not None, timeout=20, what="the bench")
            assert load.poll() is None, load.communicate()
            # A new version folder, copied aside then renamed in (a poll never sees it half-written).
            shutil.copytree(models_dir / "Toy" / "2", models_dir / "Toy" / "incoming")
            os.rename(models_dir / "Toy" / "incoming", models_dir / "Toy" / "5")
            wait_until(lambda: client.states("Toy").get(5) == "AVAILABLE" and client.states("Toy").get(2) == "END",
                       timeout=20, what="version 5 to replace 2")
            # Reloads switching versions: back to 1, then 1 and 2, then the latest again.
            for policy, available in (([1], {1}), ([1, 2], {1, 2}), (1, {5})):
                client.reload(model_config(("Toy", models_dir / "Toy", policy)))
                assert {v for v, s in client.states("Toy").items() if s == "AVAILABLE"} == available
            # The new version removed again: 2 serves.
            shutil.rmtree(models_dir / "Toy" / "5")
            wait_until(lambda: client.states("Toy").get(2) == "AVAILABLE" and client.states("Toy").get(5) == "END",
                       timeout=20, what="version 5 to go")
            assert load.poll() is None  # all of it under load
            out, err = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        report = json.loads(out)
        assert (load.returncode, report["errors"]) == (0, {}), (report, err)
        assert report["ok"] == report["requests"] > 100
        assert client.predict().model_spec.version.value == 2
        client.close()
