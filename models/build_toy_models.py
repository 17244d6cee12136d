#!/usr/bin/env python3
"""Rebuild the guide's toy models as TensorFlow SavedModels.

Reads the weights in ``<repo>/../shared/toy_models.json`` (``--weights``) and
writes one SavedModel per entry into ``<out>/<name>/<version>/`` (``--out``,
default ``models/save`` next to this script), e.g. ``models/save/Toy/2``.

Every model is one Dense(1) layer in float32::

    y = activation(x @ kernel + bias)      x: float32 [-1, 2], y: [-1, 1]

(sigmoid computed as ``1 / (1 + exp(-y))`` in float32, which reproduces the
guide's outputs to the digit; ``--sigmoid-op`` uses TF's fused Sigmoid op as
Keras does, which may differ in the last float32 digit), exported so that TF
Serving's GetModelMetadata shows what the guide's original
Keras exports showed: signature ``serving_default`` (method
``tensorflow/serving/predict``, input alias ``input_1`` -> tensor
``serving_default_input_1:0``, output alias from the json -> tensor
``StatefulPartitionedCall:0``) plus ``__saved_model_init_op``.

After the toy models the same run builds ``MultiTask/1``, a small multi-task
model with fixed weights (constants below, not from the json; see
``export_multitask``): features ``age`` and ``income``, one shared ReLU layer,
a classification head over the classes ``low``, ``medium``, ``high`` and a
regression head, with the signatures ``serving_default`` (predict),
``classify`` and ``regress`` that TF Serving's Predict, Classify, Regress and
MultiInference use.

A version folder that already exists and is complete is skipped unless
``--force``. Each model is built in a temporary folder next to its target and
renamed into place, so a half-written model never appears as a version folder
(TF Serving ignores the temporary folders: their names are not numbers).
``--check`` loads every model the way the server does (TF1 loader, session)
and compares its outputs with the json's ``expected`` values (MultiTask: with
the same computation in numpy, and classify/regress with predict).

Exit status: 0 ok, 1 build or check failure, 2 bad usage or weights file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_DIR = SCRIPT_DIR.parent
DEFAULT_WEIGHTS = REPO_DIR.parent / "shared" / "toy_models.json"
DEFAULT_OUT = SCRIPT_DIR / "save"
CONFIG_TEMPLATES = SCRIPT_DIR / "config"

INPUT_ALIAS = "input_1"
SIGNATURE_KEY = "serving_default"
INIT_OP_KEY = "__saved_model_init_op"
ACTIVATIONS = ("linear", "sigmoid")
DEFAULT_INPUT = [[1.0, 2.0], [1.0, 3.0]]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_VERSION_RE = re.compile(r"^[1-9][0-9]*$")


class WeightsError(Exception):
    """The weights file is missing or not in the expected format."""


@dataclass(frozen=True)
class ToyModel:
    name: str
    version: int
    kernel: tuple  # ((k0,), (k1,))
    bias: tuple  # (b,)
    activation: str
    output: str
    expected: tuple | None  # outputs for the json's input, or None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class Weights:
    models: tuple  # of ToyModel
    input: tuple  # ((x00, x01), (x10, x11))


@dataclass(frozen=True)
class MultiTaskModel:
    name: str = "MultiTask"
    version: int = 1

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


# MultiTask's weights, chosen by hand so its outputs are easy to check:
#   x = [age, income]                         float32 [batch, 2]
#   h = relu(x @ W1 + b1)                     shared layer, [batch, 3]
#   scores = softmax(h @ W2 + b2)             classes low, medium, high, [batch, 3]
#   prediction = h @ W3 + b3                  regression, [batch, 1]
# For (age=31, income=5.2): h = [0.15, 2.65, 5.7] (all units active), logits
# [-0.5875, 2.5875, 1.675], prediction 2.05; for (age=45, income=1.0):
# h = [5.75, 0 (relu of -9.25), 1.5], logits [2.875, 0.875, -3.5], prediction 7.375.
MULTITASK = MultiTaskModel()
MULTITASK_FEATURES = ("age", "income")
MULTITASK_CLASSES = ("low", "medium", "high")
MULTITASK_W1 = ((0.25, -0.25, 0.0),
                (-0.5, 2.0, 1.0))
MULTITASK_B1 = (-5.0, 0.0, 0.5)
MULTITASK_W2 = ((0.5, 0.0, -0.5),
                (-0.25, 0.25, 0.5),
                (0.0, 0.25, 0.25))
MULTITASK_B2 = (0.0, 0.5, -1.0)
MULTITASK_W3 = ((1.0,),
                (0.5,),
                (-0.25,))
MULTITASK_B3 = (2.0,)
MULTITASK_EXAMPLES = ({"age": 31.0, "income": 5.2}, {"age": 45.0, "income": 1.0})
EXAMPLES_INPUT = "input_example_tensor"  # the classify/regress input tensor (as Estimators named it)
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


# --------------------------------------------------------------------------
# Weights file
# --------------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _matrix(value, rows: int, cols: int, what: str) -> tuple:
    if (not isinstance(value, list) or len(value) != rows
            or not all(isinstance(r, list) and len(r) == cols and all(_is_number(v) for v in r)
                       for r in value)):
        raise WeightsError(f"{what} must be a {rows}x{cols} list of numbers")
    return tuple(tuple(float(v) for v in r) for r in value)


def _vector(value, n: int, what: str) -> tuple:
    if not isinstance(value, list) or len(value) != n or not all(_is_number(v) for v in value):
        raise WeightsError(f"{what} must be a list of {n} numbers")
    return tuple(float(v) for v in value)


def load_weights(path) -> Weights:
    """Read and validate the weights file; raise WeightsError on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"weights file {path} is not valid JSON: {e}") from None
    try:
        return _parse_weights(data)
    except WeightsError as e:
        raise WeightsError(f"weights file {path}: {e}") from None


