"""TF Serving's own test models, TF1 and TF2 exports that nobody here made."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from testing.server_client import Client, rpc_error, values
from tensorflow_serving.apis import get_model_metadata_pb2

from testing.paths import TESTDATA
from testing.server import ServerProcess

MODELS = {
    "half_plus_two": "saved_model_half_plus_two_cpu",
    "half_plus_two_tf2": "saved_model_half_plus_two_tf2_cpu",
    "two_versions": "saved_model_half_plus_two_2_versions",
    "half_plus_three": "saved_model_half_plus_three",
    "counter": "saved_model_counter",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "testdata.config"
    entries = "".join(f"config {{ name: '{name}' base_path: '{TESTDATA}/{folder}' model_platform: 'tensorflow' }}\n"
                      for name, folder in MODELS.items())
    config.write_text(f"model_config_list {{\n{entries}}}\n")
    with ServerProcess(f"--model_config_file={config}") as server:
        with Client(server.target) as c:
            yield c


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2", "two_versions"])
def test_half_plus_two(client, model):
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    response = client.predict(model, inputs={"x": x})
    assert values(response, "y") == [2.5, 3.0, 4.5]
    assert response.model_spec.version.value == (124 if model == "two_versions" else 123)


def test_shape_is_not_checked_against_the_signature(client):
    # TF Serving's own test feeds shape [1] to the [-1, 1] input and gets y = 3.0.
    response = client.predict("half_plus_two", inputs={"x": np.array([2.0], np.float32)})
    assert values(response, "y") == [3.0]
    assert [d.size for d in response.outputs["y"].tensor_shape.dim] == [1]


def test_half_plus_three_and_versions(client):
    assert values(client.predict("half_plus_three", inputs={"x": np.array([[1.0]], np.float32)}), "y") == [3.5]
    assert client.states("two_versions") == {124: "AVAILABLE"}
    assert rpc_error(client.predict, "two_versions", version=123, inputs={"x": np.zeros((1, 1), np.float32)}) == (
        "NOT_FOUND", "Servable not found for request: Specific(two_versions, 123)")


def test_example_based_signature_through_predict(client):
    example = tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[4.0]))}))
    inputs = {"inputs": np.array([example.SerializeToString()], dtype=object)}
    for model in ("half_plus_two", "half_plus_two_tf2"):
        response = client.predict(model, signature="regress_x_to_y", inputs=inputs)
        assert values(response, "outputs") == [4.0]


def test_stateful_counter_model(client):
    assert values(client.predict("counter", signature="reset_counter", inputs={}), "output") == [0.0]
    for expected in (1.0, 2.0):
        assert values(client.predict("counter", signature="incr_counter", inputs={}), "output") == [expected]
    by = client.predict("counter", signature="incr_counter_by", inputs={"delta": np.array(3.0, np.float32)})
    assert values(by, "output") == [5.0]
    assert values(client.predict("counter", signature="get_counter", inputs={}), "output") == [5.0]


@pytest.mark.parametrize("model, json_file, version", [
    ("half_plus_two", "half_plus_two_model_metadata.json", None),
    ("two_versions", "saved_model_half_plus_two_2_versions_metadata.json", 124),
])
def test_metadata_matches_tf_servings_answer(client, model, json_file, version):
    with open(os.path.join(TESTDATA, json_file)) as f:
        expected = json.load(f)
    want = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(expected["metadata"]["signature_def"], want)
    response = client.metadata(model, version=version)
    got = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(got)
    assert dict(got.signature_def) == dict(want.signature_def)
    assert response.model_spec.version.value == (124 if version else 123)  # parenthesized: else it asserted 123


def test_tf2_export_signatures(client):
    response = client.metadata("half_plus_two_tf2")
    got = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(got)
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x_to_y2",
            "regress_x2_to_y3", "classify_x2_to_y3"} <= set(got.signature_def)
