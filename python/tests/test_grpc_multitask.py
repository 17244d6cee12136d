"""grpcMultiTask.py: Classify, Regress and MultiInference from the shell."""

import json
import os

import numpy as np

import pytest
from script_helpers import run_script

from testing.server import ServerProcess

TESTDATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "tfs-testdata"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "hpt.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'hpt' base_path: '{TESTDATA}/saved_model_half_plus_two_cpu' "
        "model_platform: 'tensorflow' }\n"
        f"  config {{ name: 'hpt2' base_path: '{TESTDATA}/saved_model_half_plus_two_tf2_cpu' "
        "model_platform: 'tensorflow' }\n"
        "}\n")
    with ServerProcess(f"--model_config_file={config}") as s:
        yield s


def script(server, *args):
    return run_script("grpcMultiTask.py", *args, server=server.target)


@pytest.mark.parametrize("model", ["hpt", "hpt2"])
def test_one_task_and_several(server, model):
    result = script(server, "-m", model, "--task", "classify:classify_x_to_y", "-e", "x=2.0")
    assert (result.code, result.err) == (0, "")
    assert "score: 3.0" in result.out and 'signature_name: "classify_x_to_y"' in result.out
    result = script(server, "-m", model, "--task", "regress:regress_x_to_y", "--task", "regress:regress_x_to_y2",
                    "--task", "classify:classify_x_to_y", "-e", "x=2.0", "-e", "x=4.0", "--values")
    assert result.out == (
        "example 0: regress:regress_x_to_y 3  regress:regress_x_to_y2 4  classify:classify_x_to_y #0=3\n"
        "example 1: regress:regress_x_to_y 4  regress:regress_x_to_y2 5  classify:classify_x_to_y #0=4\n")


def test_examples_from_files_context_and_json(server, tmp_path):
    (tmp_path / "x.json").write_text('[{"x": 2.0}, {"x": [6.0]}]')
    (tmp_path / "x.csv").write_text("x,note\n2.0,a\n6.0,b\n")
    for path in ("x.json", "x.csv"):
        result = script(server, "-m", "hpt", "--task", "regress:regress_x_to_y", "--examples", str(tmp_path / path),
                        "--values")
        assert result.out == "example 0: regress:regress_x_to_y 3\nexample 1: regress:regress_x_to_y 5\n", result
    result = script(server, "-m", "hpt", "--task", "regress:regress_x_to_y", "-e", "note=a", "--context", "x=10.0",
                    "--format", "json")
    assert json.loads(result.out)["result"]["regressions"] == [{"value": 7.0}]


def test_tfrecord_examples(server, tmp_path):
    import tfrecord_helper
    path = tfrecord_helper.write_examples(tmp_path / "x.tfrecord", [{"x": 2.0}, {"x": 8.0}])
    result = script(server, "-m", "hpt", "--task", "regress:regress_x_to_y", "--examples", str(path), "--values")
    assert result.out == "example 0: regress:regress_x_to_y 3\nexample 1: regress:regress_x_to_y 6\n"


def test_feature_types_inferred_and_forced(server):
    result = script(server, "-m", "hpt", "--task", "regress:regress_x_to_y", "-e", "x=2")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("grpcMultiTask.py: error: INVALID_ARGUMENT: Name: <unknown>, Key: x, Index: 0. "
                                 "Data types don't match.")
    assert result.err.endswith("(force a feature's type with --feature-type NAME=float)\n")
    assert len(result.err.splitlines()) == 1
    result = script(server, "-m", "hpt", "--task", "regress:regress_x_to_y", "-e", "x=2", "--feature-type", "x=float",
                    "--values")
    assert result.out == "example 0: regress:regress_x_to_y 3\n"


@pytest.mark.parametrize("args, message", [
    ((), "grpcMultiTask.py: error: give at least one --task classify[:SIGNATURE] or --task regress[:SIGNATURE]\n"),
    (("--task", "predict"), "grpcMultiTask.py: error: --task wants classify[:SIGNATURE] or regress[:SIGNATURE], "
                            "not 'predict'\n"),
    (("--task", "regress"), "grpcMultiTask.py: error: no examples: give --example 'name=value,...' or "
                            "--examples FILE\n"),
    (("--task", "regress", "-e", "x"), "grpcMultiTask.py: error: --example 'x': wants NAME=VALUE pairs separated by "
                                       "commas, e.g. 'age=31,income=5.2', not 'x'\n"),
    (("--task", "regress", "-e", "x=1", "--feature-type", "x=double"),
     "grpcMultiTask.py: error: --feature-type wants NAME=int|float|bytes, not 'x=double'\n"),
    (("--task", "regress", "-e", "x=a", "--feature-type", "x=float"),
     "grpcMultiTask.py: error: feature 'x': cannot read ['a'] as float\n"),
    (("--task", "regress", "--examples", "/nope.csv"),
     "grpcMultiTask.py: error: --examples: file not found: /nope.csv\n"),
])
def test_bad_example_input(server, args, message):
    result = script(server, "-m", "hpt", *args)
    assert (result.code, result.out, result.err) == (2, "", message)