def _parse_weights(data) -> Weights:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise WeightsError("expected an object with a non-empty 'models' object")
    x = _matrix(data.get("input", DEFAULT_INPUT), 2, 2, "'input'")
    models = []
    for key, m in data["models"].items():
        name, _, version = key.partition("/")
        if not _NAME_RE.match(name) or not _VERSION_RE.match(version):
            raise WeightsError(f"model key {key!r} is not '<name>/<version>' "
                               "(version a positive integer)")
        if not isinstance(m, dict):
            raise WeightsError(f"model {key!r} must be an object")
        activation = m.get("activation")
        if activation not in ACTIVATIONS:
            raise WeightsError(f"model {key!r}: activation must be one of {ACTIVATIONS}, "
                               f"not {activation!r}")
        output = m.get("output", "output_1")
        if not isinstance(output, str) or not _NAME_RE.match(output):
            raise WeightsError(f"model {key!r}: 'output' must be a name, not {output!r}")
        expected = m.get("expected")
        if expected is not None:
            expected = _vector(expected, len(x), f"model {key!r}: 'expected'")
        models.append(ToyModel(
            name=name,
            version=int(version),
            kernel=_matrix(m.get("kernel"), 2, 1, f"model {key!r}: 'kernel'"),
            bias=_vector(m.get("bias"), 1, f"model {key!r}: 'bias'"),
            activation=activation,
            output=output,
            expected=expected,
        ))
    return Weights(models=tuple(models), input=x)


# --------------------------------------------------------------------------
# TensorFlow (imported lazily: a run that only skips never loads it)
# --------------------------------------------------------------------------

_tf = None


def import_tf(verbose: bool = False):
    """Import TensorFlow quietly (the server's own quiet import) and return the module."""
    global _tf
    if _tf is None:
        if str(REPO_DIR) not in sys.path:
            sys.path.insert(0, str(REPO_DIR))
        from server.quiet_tf import import_tensorflow

        _tf = import_tensorflow(verbose)
    return _tf


