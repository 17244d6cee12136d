"""wire.py: large Predict tensors read from and written to the wire without protobuf's copies.

In-process against protobuf itself (every message must parse to what protobuf parses, or fail as it
fails), then a real server with large requests, the request log, and bytes that do not parse.
"""

import os
import random
import threading

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from testing.server_client import Client, model_config, rpc_error, tensor_proto, with_request_log
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from server.servables import tensors
from server.model_servers.grpc import wire
from server.servables.predict_io import Prediction
from testing.paths import TESTDATA
from testing.server import ServerProcess, wait_until

from tfsclient import tfrecord  # the project's TFRecord framing (the scripts' module)

HALF_PLUS_TWO = os.path.join(TESTDATA, "saved_model_half_plus_two_cpu")
BIG = 2**19  # floats: 2 MiB, past wire.LARGE


def request(x, content=True, name="h", **extra):
    message = predict_pb2.PredictRequest()
    message.model_spec.name = name
    message.inputs["x"].CopyFrom(tensor_proto(x, content))
    for alias, value in extra.items():
        message.inputs[alias].CopyFrom(tensor_proto(value, content))
    return message


def parsed_alike(data):
    """wire's parse and protobuf's of `data`: the same message, or the same failure."""
    try:
        expected = predict_pb2.PredictRequest.FromString(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            wire.parse_predict_request(data)
        return None
    got = wire.parse_predict_request(data)
    got.keep = True
    got = got.full_message()
    assert got == expected
    return got


# -- in process ---------------------------------------------------------------------------------

def test_a_large_tensor_content_stays_in_the_received_bytes():
    x = np.arange(BIG, dtype=np.float32).reshape(2, -1)
    data = request(x, small=np.ones(3, np.float32)).SerializeToString()
    view = wire.parse_predict_request(data)
    assert view.held_aside
    assert view.model_spec.name == "h" and set(view.inputs) == {"x", "small"}
    assert set(view.contents) == {"x"}  # a small tensor_content stays in the message
    assert view.contents["x"].obj is data  # no copy: a view of what gRPC received
    assert view.inputs["x"].tensor_content == b""
    decoded = tensors.to_ndarray(view.inputs["x"], view.take("x"))
    assert np.array_equal(decoded, x)
    assert view.contents == {}  # given up once decoded: the received bytes can go
    assert view.full_message() is None  # and the request can no longer be logged whole


def test_keep_holds_the_contents_for_the_request_log():
    data = request(np.ones(BIG, np.float32)).SerializeToString()
    view = wire.parse_predict_request(data)
    view.keep = True
    assert view.take("x") is view.contents["x"]
    assert view.full_message() == predict_pb2.PredictRequest.FromString(data)


def test_small_and_typed_field_requests_are_protobufs_own():
    small = request(np.ones(4, np.float32)).SerializeToString()
    assert not wire.parse_predict_request(small).held_aside
    typed = request(np.ones(BIG, np.float32), content=False).SerializeToString()  # float_val: nothing to keep
    assert not wire.parse_predict_request(typed).held_aside
    assert type(parsed_alike(typed)) is predict_pb2.PredictRequest


def test_irregular_messages_parse_as_protobuf_parses_them():
    big = request(np.ones(BIG, np.float32))
    data = big.SerializeToString()
    later = request(np.zeros(BIG, np.float32)).SerializeToString()
    second_content = tensor_pb2.TensorProto(tensor_content=b"\1" * 8192).SerializeToString()
    entry = b"\x0a\x01x" + b"\x12" + tensors.varint(len(second_content)) + second_content
    cases = {
        "the same alias twice (the later wins)": data + later,
        "two tensor_content in one tensor (the last wins)": data + b"\x12" + tensors.varint(len(entry)) + entry,
        "an unknown field": data + b"\xf8\x07\x01",
        "an unknown field in the tensor": b"\x12" + tensors.varint(len(entry) + 2) + entry + b"\x18\x01",
        "value before key": b"\x12" + tensors.varint(len(entry)) + entry[3:] + entry[:3],
        "an entry with no key": b"\x12" + tensors.varint(len(entry) - 3) + entry[3:],
        "output_filter after the inputs": data + b"\x1a\x01y",
    }
    for what, case in cases.items():
        assert parsed_alike(case) is not None, what


def test_a_tensor_of_many_values_is_left_to_protobuf_at_once(monkeypatch):
    """A large string tensor is 300k string_val fields: the scan gives up after a few, not after all."""
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "h"
    message.inputs["x"].CopyFrom(tensor_proto(np.array([b"abcd"] * 300_000, dtype=object)))
    data = message.SerializeToString()
    read = []
    original = wire._read_varint
    monkeypatch.setattr(wire, "_read_varint", lambda *args: read.append(1) or original(*args))
    assert parsed_alike(data) == message
    assert len(read) < 100, len(read)


@pytest.mark.parametrize("cut", [1, 7, 100, 2**20])
def test_truncated_bytes_fail_as_protobuf_fails(cut):
    data = request(np.ones(BIG, np.float32)).SerializeToString()
    with pytest.raises(DecodeError):
        wire.parse_predict_request(data[:-cut])


def test_mutated_messages_parse_as_protobuf_parses_them(monkeypatch):
    monkeypatch.setattr(wire, "LARGE", 64)  # the fast path for small messages: many cases, quickly
    monkeypatch.setattr(wire, "_CONTENT_MIN", 8)
    rng = random.Random(7)
    base = request(np.arange(40, dtype=np.float32), y=np.ones(6, np.float64)).SerializeToString()
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        parsed_alike(bytes(data))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_, np.complex64, np.complex128])
@pytest.mark.parametrize("as_tensor_content", [False, True])
def test_deferred_outputs_serialize_as_protobuf_would(dtype, as_tensor_content):
    columns = wire.LARGE // np.dtype(dtype).itemsize // 3 + 1
    array = (np.random.default_rng(1).random((3, columns)) * 4).astype(dtype)
    assert wire.defers(array, as_tensor_content)
    message = predict_pb2.PredictResponse()
    message.model_spec.name = "h"
    message.model_spec.version.value = 7
    prediction = Prediction(message, [("small", np.arange(3, dtype=np.int64)), ("big", array)], as_tensor_content)
    assert wire.has_large_output(prediction)
    expected = prediction.full_message()
    data = wire.serialize_prediction(prediction)
    assert predict_pb2.PredictResponse.FromString(data) == expected
    assert prediction.outputs == ()  # the arrays are let go before gRPC copies the answer
    back = tensors.to_ndarray(predict_pb2.PredictResponse.FromString(data).outputs["big"])
    assert np.array_equal(back, array)


