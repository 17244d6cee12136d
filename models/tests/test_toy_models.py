"""Tests of models/build_toy_models.py and the model server configs in models/config.

The models are built once per session into a temporary folder (--out) and
loaded the way the server loads them: TF1 loader, tag 'serve', in a session.
MultiTask's outputs and signatures are tested in test_multitask.py.
"""

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import build_toy_models as btm  # on sys.path through pyproject.toml's pytest settings
import load_like_server
import model_paths
import version_folders
from server.servables.saved_model import signature_def_map_bytes  # what the server sends as metadata

MODELS_DIR = Path(__file__).resolve().parent.parent

X = [[1.0, 2.0], [1.0, 3.0]]
NAMES = ["Toy/1", "Toy/2", "Toy/3", "Toy_double/1"]
BUILT = NAMES + ["MultiTask/1"]  # every run builds MultiTask after the json's models

# The SignatureDefMap the guide prints for Toy version 2 (GetModelMetadata).
TOY2_SIGNATURE_DEF_MAP = (
    b"\n\253\001\n\017serving_default\022\227\001\n;\n\007input_1\0220\n\031serving_default_input_1:0"
    b"\020\001\032\021\022\013\010\377\377\377\377\377\377\377\377\377\001\022\002\010\002\022<\n"
    b"\010output_1\0220\n\031StatefulPartitionedCall:0\020\001\032\021\022\013\010\377\377\377\377"
    b"\377\377\377\377\377\001\022\002\010\001\032\032tensorflow/serving/predict\n>\n\025"
    b"__saved_model_init_op\022%\022#\n\025__saved_model_init_op\022\n\n\004NoOp\032\002\030\001"
)


CONFIGS = ["models.config", "toy_labels.config", "toy_specific.config"]


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = btm.main(argv)
    lines = out.getvalue().splitlines()
    configs = [line for line in lines if line.startswith("config  ")]
    assert rc != 0 or [c.rsplit("/", 1)[-1] for c in configs] == CONFIGS
    return rc, [line for line in lines if line not in configs], err.getvalue().splitlines()