def _make_module(tf, model: ToyModel, sigmoid_op: bool = False):
    import numpy as np

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            # Variables (not constants), like Keras: the exported signature's
            # output tensor is then StatefulPartitionedCall:0, as in the guide.
            self.kernel = tf.Variable(np.array(model.kernel, dtype=np.float32), name="kernel")
            self.bias = tf.Variable(np.array(model.bias, dtype=np.float32), name="bias")

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name=INPUT_ALIAS)])
        def serve(self, input_1):
            # The same ops as keras.layers.Dense: MatMul then BiasAdd.
            y = tf.nn.bias_add(tf.matmul(input_1, self.kernel), self.bias)
            if model.activation == "sigmoid":
                if sigmoid_op:
                    y = tf.sigmoid(y)
                else:
                    # 1 / (1 + exp(-y)) in float32 reproduces the guide's
                    # outputs to the digit; today's fused Sigmoid kernel is
                    # correctly rounded and can differ in the last digit.
                    y = tf.math.reciprocal(1.0 + tf.exp(-y))
            return {model.output: y}

    return Toy()


def export_model(model: ToyModel, path, verbose: bool = False,
                 sigmoid_op: bool = False) -> None:
    """Write ``model`` as a SavedModel into the (new or empty) folder ``path``.

    Sigmoid is computed as ``1 / (1 + exp(-y))`` in float32, which gives the
    guide's TF Serving outputs exactly, unless ``sigmoid_op`` (TF's fused
    Sigmoid op, as Keras uses today: may differ in the last float32 digit).
    """
    tf = import_tf(verbose)
    module = _make_module(tf, model, sigmoid_op)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_KEY: module.serve})


def run_v1(path, x, verbose: bool = False):
    """Load a SavedModel as TF Serving does (TF1 loader, tag 'serve', session).

    Returns ``(meta_graph_def, outputs)`` where ``outputs`` maps each output
    alias of ``serving_default`` to a numpy array for the input ``x``.
    """
    tf = import_tf(verbose)
    import numpy as np

    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        sig = meta_graph.signature_def[SIGNATURE_KEY]
        feed = {sig.inputs[INPUT_ALIAS].name: np.asarray(x, dtype=np.float32)}
        aliases = sorted(sig.outputs)
        values = sess.run([sig.outputs[a].name for a in aliases], feed)
    return meta_graph, dict(zip(aliases, values))


def signature_def_map_bytes(meta_graph) -> bytes:
    """Serialized tensorflow.serving.SignatureDefMap of a MetaGraphDef, as the
    guide printed it: ``serving_default`` first, then the other signatures.

    Protobuf serializes map fields in its own order, so each entry is
    serialized on its own and the pieces concatenated (a valid encoding of the
    whole map, in the order chosen here).
    """
    from tensorflow_serving.apis import get_model_metadata_pb2

    keys = sorted(meta_graph.signature_def, key=lambda k: (k != SIGNATURE_KEY, k))
    out = b""
    for k in keys:
        entry = get_model_metadata_pb2.SignatureDefMap()
        entry.signature_def[k].CopyFrom(meta_graph.signature_def[k])
        out += entry.SerializeToString()
    return out


# --------------------------------------------------------------------------
# MultiTask
# --------------------------------------------------------------------------

