"""Predict, GetModelMetadata and GetModelStatus against the toy models, as the guide runs them."""

import threading

import numpy as np
import pytest
import tensorflow as tf
from testing.server_client import Client, rpc_error, values
from tensorflow_serving.apis import get_model_metadata_pb2

# The guide's GetModelMetadata answer for Toy (version 2), byte for byte.
GUIDE_SIGNATURE_DEF_MAP = (
    b"\n\253\001\n\017serving_default\022\227\001\n;\n\007input_1\0220\n\031serving_default_input_1:0\020\001"
    b"\032\021\022\013\010\377\377\377\377\377\377\377\377\377\001\022\002\010\002\022<\n\010output_1\0220\n"
    b"\031StatefulPartitionedCall:0\020\001\032\021\022\013\010\377\377\377\377\377\377\377\377\377\001\022\002"
    b"\010\001\032\032tensorflow/serving/predict\n>\n\025__saved_model_init_op\022%\022#\n\025__saved_model_init_op"
    b"\022\n\n\004NoOp\032\002\030\001")


@pytest.fixture(scope="module")
def client(toy_server):
    with Client(toy_server.target) as c:
        yield c


@pytest.mark.parametrize("kwargs, version, expected", [
    ({}, 2, [0.9990350008010864, 0.9997349381446838]),
    ({"version": 1}, 1, [10.805429458618164, 14.010123252868652]),
    ({"version": 2}, 2, [0.9990350008010864, 0.9997349381446838]),
    ({"label": "stable"}, 1, [10.805429458618164, 14.010123252868652]),
    ({"label": "canary"}, 2, [0.9990350008010864, 0.9997349381446838]),
    ({"model": "Toy_double"}, 1, [6.803016662597656, 8.262093544006348]),
])
def test_predict_gives_the_guides_numbers(client, kwargs, version, expected):
    response = client.predict(**kwargs)
    assert response.model_spec.name == kwargs.get("model", "Toy")
    assert response.model_spec.version.value == version
    assert response.model_spec.signature_name == "serving_default"
    assert not response.model_spec.version_label
    output = response.outputs["output_1"]
    assert list(output.float_val) == expected
    assert [d.size for d in output.tensor_shape.dim] == [2, 1]
    assert output.dtype == tf.float32.as_datatype_enum and not output.tensor_content


def test_signature_name_defaults_to_serving_default(client):
    response = client.predict(signature="")
    assert response.model_spec.signature_name == "serving_default"


def test_tensor_content_input_and_shape_not_checked(client):
    # One row, and a tensor sent as packed bytes (what tf.make_tensor_proto sends).
    proto = tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32))
    assert proto.tensor_content
    assert values(client.predict(version=1, inputs={"input_1": proto}), "output_1") == [10.805429458618164]


def test_short_typed_field_repeats_the_last_value(client):
    proto = tf.make_tensor_proto(np.zeros((2, 2), np.float32))
    proto.ClearField("tensor_content")
    proto.float_val.extend([1.0, 2.0])  # C++ FromProto fills the rest with the last value
    assert values(client.predict(version=1, inputs={"input_1": proto}), "output_1") == pytest.approx(
        [1.5377980470657349 + 2 * 3.204693078994751 + 2.858245849609375,
         2 * 1.5377980470657349 + 2 * 3.204693078994751 + 2.858245849609375], rel=1e-6)


def test_output_filter(client):
    assert list(client.predict(output_filter=["output_1"]).outputs) == ["output_1"]


@pytest.mark.parametrize("kwargs, code, message", [
    ({"model": "foo"}, "NOT_FOUND", "Servable not found for request: Latest(foo)"),
    ({"version": 7}, "NOT_FOUND", "Servable not found for request: Specific(Toy, 7)"),
    ({"version": 3}, "NOT_FOUND", "Servable not found for request: Specific(Toy, 3)"),
    ({"label": "foo"}, "INVALID_ARGUMENT", "Unrecognized servable version label: foo"),
    ({"model": "foo", "label": "stable"}, "INVALID_ARGUMENT", "Unrecognized servable version label: stable"),
    ({"model": ""}, "INVALID_ARGUMENT", "ModelSpec has no name specified."),
    ({"signature": "foo"}, "FAILED_PRECONDITION", 'Serving signature key "foo" not found.'),
    ({"inputs": {}}, "INVALID_ARGUMENT",
     "input size does not match signature: 0!=1 len({}) != len({input_1}). Sent extra: {}. "
     "Missing but required: {input_1}."),
    ({"inputs": {"input_1": np.zeros((1, 2), np.float32), "x": np.zeros(1, np.float32)}}, "INVALID_ARGUMENT",
     "input size does not match signature: 2!=1 len({input_1,x}) != len({input_1}). Sent extra: {x}. "
     "Missing but required: {}."),
    ({"inputs": {"x": np.zeros((1, 2), np.float32)}}, "INVALID_ARGUMENT",
     "Signature input alias: input_1(feed name: serving_default_input_1:0) not found in request and no "
     "default value provided. Inputs expected to be in the request {x}, or default input alias set: "),
    ({"inputs": {"input_1": np.zeros((1, 2), np.float64)}}, "INVALID_ARGUMENT",
     "Expects arg[0] to be float but double is provided"),
    ({"inputs": {"input_1": np.array([["a", "b"]])}}, "INVALID_ARGUMENT",
     "Expects arg[0] to be float but string is provided"),
    ({"output_filter": ["foo"]}, "INVALID_ARGUMENT",
     "output tensor alias not found in signature: foo Outputs expected to be in the set {output_1}."),
    ({"output_filter": ["output_1", "output_1"]}, "INVALID_ARGUMENT",
     "duplicate output tensor alias: output_1"),
])
def test_predict_errors(client, kwargs, code, message):
    assert rpc_error(client.predict, **kwargs) == (code, message)