@pytest.fixture(scope="module")
def weights():
    return json.loads(model_paths.DEFAULT_WEIGHTS.read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build all models once; return (out_dir, rc, stdout lines, stderr lines)."""
    out = tmp_path_factory.mktemp("save")
    rc, lines, errs = run_main(["--out", str(out)])
    return out, rc, lines, errs


@pytest.fixture(scope="module")
def loaded(built):
    """{name: (meta_graph_def, {alias: output array})} for every built model."""
    out = built[0]
    return {n: load_like_server.run_v1(out / n, X) for n in NAMES}


def test_default_paths():
    assert model_paths.DEFAULT_WEIGHTS == MODELS_DIR.parent.parent / "shared" / "toy_models.json"
    assert model_paths.DEFAULT_OUT == MODELS_DIR / "save"


def test_first_run_builds_everything(built):
    out, rc, lines, errs = built
    assert rc == 0 and errs == []
    assert len(lines) == 5
    for line, name in zip(lines, BUILT):
        assert line.startswith(f"built   {name} -> ")
    assert lines[4].endswith(" (signatures serving_default, classify, regress)")
    assert sorted(os.listdir(out)) == ["MultiTask", "Toy", "Toy_double"] + CONFIGS
    assert sorted(os.listdir(out / "Toy")) == ["1", "2", "3"]  # no temp folders left
    assert sorted(os.listdir(out / "Toy_double")) == ["1"]
    assert sorted(os.listdir(out / "MultiTask")) == ["1"]
    for n in BUILT:
        assert version_folders.is_complete(out / n)
        assert (os.stat(out / n).st_mode & 0o777) == 0o777 & ~version_folders.current_umask()


def test_toy1_exact_outputs(loaded):
    _, outputs = loaded["Toy/1"]
    y = outputs["output_1"]
    assert y.dtype == np.float32 and y.shape == (2, 1)
    assert [float(v) for v in y.ravel()] == [10.805429458618164, 14.010123252868652]


def test_outputs_match_expected(loaded, weights):
    for n in NAMES:
        m = weights["models"][n]
        _, outputs = loaded[n]
        assert list(outputs) == [m["output"]]
        got = [float(v) for v in outputs[m["output"]].ravel()]
        if m["activation"] == "linear":
            assert got == m["expected"], n
        else:  # the json allows the last float32 digit to differ
            want = np.float32(m["expected"])
            assert np.all(np.abs(np.float32(got) - want) <= np.spacing(want)), (n, got)


def test_signatures(loaded, weights):
    for n in NAMES:
        meta_graph, _ = loaded[n]
        sigs = meta_graph.signature_def
        assert sorted(sigs) == ["__saved_model_init_op", "serving_default"]
        sig = sigs["serving_default"]
        assert sig.method_name == "tensorflow/serving/predict"
        assert list(sig.inputs) == ["input_1"]
        inp = sig.inputs["input_1"]
        assert inp.name == "serving_default_input_1:0"
        assert inp.dtype == 1  # DT_FLOAT
        assert [d.size for d in inp.tensor_shape.dim] == [-1, 2]
        alias = weights["models"][n]["output"]
        assert list(sig.outputs) == [alias]
        out = sig.outputs[alias]
        assert out.name == "StatefulPartitionedCall:0"
        assert out.dtype == 1
        assert [d.size for d in out.tensor_shape.dim] == [-1, 1]
        init = sigs["__saved_model_init_op"]
        assert list(init.outputs) == ["__saved_model_init_op"]
        assert init.outputs["__saved_model_init_op"].name == "NoOp"
        assert init.outputs["__saved_model_init_op"].tensor_shape.unknown_rank


def test_toy2_signature_def_map_bytes(loaded):
    meta_graph, _ = loaded["Toy/2"]
    assert signature_def_map_bytes(meta_graph.signature_def) == TOY2_SIGNATURE_DEF_MAP


def test_toy3_output_alias_in_bytes(loaded):
    data = signature_def_map_bytes(loaded["Toy/3"][0].signature_def)
    assert b"\n\005dense\0220\n\031StatefulPartitionedCall:0" in data
    assert b"output_1" not in data


def test_second_run_skips(built):
    out = built[0]
    before = {n: os.stat(out / n / "saved_model.pb").st_mtime_ns for n in BUILT}
    rc, lines, errs = run_main(["--out", str(out)])
    assert rc == 0 and errs == []
    assert len(lines) == 5
    for line, name in zip(lines, BUILT):
        assert line.startswith(f"skipped {name}: ")
    assert before == {n: os.stat(out / n / "saved_model.pb").st_mtime_ns for n in BUILT}


def test_force_and_incomplete_rebuild(tmp_path, weights):
    one = {"models": {"Toy_double/1": weights["models"]["Toy_double/1"]}}
    wfile = tmp_path / "w.json"
    wfile.write_text(json.dumps(one))
    out = tmp_path / "save"
    (out / "Toy_double" / "1").mkdir(parents=True)  # incomplete: rebuilt
    (out / "MultiTask" / "1" / "variables").mkdir(parents=True)
    rc, lines, _ = run_main(["--weights", str(wfile), "--out", str(out)])
    assert rc == 0 and len(lines) == 2
    assert lines[0].startswith("rebuilt Toy_double/1 ")
    assert lines[1].startswith("rebuilt MultiTask/1 ")
    rc, lines, _ = run_main(["--weights", str(wfile), "--out", str(out), "--force", "--check"])
    assert rc == 0 and len(lines) == 4
    assert lines[0].startswith("rebuilt Toy_double/1 ")
    assert lines[1].startswith("rebuilt MultiTask/1 ")
    assert lines[2].startswith("checked Toy_double/1: ") and "== expected" in lines[2]
    assert lines[3].startswith("checked MultiTask/1: scores [[")
    assert lines[3].endswith("~= numpy; classify and regress == predict")
    assert sorted(os.listdir(out)) == ["MultiTask", "Toy_double"] + CONFIGS
    assert sorted(os.listdir(out / "Toy_double")) == ["1"]
    assert sorted(os.listdir(out / "MultiTask")) == ["1"]


@pytest.mark.parametrize("content", [None, "{not json", '{"models": {"Toy": {}}}',
                                     '{"models": {"Toy/1": {"kernel": [[1], [2]], '
                                     '"bias": [0], "activation": "relu"}}}'])
def test_bad_weights_exit_2(tmp_path, content):
    wfile = tmp_path / "weights.json"
    if content is not None:
        wfile.write_text(content)
    rc, lines, errs = run_main(["--weights", str(wfile), "--out", str(tmp_path / "out")])
    assert rc == 2
    assert lines == []
    assert len(errs) == 1 and errs[0].startswith("build_toy_models.py: error: ")
    assert not (tmp_path / "out").exists()


def test_configs_parse(built):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    out = built[0]

    def load(name):
        text = (out / name).read_text()
        assert text.startswith("# ")
        assert "Toy_double" in text.splitlines()[0] and "MultiTask" in text.splitlines()[0]
        cfg = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
        return {c.name: c for c in cfg.model_config_list.config}

    for name in ["models.config", "toy_specific.config", "toy_labels.config"]:
        cfgs = load(name)
        assert list(cfgs) == ["Toy", "Toy_double", "MultiTask"]
        for model, c in cfgs.items():
            assert c.base_path == f"{out}/{model}"
            assert c.model_platform == "tensorflow"
        for latest in ("Toy_double", "MultiTask"):
            assert not cfgs[latest].HasField("model_version_policy")
            assert not cfgs[latest].version_labels
        toy = cfgs["Toy"]
        if name == "models.config":
            assert not toy.HasField("model_version_policy") and not toy.version_labels
        else:
            assert list(toy.model_version_policy.specific.versions) == [1, 2]
            labels = {"stable": 1, "canary": 2} if name == "toy_labels.config" else {}
            assert dict(toy.version_labels) == labels