def multitask_numpy(age, income) -> dict:
    """MultiTask's outputs computed in numpy (float32): {'scores', 'classes', 'prediction'}."""
    import numpy as np

    f32 = np.float32
    x = np.stack([np.asarray(age, f32).reshape(-1), np.asarray(income, f32).reshape(-1)], axis=1)
    h = np.maximum(x @ np.array(MULTITASK_W1, f32) + np.array(MULTITASK_B1, f32), f32(0))
    logits = h @ np.array(MULTITASK_W2, f32) + np.array(MULTITASK_B2, f32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = (e / e.sum(axis=1, keepdims=True)).astype(f32)
    prediction = (h @ np.array(MULTITASK_W3, f32) + np.array(MULTITASK_B3, f32)).astype(f32)
    classes = np.tile(np.array([c.encode() for c in MULTITASK_CLASSES], dtype=object), (len(x), 1))
    return {"scores": scores, "classes": classes, "prediction": prediction}


def serialize_examples(examples) -> list:
    """Serialized tf.Example protos, one per {feature: float} dict (float_list features)."""
    from tensorflow.core.example import example_pb2

    out = []
    for features in examples:
        example = example_pb2.Example()
        for name, value in features.items():
            example.features.feature[name].float_list.value.append(value)
        out.append(example.SerializeToString())
    return out


def export_multitask(path, verbose: bool = False) -> None:
    """Write MultiTask as a SavedModel into the (new or empty) folder ``path``.

    A TF1 graph saved with SavedModelBuilder (TF2's tf.saved_model.save marks
    every signature as predict): the variables are shared by two towers, one
    on the float placeholders ``age:0`` and ``income:0`` (``serving_default``),
    one on the features parsed from ``input_example_tensor:0``, serialized
    tf.Examples with required float features age and income (``classify`` and
    ``regress`` share it, so MultiInference runs one parse for both).
    """
    tf = import_tf(verbose)
    import numpy as np

    v1 = tf.compat.v1
    f32 = np.float32
    graph = tf.Graph()
    with graph.as_default():
        def variable(name, value):
            return v1.get_variable(name, initializer=np.array(value, f32), use_resource=True)

        with v1.variable_scope("shared"):
            w1, b1 = variable("kernel", MULTITASK_W1), variable("bias", MULTITASK_B1)
        with v1.variable_scope("classification"):
            w2, b2 = variable("kernel", MULTITASK_W2), variable("bias", MULTITASK_B2)
        with v1.variable_scope("regression"):
            w3, b3 = variable("kernel", MULTITASK_W3), variable("bias", MULTITASK_B3)
        labels = tf.constant([list(MULTITASK_CLASSES)], tf.string, name="class_names")

        def heads(age, income):
            x = tf.stack([age, income], axis=1, name="x")
            h = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1), name="shared")
            logits = tf.nn.bias_add(tf.matmul(h, w2), b2, name="logits")
            scores = tf.nn.softmax(logits, name="scores")
            classes = tf.tile(labels, [tf.shape(scores)[0], 1], name="classes")
            prediction = tf.nn.bias_add(tf.matmul(h, w3), b3, name="prediction")
            return scores, classes, prediction

        age = v1.placeholder(tf.float32, [None], name="age")
        income = v1.placeholder(tf.float32, [None], name="income")
        with tf.name_scope("predict"):
            scores, classes, prediction = heads(age, income)

        serialized = v1.placeholder(tf.string, [None], name=EXAMPLES_INPUT)
        with tf.name_scope("examples"):
            # No default_value: a missing feature is an error (INVALID_ARGUMENT).
            features = tf.io.parse_example(
                serialized, {name: tf.io.FixedLenFeature([], tf.float32)
                             for name in MULTITASK_FEATURES})
            ex_scores, ex_classes, ex_prediction = heads(features["age"], features["income"])

        sigs = v1.saved_model.signature_def_utils
        signature_def_map = {
            SIGNATURE_KEY: sigs.predict_signature_def(
                inputs={"age": age, "income": income},
                outputs={"scores": scores, "classes": classes, "prediction": prediction}),
            "classify": sigs.classification_signature_def(
                examples=serialized, classes=ex_classes, scores=ex_scores),
            "regress": sigs.regression_signature_def(
                examples=serialized, predictions=ex_prediction),
        }
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                sess, [v1.saved_model.tag_constants.SERVING],
                signature_def_map=signature_def_map,
                clear_devices=True, strip_default_attrs=True)
            builder.save()


def run_multitask_v1(path, examples=MULTITASK_EXAMPLES, verbose: bool = False):
    """Load MultiTask as the server does and run its three signatures on ``examples``.

    Returns ``(meta_graph_def, {signature: {alias: numpy array}})``: serving_default
    fed the features as float tensors, classify and regress fed the examples
    serialized as tf.Examples.
    """
    tf = import_tf(verbose)
    import numpy as np

    serialized = np.array(serialize_examples(examples), dtype=object)
    results = {}
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        for key, sig in meta_graph.signature_def.items():
            if sig.method_name == PREDICT_METHOD:
                feed = {sig.inputs[name].name: np.array([e[name] for e in examples], np.float32)
                        for name in sig.inputs}
            elif sig.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
                feed = {sig.inputs["inputs"].name: serialized}
            else:
                continue
            aliases = sorted(sig.outputs)
            values = sess.run([sig.outputs[a].name for a in aliases], feed)
            results[key] = dict(zip(aliases, values))
    return meta_graph, results