def test_bad_tensor_is_a_parsing_error(client):
    proto = tf.make_tensor_proto(np.zeros((2, 2), np.float32))
    proto.tensor_content = proto.tensor_content[:-1]
    assert rpc_error(client.predict, inputs={"input_1": proto}) == (
        "INVALID_ARGUMENT", "tensor parsing error: input_1")


def test_wrong_rank_is_tensorflows_error(client):
    code, message = rpc_error(client.predict, inputs={"input_1": np.zeros((2, 3), np.float32)})
    assert code == "INVALID_ARGUMENT" and "Matrix size-incompatible" in message


def test_missing_model_spec(client):
    from tensorflow_serving.apis import predict_pb2
    assert rpc_error(client.predictions.Predict, predict_pb2.PredictRequest()) == (
        "INVALID_ARGUMENT", "Missing ModelSpec")


def test_concurrent_requests(client):
    errors, results = [], []

    def work(version):
        try:
            for _ in range(50):
                results.append((version, values(client.predict(version=version), "output_1")[0]))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(1 + i % 2,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 400
    assert {v for version, v in results if version == 1} == {10.805429458618164}


def test_metadata_is_the_guides(client):
    response = client.metadata()
    assert response.model_spec.name == "Toy"
    assert response.model_spec.version.value == 2
    assert not response.model_spec.signature_name
    assert list(response.metadata) == ["signature_def"]
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert packed.value == GUIDE_SIGNATURE_DEF_MAP


def test_metadata_of_a_version_and_label(client):
    for kwargs in ({"version": 1}, {"label": "stable"}):
        response = client.metadata(**kwargs)
        assert response.model_spec.version.value == 1
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        assert set(signatures.signature_def) == {"serving_default", "__saved_model_init_op"}


@pytest.mark.parametrize("kwargs, code, message", [
    ({"fields": ()}, "INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field"),
    ({"fields": ("foo",)}, "INVALID_ARGUMENT", "Metadata field foo is not supported"),
    ({"model": "foo"}, "NOT_FOUND", "Servable not found for request: Latest(foo)"),
    ({"version": 9}, "NOT_FOUND", "Servable not found for request: Specific(Toy, 9)"),
    ({"label": "bar"}, "INVALID_ARGUMENT", "Unrecognized servable version label: bar"),
])
def test_metadata_errors(client, kwargs, code, message):
    assert rpc_error(client.metadata, **kwargs) == (code, message)


def test_status_of_one_version_is_the_guides(client):
    assert str(client.status("Toy_double", version=1)) == (
        "model_version_status {\n  version: 1\n  state: AVAILABLE\n  status {\n  }\n}\n")


def test_status_of_all_versions_highest_first(client):
    assert list(client.states("Toy").items()) == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    # A label is ignored by GetModelStatus, as in TF Serving.
    assert len(client.status("Toy", label="stable").model_version_status) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "foo"}, "Could not find any versions of model foo"),
    ({"model": "Toy", "version": 7}, "Could not find version 7 of model Toy"),
])
def test_status_errors(client, kwargs, message):
    assert rpc_error(client.status, **kwargs) == ("NOT_FOUND", message)


def test_classify_on_a_predict_signature_is_refused(client):
    from tensorflow_serving.apis import classification_pb2
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "Toy"
    request.input.example_list.examples.add()
    code, message = rpc_error(client.predictions.Classify, request)
    assert (code, message.split(": ")[0]) == ("INVALID_ARGUMENT", "No classification inputs found in SignatureDef")