def test_bad_files(server, tmp_path):
    (tmp_path / "ragged.csv").write_text("x,y\n1.0,2.0\n3.0\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.json").write_text('{"x": 1}')
    (tmp_path / "broken.json").write_text('[{"x": 1}')
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "nested.json").write_text('[{"x": {"a": 1}}]')
    expected = {
        "ragged.csv": f"{tmp_path}/ragged.csv:3: 1 values for 2 columns (x, y)",
        "empty.csv": f"{tmp_path}/empty.csv: a CSV file needs a header line of feature names",
        "bad.json": f"{tmp_path}/bad.json: a JSON file must hold a list of feature maps",
        "broken.json": f"{tmp_path}/broken.json is not valid JSON",
        "empty.json": "no examples: give --example 'name=value,...' or --examples FILE",
        "nested.json": "a feature value must be a number or a string, not dict",
    }
    for name, message in expected.items():
        result = script(server, "-m", "hpt", "--task", "regress", "--examples", str(tmp_path / name))
        assert result.code == 2 and result.out == "", result
        assert result.err.startswith(f"grpcMultiTask.py: error: {message}"), result
        assert len(result.err.splitlines()) == 1


def test_server_rules_reach_the_user(server):
    result = script(server, "-m", "hpt", "--task", "regress:regress_x_to_y", "--task", "regress:regress_x_to_y",
                    "-e", "x=1.0")
    assert (result.code, result.err) == (1, "grpcMultiTask.py: error: INVALID_ARGUMENT: Duplicate evaluation of "
                                            "signature: regress_x_to_y\n")
    result = script(server, "-m", "hpt", "--task", "regress", "-e", "x=1.0")
    assert result.code == 1 and result.err.startswith(
        "grpcMultiTask.py: error: INVALID_ARGUMENT: No regression inputs found in SignatureDef: inputs { key: \"x\"")
    assert len(result.err.splitlines()) == 1


# -- the MultiTask toy model, on the session's toy server -----------------------------------------

SCORES = [[0.028957068920135498, 0.6928502917289734, 0.2781926095485687],
          [0.879477322101593, 0.11902431398630142, 0.001498294877819717]]


def test_multi_input_predict_on_the_multi_head_model(run):
    result = run("grpcRequest.py", "-m", "MultiTask", "-i", "age=[31.0, 45.0]", "-i", "income=[5.2, 1.0]",
                 "--output-filter", "scores", "--output-filter", "prediction", "--values")
    assert (result.code, result.err) == (0, "")
    values = json.loads(result.out)
    assert values["prediction"] == [[2.049999952316284], [7.375]]
    np.testing.assert_allclose(values["scores"], SCORES, rtol=1e-6)
    classes = json.loads(run("grpcRequest.py", "-m", "MultiTask", "-i", "age=[31]", "-i", "income=[5]",
                             "--output-filter", "classes", "--values").out)
    assert classes == {"classes": [["low", "medium", "high"]]}


def test_classify_regress_and_multi_inference_on_the_toy_model(run):
    result = run("grpcMultiTask.py", "--task", "classify:classify", "--task", "regress:regress",
                 "-e", "age=31.0,income=5.2", "-e", "age=45.0,income=1.0", "--format", "json")
    assert (result.code, result.err) == (0, "")
    results = json.loads(result.out)["results"]
    scores = [[c["score"] for c in example["classes"]]
              for example in results[0]["classification_result"]["classifications"]]
    labels = [[c["label"] for c in example["classes"]]
              for example in results[0]["classification_result"]["classifications"]]
    np.testing.assert_allclose(scores, SCORES, rtol=1e-6)
    assert labels == [["low", "medium", "high"]] * 2
    assert results[1]["regression_result"]["regressions"] == [{"value": 2.05}, {"value": 7.375}]
    one = run("grpcMultiTask.py", "--task", "regress:regress", "-e", "age=45.0,income=1.0", "--values")
    assert one.out == "example 0: regress:regress 7.375\n"
    missing = run("grpcMultiTask.py", "--task", "regress:regress", "-e", "age=45.0")
    assert missing.code == 1 and "Feature: income (data type: float) is required but could not be found." in missing.err