def _close(got, want, ulps: int = 4) -> bool:
    """Whether float32 arrays agree within ``ulps`` units in the last place (TF's and
    numpy's exp and summation order may differ in the last digits)."""
    import numpy as np

    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    return got.shape == want.shape and bool(
        np.all(np.abs(got - want) <= ulps * np.spacing(np.abs(want))))


def check_multitask(out_dir: Path, verbose: bool = False) -> tuple[bool, str]:
    """Run MultiTask's signatures on MULTITASK_EXAMPLES and compare with numpy."""
    import numpy as np

    target = out_dir / MULTITASK.name / str(MULTITASK.version)
    meta_graph, results = run_multitask_v1(target, MULTITASK_EXAMPLES, verbose)
    methods = {k: s.method_name for k, s in meta_graph.signature_def.items()}
    want_methods = {SIGNATURE_KEY: PREDICT_METHOD, "classify": CLASSIFY_METHOD,
                    "regress": REGRESS_METHOD}
    if methods != want_methods:
        return False, f"signatures {methods} instead of {want_methods}"
    predict = results[SIGNATURE_KEY]
    want = multitask_numpy([e["age"] for e in MULTITASK_EXAMPLES],
                           [e["income"] for e in MULTITASK_EXAMPLES])
    problems = []
    for alias in ("scores", "prediction"):
        if not _close(predict.get(alias), want[alias]):
            problems.append(f"{alias} {predict.get(alias)!r} != numpy {want[alias]!r}")
    if predict.get("classes") is None or predict["classes"].tolist() != want["classes"].tolist():
        problems.append(f"classes {predict.get('classes')!r}")
    for key, alias, same in (("classify", "scores", "scores"), ("classify", "classes", "classes"),
                             ("regress", "outputs", "prediction")):
        if not np.array_equal(results[key].get(alias), predict.get(same)):
            problems.append(f"{key} {alias} differs from predict {same}")
    if problems:
        return False, "; ".join(problems)
    scores = [[float(v) for v in row] for row in predict["scores"]]
    prediction = [float(v) for v in predict["prediction"].ravel()]
    return True, (f"scores {scores!r}, prediction {prediction!r} ~= numpy; "
                  "classify and regress == predict")


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_complete(path) -> bool:
    """Whether ``path`` holds a fully written SavedModel."""
    path = Path(path)
    variables = path / "variables"
    return ((path / "saved_model.pb").is_file()
            and (variables / "variables.index").is_file()
            and any(variables.glob("variables.data-*")))


def build_one(model, out_dir: Path, force: bool = False,
              verbose: bool = False, sigmoid_op: bool = False) -> str:
    """Build one model unless already there; return 'built', 'rebuilt' or 'skipped'."""
    model_dir = out_dir / model.name
    target = model_dir / str(model.version)
    exists = target.exists()
    if exists and not force and is_complete(target):
        return "skipped"
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.version}.tmp-", dir=model_dir))
    try:
        if isinstance(model, MultiTaskModel):
            export_multitask(tmp, verbose)
        else:
            export_model(model, tmp, verbose, sigmoid_op)
        if not is_complete(tmp):
            raise RuntimeError(f"export of {model.key} in {tmp} is incomplete")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        if exists:
            # Directories cannot be replaced atomically: move the old one
            # aside, move the new one in, then delete the old one.
            old = Path(tempfile.mkdtemp(prefix=f".{model.version}.old-", dir=model_dir))
            os.rename(target, old / "v")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return "rebuilt" if exists else "built"


