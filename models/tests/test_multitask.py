"""Tests of the MultiTask model that models/build_toy_models.py builds after the toy models.

The model is built once per module into a temporary folder and loaded the way the
server loads it: TF1 loader, tag 'serve', in a session.
"""

import math
from pathlib import Path

import numpy as np
import pytest
# the models/ modules, on sys.path through pyproject.toml's pytest settings
import load_like_server
import output_checks
import tf_import
import version_folders
import multitask_spec  # where MultiTask's weights live (test_check patches one)

MODELS_DIR = Path(__file__).resolve().parent.parent

EXAMPLES = [{"age": 31.0, "income": 5.2}, {"age": 45.0, "income": 1.0}]
CLASSES = [[b"low", b"medium", b"high"]] * 2
# By hand, from the weights (see the comment above MULTITASK_W1 in multitask_spec.py).
HIDDEN = [[0.15, 2.65, 5.7], [5.75, 0.0, 1.5]]
LOGITS = [[-0.5875, 2.5875, 1.675], [2.875, 0.875, -3.5]]
PREDICTION = [2.049999952316284, 7.375]  # float32(2.05), 7.375


def softmax(row):
    e = [math.exp(v - max(row)) for v in row]
    return [v / sum(e) for v in e]


def within_ulps(got, want, ulps=4):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= ulps * np.spacing(np.abs(want))))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("save")
    assert version_folders.build_one(multitask_spec.MULTITASK, out) == "built"
    return out


@pytest.fixture(scope="module")
def path(out):
    return out / "MultiTask" / "1"


@pytest.fixture(scope="module")
def loaded(path):
    """(meta_graph_def, {signature: {alias: array}}) for EXAMPLES."""
    return load_like_server.run_multitask_v1(path, EXAMPLES)


@pytest.fixture(scope="module")
def session(path):
    """(session, meta_graph_def) of the loaded model, for feeding by hand."""
    tf = tf_import.import_tf()
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        yield sess, meta_graph


def test_weights_are_fixed_and_shaped():
    assert np.array(multitask_spec.MULTITASK_W1).shape == (2, 3) and np.array(multitask_spec.MULTITASK_B1).shape == (3,)
    assert np.array(multitask_spec.MULTITASK_W2).shape == (3, 3) and np.array(multitask_spec.MULTITASK_B2).shape == (3,)
    assert np.array(multitask_spec.MULTITASK_W3).shape == (3, 1) and np.array(multitask_spec.MULTITASK_B3).shape == (1,)
    assert multitask_spec.MULTITASK_CLASSES == ("low", "medium", "high")
    assert multitask_spec.MULTITASK.key == "MultiTask/1"


def test_numpy_reference_by_hand():
    x = np.array([[e["age"], e["income"]] for e in EXAMPLES], np.float32)
    pre = x @ np.array(multitask_spec.MULTITASK_W1, np.float32) + np.array(multitask_spec.MULTITASK_B1, np.float32)
    h = np.maximum(pre, 0)
    assert np.allclose(h, HIDDEN, atol=1e-5)
    assert np.all(h[0] > 0) and h[1, 1] == 0 and pre[1, 1] < 0  # relu active, and cutting one unit
    want = multitask_spec.multitask_numpy([e["age"] for e in EXAMPLES], [e["income"] for e in EXAMPLES])
    assert want["scores"].dtype == np.float32 and want["prediction"].dtype == np.float32
    assert np.allclose(want["scores"], [softmax(r) for r in LOGITS], rtol=1e-6)
    assert [float(v) for v in want["prediction"].ravel()] == PREDICTION
    assert want["classes"].tolist() == CLASSES


def test_build_is_complete_and_skipped_next_time(out, path):
    assert version_folders.is_complete(path)
    assert sorted(p.name for p in (out / "MultiTask").iterdir()) == ["1"]  # no temp folders left
    before = (path / "saved_model.pb").stat().st_mtime_ns
    assert version_folders.build_one(multitask_spec.MULTITASK, out) == "skipped"
    assert (path / "saved_model.pb").stat().st_mtime_ns == before


def _shape(info):
    return [d.size for d in info.tensor_shape.dim]


