"""tfsclient.protos: TF Serving's API protos bundled (tfsclient.schema), with no TensorFlow or tensorflow-serving-api;
and a process that imports both, in either order, gets both working, unchanged.

Each check runs in a fresh interpreter (sys.modules must start empty), from python/ as the
scripts do.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_py(code, env=None, args=()):
    """Run code in a new interpreter started from python/; return its stdout (asserting exit 0)."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    environment.update(env or {})
    done = subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)], cwd=PYTHON_DIR,
                          env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


# A request touching every kind of field (map, nested message, tensor_content, typed fields).
BUILD_REQUEST = """
def build_request(predict_pb2, tensor_pb2, types_pb2):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = "serving_default"
    request.model_spec.version_label = "stable"
    x = request.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    x.tensor_shape.dim.add(size=2)
    x.tensor_shape.dim.add(size=2)
    x.tensor_content = bytes(range(16))
    s = request.inputs["s"]
    s.dtype = types_pb2.DT_STRING
    s.tensor_shape.dim.add(size=1)
    s.string_val.append("héllo".encode())
    request.output_filter.append("y")
    return request.SerializeToString(deterministic=True).hex()
"""


def test_import_needs_neither_tensorflow_nor_serving_api():
    out = run_py("""
        import json, sys
        from tfsclient import codec, protos as tfs_protos
        print(json.dumps({
            "foreign": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving")),
            "flag": tfs_protos.tensorflow_runtime_loaded(),
            "grpc_before": "grpc" in sys.modules,
            "stub": tfs_protos.prediction_service_pb2_grpc.PredictionServiceStub.__name__,
            "grpc_after": "grpc" in sys.modules,
            "names": sorted(n for n in tfs_protos.MODULES if getattr(tfs_protos, n) is None),
            "same": all(getattr(tfs_protos, n) is sys.modules[full]
                        for n, full in tfs_protos.MODULES.items()),
            "bundled": all(full.startswith("tfsclient.schema.") for full in tfs_protos.MODULES.values()),
        }))
    """)
    assert json.loads(out) == {"foreign": [], "flag": False, "grpc_before": False,  # the stubs load on first use
                               "stub": "PredictionServiceStub", "grpc_after": True, "names": [], "same": True,
                               "bundled": True}


def test_from_import_of_every_module():
    out = run_py("""
        from tfsclient import protos as tfs_protos
        names = ", ".join(tfs_protos.MODULES)
        exec(f"from tfsclient.protos import {names}")
        from tfsclient.protos import predict_pb2, get_model_status_pb2, model_server_config_pb2
        predict_pb2.PredictRequest(); get_model_status_pb2.GetModelStatusRequest()
        model_server_config_pb2.ModelServerConfig()
        print(sorted(tfs_protos.MODULES) == sorted(set(dir(tfs_protos)) & set(tfs_protos.MODULES)))
    """)
    assert out.strip() == "True"


def test_protobufs_default_pool_is_left_to_tensorflow():
    # The bundled modules register in their own pool: TensorFlow's, imported later, find the names free.
    out = run_py("""
        from google.protobuf import descriptor_pool
        from tfsclient import protos as tfs_protos
        tfs_protos.tensor_pb2  # loaded on first use
        try:
            descriptor_pool.Default().FindMessageTypeByName("tensorflow.TensorProto")
            print("registered")
        except KeyError:
            print("free", tfs_protos.POOL.FindMessageTypeByName("tensorflow.TensorProto").full_name)
    """)
    assert out.split() == ["free", "tensorflow.TensorProto"]


