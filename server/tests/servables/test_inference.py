"""Classify, Regress and MultiInference on TF Serving's half_plus_two models (TF1 and TF2 exports)."""


import pytest
from testing.server_client import Client, rpc_error
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from testing.paths import TESTDATA
from testing.server import ServerProcess

CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def config_file(tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "hpt.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'tf1' base_path: '{TESTDATA}/saved_model_half_plus_two_cpu' "
        "model_platform: 'tensorflow' }\n"
        f"  config {{ name: 'tf2' base_path: '{TESTDATA}/saved_model_half_plus_two_tf2_cpu' "
        "model_platform: 'tensorflow' }\n"
        f"  config {{ name: 'three' base_path: '{TESTDATA}/saved_model_half_plus_three' "
        "model_platform: 'tensorflow' }\n"
        "}\n")
    return config


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with ServerProcess(f"--model_config_file={config_file(tmp_path_factory)}") as server:
        with Client(server.target) as c:
            yield c


def add_examples(input_proto, *xs, context=None, feature="x"):
    target = input_proto.example_list_with_context if context is not None else input_proto.example_list
    for x in xs:
        example = target.examples.add()
        if x is not None:
            example.features.feature[feature].float_list.value.append(x)
    if context is not None:
        for name, value in context.items():
            target.context.features.feature[name].float_list.value.append(value)


def classify(client, model, signature="classify_x_to_y", xs=(2.0,), **kwargs):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    add_examples(request.input, *xs, **kwargs)
    return client.predictions.Classify(request, timeout=30)


def regress(client, model, signature="regress_x_to_y", xs=(2.0,), **kwargs):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    add_examples(request.input, *xs, **kwargs)
    return client.predictions.Regress(request, timeout=30)


def multi(client, tasks, xs=(2.0,)):
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    add_examples(request.input, *xs)
    return client.predictions.MultiInference(request, timeout=30)


@pytest.mark.parametrize("model", ["tf1", "tf2"])
def test_classify_as_tf_servings_own_test(client, model):
    response = classify(client, model)
    assert [[(c.label, c.score) for c in r.classes] for r in response.result.classifications] == [[("", 3.0)]]
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == (model, 123, "classify_x_to_y")


@pytest.mark.parametrize("model", ["tf1", "tf2"])
def test_regress_as_tf_servings_own_test(client, model):
    response = regress(client, model, xs=(2.0, 4.0))
    assert [r.value for r in response.result.regressions] == [3.0, 4.0]
    assert response.model_spec.signature_name == "regress_x_to_y"
    assert [r.value for r in regress(client, model, "regress_x_to_y2").result.regressions] == [4.0]


@pytest.mark.parametrize("model", ["tf1", "tf2"])
def test_multi_inference_as_tf_servings_own_test(client, model):
    response = multi(client, [(model, "regress_x_to_y", REGRESS), (model, "classify_x_to_y", CLASSIFY),
                              (model, "regress_x_to_y2", REGRESS)], xs=(2.0, 6.0))
    assert [r.value for r in response.results[0].regression_result.regressions] == [3.0, 5.0]
    assert [c.classes[0].score for c in response.results[1].classification_result.classifications] == [3.0, 5.0]
    assert [r.value for r in response.results[2].regression_result.regressions] == [4.0, 6.0]
    assert [(r.model_spec.name, r.model_spec.signature_name, r.model_spec.version.value)
            for r in response.results] == [(model, "regress_x_to_y", 123), (model, "classify_x_to_y", 123),
                                           (model, "regress_x_to_y2", 123)]


def test_context_features_go_to_every_example_and_the_example_wins(client):
    response = regress(client, "tf1", xs=(None, 4.0), context={"x": 10.0})
    assert [r.value for r in response.result.regressions] == [7.0, 4.0]