def test_signatures(loaded):
    meta_graph, _ = loaded
    sigs = meta_graph.signature_def
    assert sorted(sigs) == ["classify", "regress", "serving_default"]
    DT_FLOAT, DT_STRING = 1, 7

    predict = sigs["serving_default"]
    assert predict.method_name == "tensorflow/serving/predict"
    assert sorted(predict.inputs) == ["age", "income"]
    for alias in ("age", "income"):
        assert predict.inputs[alias].name == f"{alias}:0"
        assert predict.inputs[alias].dtype == DT_FLOAT
        assert _shape(predict.inputs[alias]) == [-1]
    assert sorted(predict.outputs) == ["classes", "prediction", "scores"]
    assert (predict.outputs["scores"].dtype, _shape(predict.outputs["scores"])) == (DT_FLOAT, [-1, 3])
    assert (predict.outputs["classes"].dtype, _shape(predict.outputs["classes"])) == (DT_STRING, [-1, 3])
    assert (predict.outputs["prediction"].dtype, _shape(predict.outputs["prediction"])) == (DT_FLOAT, [-1, 1])

    classify = sigs["classify"]
    assert classify.method_name == "tensorflow/serving/classify"
    assert list(classify.inputs) == ["inputs"]
    assert sorted(classify.outputs) == ["classes", "scores"]
    assert (classify.outputs["scores"].dtype, _shape(classify.outputs["scores"])) == (DT_FLOAT, [-1, 3])
    assert (classify.outputs["classes"].dtype, _shape(classify.outputs["classes"])) == (DT_STRING, [-1, 3])

    regress = sigs["regress"]
    assert regress.method_name == "tensorflow/serving/regress"
    assert list(regress.inputs) == ["inputs"]
    assert list(regress.outputs) == ["outputs"]
    assert (regress.outputs["outputs"].dtype, _shape(regress.outputs["outputs"])) == (DT_FLOAT, [-1, 1])

    for sig in (classify, regress):
        inp = sig.inputs["inputs"]
        assert (inp.name, inp.dtype, _shape(inp)) == ("input_example_tensor:0", DT_STRING, [-1])
    # Separate towers: predict's outputs are not the examples' outputs.
    assert predict.outputs["scores"].name != classify.outputs["scores"].name


def test_predict_matches_numpy(loaded):
    _, results = loaded
    got = results["serving_default"]
    want = multitask_spec.multitask_numpy([e["age"] for e in EXAMPLES], [e["income"] for e in EXAMPLES])
    assert got["scores"].dtype == np.float32 and got["scores"].shape == (2, 3)
    assert within_ulps(got["scores"], want["scores"]), (got["scores"].tolist(), want["scores"].tolist())
    assert np.allclose(got["scores"].sum(axis=1), 1.0, atol=1e-6)
    assert [int(i) for i in got["scores"].argmax(axis=1)] == [1, 0]  # medium, low
    assert got["classes"].shape == (2, 3) and got["classes"].tolist() == CLASSES
    assert got["prediction"].dtype == np.float32 and got["prediction"].shape == (2, 1)
    assert np.array_equal(got["prediction"], want["prediction"])
    assert [float(v) for v in got["prediction"].ravel()] == PREDICTION


def test_classify_and_regress_equal_predict(loaded):
    _, results = loaded
    predict = results["serving_default"]
    assert sorted(results["classify"]) == ["classes", "scores"]
    assert np.array_equal(results["classify"]["scores"], predict["scores"])
    assert results["classify"]["classes"].tolist() == predict["classes"].tolist()
    assert list(results["regress"]) == ["outputs"]
    assert results["regress"]["outputs"].dtype == np.float32
    assert np.array_equal(results["regress"]["outputs"], predict["prediction"])


def test_one_and_three_examples(session):
    sess, meta_graph = session
    classify = meta_graph.signature_def["classify"]
    regress = meta_graph.signature_def["regress"]
    examples = [EXAMPLES[1], {"age": 20.0, "income": 0.5}, EXAMPLES[0]]
    for batch in (examples[:1], examples):
        serialized = np.array(load_like_server.serialize_examples(batch), dtype=object)
        scores, classes, outputs = sess.run(
            [classify.outputs["scores"].name, classify.outputs["classes"].name, regress.outputs["outputs"].name],
            {"input_example_tensor:0": serialized})
        want = multitask_spec.multitask_numpy([e["age"] for e in batch], [e["income"] for e in batch])
        assert scores.shape == (len(batch), 3) and classes.shape == (len(batch), 3)
        assert outputs.shape == (len(batch), 1)
        assert within_ulps(scores, want["scores"])
        assert np.array_equal(outputs, want["prediction"])


@pytest.mark.parametrize("example, missing", [({"age": 31.0}, "income"), ({"income": 5.2}, "age"),
                                               ({}, "age")])
def test_missing_feature_is_an_error(session, example, missing):
    tf = tf_import.import_tf()
    sess, meta_graph = session
    serialized = np.array(load_like_server.serialize_examples([EXAMPLES[0], example]), dtype=object)
    for key, alias in (("classify", "scores"), ("regress", "outputs")):
        sig = meta_graph.signature_def[key]
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"Feature: {missing} \\(data type: float\\) is required but could not be found"):
            sess.run(sig.outputs[alias].name, {sig.inputs["inputs"].name: serialized})


def test_check(out, monkeypatch):
    ok, msg = output_checks.check_multitask(out)
    assert ok, msg
    assert msg.endswith("~= numpy; classify and regress == predict")
    monkeypatch.setattr(multitask_spec, "MULTITASK_B3", (3.0,))  # numpy now disagrees with the saved model
    ok, msg = output_checks.check_multitask(out)
    assert not ok and msg.startswith("prediction ")