# Both orders: tfsclient first, then TensorFlow and tensorflow-serving-api; and the other way round.
BOTH_WORK = """
    import json, sys
    import numpy as np
    result = {}
    result["constant"] = (tf.constant([1.0, 2.0]) * 2).numpy().tolist()
    # TensorFlow reads tfsclient's TensorProto (and codec's), and tfsclient takes TensorFlow's, as bytes.
    proto = tfs_protos.tensor_pb2.TensorProto(dtype=tfs_protos.types_pb2.DT_INT32)
    proto.tensor_shape.dim.add(size=3)
    proto.int_val.extend([4, 5, 6])
    result["make_ndarray"] = tf.make_ndarray(proto).tolist()
    result["make_ndarray_codec"] = tf.make_ndarray(codec.make_tensor_proto([[1.5, 2.5]])).tolist()
    made = tf.make_tensor_proto(np.ones((2, 2), np.float32))
    result["other_class"] = type(made) is not tfs_protos.tensor_pb2.TensorProto
    result["codec_reads_theirs"] = codec.make_ndarray(codec.make_tensor_proto(made)).tolist()
    request = tfs_protos.predict_pb2.PredictRequest()
    request.inputs["x"].CopyFrom(tfs_protos.tensor_pb2.TensorProto.FromString(made.SerializeToString()))
    theirs = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    result["bytes_cross"] = theirs.inputs["x"].tensor_shape.dim[0].size
    example = tfs_protos.example_pb2.Example()
    example.features.feature["a"].float_list.value.extend([1.5, 2.5])
    parsed = tf.io.parse_single_example(example.SerializeToString(),
                                        {"a": tf.io.FixedLenFeature([2], tf.float32)})
    result["parse_example"] = parsed["a"].numpy().tolist()
    result["tf_function"] = float(tf.function(lambda v: tf.reduce_sum(v * v))(tf.ones([3])))
    # TensorFlow's classes are its own, registered under its own file names, as without tfsclient.
    result["tf_files"] = [predict_pb2.PredictRequest.DESCRIPTOR.file.name,
                          type(tf.compat.v1.ConfigProto()).DESCRIPTOR.file.name]
    result["ours"] = tfs_protos.predict_pb2.PredictRequest.DESCRIPTOR.file.name
    print(json.dumps(result))
"""
BOTH_WORK_RESULT = {
    "constant": [2.0, 4.0], "make_ndarray": [4, 5, 6], "make_ndarray_codec": [[1.5, 2.5]], "other_class": True,
    "codec_reads_theirs": [[1.0, 1.0], [1.0, 1.0]], "bytes_cross": 2, "parse_example": [1.5, 2.5],
    "tf_function": 3.0, "tf_files": ["tensorflow_serving/apis/predict.proto", "tensorflow/core/protobuf/config.proto"],
    "ours": "tfsclient/schema/tensorflow_serving/apis/predict.proto",
}


@pytest.mark.parametrize("imports", [
    "from tfsclient import codec, protos as tfs_protos\nimport tensorflow as tf\n"
    "from tensorflow_serving.apis import predict_pb2",
    "import tensorflow as tf\nfrom tensorflow_serving.apis import predict_pb2\n"
    "from tfsclient import codec, protos as tfs_protos",
], ids=["tfsclient first", "tensorflow first"])
def test_tensorflow_and_tfsclient_in_one_process_in_either_order(imports):
    pytest.importorskip("tensorflow_serving")
    out = run_py(imports + "\n" + textwrap.dedent(BOTH_WORK))
    assert json.loads(out) == BOTH_WORK_RESULT


def test_request_serializes_like_tensorflow_serving_apis():
    pytest.importorskip("tensorflow_serving")
    via_tfs_protos = run_py(BUILD_REQUEST + """
import sys
from tfsclient import protos as tfs_protos
print(build_request(tfs_protos.predict_pb2, tfs_protos.tensor_pb2, tfs_protos.types_pb2))
assert "tensorflow" not in sys.modules
""")
    via_normal_imports = run_py(BUILD_REQUEST + """
from tensorflow_serving.apis import predict_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
print(build_request(predict_pb2, tensor_pb2, types_pb2))
""")
    assert via_tfs_protos.strip() == via_normal_imports.strip()
    assert len(via_tfs_protos.strip()) > 40


def test_only_protobuf_is_needed(tmp_path):
    """Only protobuf on the path, site-packages off (-S): the protos import and a request round-trips."""
    import google.protobuf
    site = os.path.dirname(os.path.dirname(os.path.dirname(google.protobuf.__file__)))
    os.symlink(os.path.join(site, "google"), tmp_path / "google")
    out = run_py("""
        import sys
        assert not any(p.endswith("site-packages") for p in sys.path), sys.path
        from tfsclient import protos
        request = protos.predict_pb2.PredictRequest()
        request.model_spec.name = "Toy"
        print(protos.predict_pb2.PredictRequest.FromString(request.SerializeToString()).model_spec.name)
    """, env={"PYTHONPATH": f"{PYTHON_DIR}{os.pathsep}{tmp_path}"}, args=("-S",))
    assert out.strip() == "Toy"


def test_the_well_known_types_the_schema_holds_are_named_and_pickle():
    # The bundled pool's Any and Int64Value are classes of their own (not google.protobuf's): named in
    # tfsclient.schema, so a program can make one and pickle it. Before, they lived in "__main__" and pickle failed.
    import pickle

    from tfsclient import schema

    spec = tfs_protos_module().model_pb2.ModelSpec(name="Toy", version=schema.Int64Value(value=1))
    assert type(spec.version) is schema.Int64Value and pickle.loads(pickle.dumps(spec.version)).value == 1
    config = tfs_protos_module().model_server_config_pb2.ModelServerConfig()
    config.custom_model_config.Pack(spec)
    assert type(config.custom_model_config) is schema.Any
    assert pickle.loads(pickle.dumps(config)).custom_model_config.TypeName() == "tensorflow.serving.ModelSpec"


def tfs_protos_module():
    from tfsclient import protos

    return protos