@pytest.mark.parametrize("call, kwargs, code, message", [
    (classify, {"xs": ()}, "INVALID_ARGUMENT", "Input is empty."),
    (regress, {"xs": ()}, "INVALID_ARGUMENT", "Input is empty."),
    (classify, {"signature": "nope"}, "INVALID_ARGUMENT", "No signature was found with the name: nope"),
    (regress, {"signature": "nope"}, "INVALID_ARGUMENT", "No signature was found with the name: nope"),
    (regress, {"signature": "classify_x_to_y"}, "INVALID_ARGUMENT", "No regression outputs found in SignatureDef: "),
    (classify, {"signature": "regress_x_to_y"}, "INVALID_ARGUMENT",
     'Expected classification signature outputs to contain at least one of "classes" or "scores". Signature was: '),
    (classify, {"signature": ""}, "INVALID_ARGUMENT", "No classification inputs found in SignatureDef: "),
    (regress, {"feature": "y"}, "INVALID_ARGUMENT", "Name: <unknown>, Feature: x (data type: float) is required but "
                                                    "could not be found."),
    # a signature whose input is not the serialized examples (a float tensor): TF Serving's runtime refuses the
    # string feed with this text, as for a Predict of the wrong type (once "Type mismatch: actual string vs. ...")
    (regress, {"signature": "regress_x2_to_y3"}, "INVALID_ARGUMENT",
     "Expects arg[0] to be float but string is provided"),
])
def test_classify_and_regress_errors(client, call, kwargs, code, message):
    got_code, got_message = rpc_error(call, client, "tf1", **kwargs)
    assert got_code == code and got_message.startswith(message), got_message


def test_unknown_model_and_missing_spec(client):
    assert rpc_error(classify, client, "nope") == ("NOT_FOUND", "Servable not found for request: Latest(nope)")
    assert rpc_error(client.predictions.Regress, regression_pb2.RegressionRequest()) == (
        "INVALID_ARGUMENT", "Missing ModelSpec")


@pytest.mark.parametrize("tasks, code, message", [
    ([], "INVALID_ARGUMENT", "ModelSpec has no name specified."),
    ([("tf1", "regress_x_to_y", REGRESS), ("", "classify_x_to_y", CLASSIFY)], "INVALID_ARGUMENT",
     "Found ModelSpec with an empty model name."),
    ([("tf1", "regress_x_to_y", REGRESS), ("three", "regress_x_to_y", REGRESS)], "INVALID_ARGUMENT",
     "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ([("tf1", "regress_x_to_y", REGRESS), ("tf1", "regress_x_to_y", REGRESS)], "INVALID_ARGUMENT",
     "Duplicate evaluation of signature: regress_x_to_y"),
    ([("tf1", "nope", REGRESS)], "INVALID_ARGUMENT", "Requested signature not found in model graph: nope"),
    ([("tf1", "regress_x_to_y", "tensorflow/serving/predict")], "UNIMPLEMENTED",
     "Unsupported signature method_name: tensorflow/serving/predict"),
    ([("tf1", "regress_x_to_y", "")], "UNIMPLEMENTED", "Unsupported signature method_name: "),
    ([("nope", "regress_x_to_y", REGRESS)], "NOT_FOUND", "Servable not found for request: Latest(nope)"),
])
def test_multi_inference_rules(client, tasks, code, message):
    assert rpc_error(multi, client, tasks) == (code, message)


def test_multi_inference_empty_input(client):
    assert rpc_error(multi, client, [("tf1", "regress_x_to_y", REGRESS)], xs=()) == ("INVALID_ARGUMENT",
                                                                                      "Input is empty.")


def test_method_name_check_flag(tmp_path_factory):
    with ServerProcess(f"--model_config_file={config_file(tmp_path_factory)}",
                       "--enable_signature_method_name_check") as server:
        client = Client(server.target)
        assert classify(client, "tf1").result.classifications[0].classes[0].score == 3.0  # TF1: right names
        assert rpc_error(classify, client, "tf2") == (
            "INVALID_ARGUMENT", "Expected classification signature method_name to be tensorflow/serving/classify. "
                                "Was: tensorflow/serving/predict")
        assert rpc_error(regress, client, "tf2") == (
            "INVALID_ARGUMENT", "Expected regression signature method_name to be tensorflow/serving/regress. "
                                "Was: tensorflow/serving/predict")
        client.close()