def check_one(model: ToyModel, out_dir: Path, x, verbose: bool = False) -> tuple[bool, str]:
    """Run a built model through the TF1 loader and compare with ``expected``.

    Linear models must match exactly; sigmoid ones within 1 float32 ulp (the
    json notes that CPU kernels may differ in the last digit).
    """
    import numpy as np

    target = out_dir / model.name / str(model.version)
    _, outputs = run_v1(target, x, verbose)
    if set(outputs) != {model.output}:
        return False, f"outputs {sorted(outputs)} instead of [{model.output!r}]"
    got = [float(v) for v in outputs[model.output].reshape(-1)]
    if model.expected is None:
        return True, f"{got!r} (no expected values)"
    want = np.asarray(model.expected, dtype=np.float32)
    diff = np.abs(np.asarray(got, dtype=np.float32) - want)
    tolerance = 0 if model.activation == "linear" else np.spacing(np.abs(want))
    ok = len(got) == len(want) and bool(np.all(diff <= tolerance))
    exact = ok and bool(np.all(diff == 0))
    return ok, f"{got!r} " + ("== expected" if exact else
                              f"{'~=' if ok else '!='} expected {list(model.expected)!r}")


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def write_configs(out_dir: Path) -> list:
    """Render models/config/*.config.in into out_dir with ${MODELS_DIR} = out_dir.

    TF Serving requires absolute base paths, so the configs are written per checkout; the same
    file works for a Docker TF Serving that mounts out_dir at the same path.
    """
    written = []
    for template in sorted(CONFIG_TEMPLATES.glob("*.config.in")):
        target = out_dir / template.name[: -len(".in")]
        text = template.read_text(encoding="utf-8").replace("${MODELS_DIR}", str(out_dir))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_toy_models.py",
        description="Rebuild the guide's toy models (and MultiTask) as TensorFlow SavedModels.")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                        help=f"weights file (default: {_show(DEFAULT_WEIGHTS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {_show(DEFAULT_OUT)})")
    parser.add_argument("--force", action="store_true",
                        help="rebuild versions that already exist")
    parser.add_argument("--check", action="store_true",
                        help="afterwards, load each model with the TF1 loader and "
                             "compare its outputs with the json's expected values "
                             "(MultiTask: with numpy)")
    parser.add_argument("--sigmoid-op", action="store_true",
                        help="compute sigmoid with TF's fused Sigmoid op (as Keras does) "
                             "instead of 1/(1+exp(-x)), which matches the guide's outputs "
                             "exactly; applies to models built in this run")
    parser.add_argument("--verbose", action="store_true",
                        help="do not hide TensorFlow's start-up messages")
    args = parser.parse_args(argv)

    try:
        weights = load_weights(args.weights)
    except WeightsError as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    out_dir = args.out.resolve()
    models = list(weights.models) + [MULTITASK]
    status = 0
    for model in models:
        target = out_dir / model.name / str(model.version)
        try:
            result = build_one(model, out_dir, force=args.force, verbose=args.verbose,
                               sigmoid_op=args.sigmoid_op)
        except Exception as e:  # report and go on with the other models
            print(f"FAILED  {model.key}: {type(e).__name__}: {' '.join(str(e).split())}",
                  file=sys.stderr)
            status = 1
            continue
        if result == "skipped":
            print(f"skipped {model.key}: {_show(target)} exists (--force to rebuild)", flush=True)
        elif isinstance(model, MultiTaskModel):
            print(f"{result:7} {model.key} -> {_show(target)} "
                  f"(signatures {SIGNATURE_KEY}, classify, regress)", flush=True)
        else:
            print(f"{result:7} {model.key} -> {_show(target)} "
                  f"({model.activation}, output {model.output!r})", flush=True)

    if status == 0:
        for written in write_configs(out_dir):
            print(f"config  {_show(written)}", flush=True)

    if args.check and status == 0:
        for model in models:
            try:
                if isinstance(model, MultiTaskModel):
                    ok, msg = check_multitask(out_dir, args.verbose)
                else:
                    ok, msg = check_one(model, out_dir, weights.input, args.verbose)
            except Exception as e:
                ok, msg = False, f"{type(e).__name__}: {' '.join(str(e).split())}"
            print(f"{'checked' if ok else 'MISMATCH'} {model.key}: {msg}", flush=True)
            if not ok:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