def test_only_large_outputs_with_raw_wire_forms_are_deferred():
    assert not wire.defers(np.ones(BIG, np.float32)[:10], False)  # small
    assert not wire.defers(np.ones(BIG, np.int32), False)  # int_val: varints, written by protobuf
    assert wire.defers(np.ones(BIG, np.int32), True)  # tensor_content: its bytes
    assert not wire.defers(np.array([b"a" * 2**21], dtype=object), True)  # strings


# -- a real server -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = tmp_path_factory.mktemp("wire") / "models.config"
    config.write_text(f"model_config_list {{ config {{ name: 'h' base_path: '{HALF_PLUS_TWO}' "
                      "model_platform: 'tensorflow' } }\n")
    with ServerProcess(f"--model_config_file={config}") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with Client(server.target) as c:
        yield c


@pytest.mark.parametrize("content", [True, False])
def test_a_large_predict_answers_every_value(client, content):
    x = np.random.default_rng(2).random(3 * BIG // 2).astype(np.float32)  # 3 MiB (a client takes 4 MiB)
    response = client.predictions.Predict(request(x, content), timeout=60)
    y = tensors.to_ndarray(response.outputs["y"])
    assert response.outputs["y"].float_val and not response.outputs["y"].tensor_content  # TF Serving's AsProtoField
    assert np.array_equal(y, x * np.float32(0.5) + np.float32(2))
    assert response.model_spec.name == "h" and response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_large_predicts_in_parallel_each_get_their_own_values(client):
    errors = []

    def call(seed):
        x = np.full(BIG, seed, np.float32)
        y = tensors.to_ndarray(client.predictions.Predict(request(x), timeout=60).outputs["y"])
        if not np.array_equal(y, x * 0.5 + 2):
            errors.append(seed)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_large_tensor_content_of_the_wrong_size_is_refused_as_before(client):
    message = request(np.ones(BIG, np.float32))
    message.inputs["x"].tensor_content = message.inputs["x"].tensor_content[:-4]
    assert rpc_error(client.predictions.Predict, message, timeout=60) == (
        "INVALID_ARGUMENT", "tensor parsing error: x")


def test_large_bytes_that_do_not_parse_are_refused_and_the_server_goes_on(server, client):
    data = request(np.ones(BIG, np.float32)).SerializeToString()[:-5]
    raw = client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as e:
        raw(data, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(
        f"Could not parse the request ({len(data)} bytes) as a tensorflow.serving.PredictRequest")
    assert client.predictions.Predict(request(np.ones(3, np.float32)), timeout=30).outputs["y"].float_val


def test_a_logged_large_request_is_logged_whole(client, tmp_path):
    client.reload(with_request_log(model_config(("h", HALF_PLUS_TWO)), tmp_path / "log", 1.0))
    try:
        x = np.arange(BIG, dtype=np.float32)
        client.predictions.Predict(request(x), timeout=60)
        path = tmp_path / "log.tfrecord"
        wait_until(lambda: path.exists() and path.stat().st_size > 2 * x.nbytes, timeout=30)
        (_, data), = list(tfrecord.read(str(path)))
        logged = prediction_log_pb2.PredictionLog.FromString(data).predict_log
        assert np.array_equal(tensors.to_ndarray(logged.request.inputs["x"]), x)
        assert logged.request.inputs["x"].dtype == types_pb2.DT_FLOAT
        assert np.array_equal(tensors.to_ndarray(logged.response.outputs["y"]), x * 0.5 + 2)
    finally:
        client.reload(model_config(("h", HALF_PLUS_TWO)))
