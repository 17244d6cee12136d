"""tfsclient.protos: the API protos without the TensorFlow runtime, and a real TF still importable after.

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


def test_import_does_not_start_tensorflow():
    out = run_py("""
        import json, sys
        from tfsclient import codec, protos as tfs_protos
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        print(json.dumps({
            "runtime": [m for m in loaded if m.startswith(("tensorflow.python", "tensorflow._api"))],
            "tensorflow": "tensorflow" in sys.modules,
            # only proto modules and their (empty) packages, from tensorflow/core and /compiler
            "not_protos": [m for m in loaded if m.split(".")[1] not in ("core", "compiler") or not (
                m.endswith("_pb2") or hasattr(sys.modules[m], "__path__"))],
            "flag": tfs_protos.tensorflow_runtime_loaded(),
            "grpc_before": "grpc" in sys.modules,
            "stub": tfs_protos.prediction_service_pb2_grpc.PredictionServiceStub.__name__,
            "grpc_after": "grpc" in sys.modules,
            "names": sorted(n for n in tfs_protos.MODULES if getattr(tfs_protos, n) is None),
            "same": all(getattr(tfs_protos, n) is sys.modules[full]
                        for n, full in tfs_protos.MODULES.items()),
        }))
    """)
    result = json.loads(out)
    assert result["runtime"] == []
    assert result["tensorflow"] is False
    assert result["not_protos"] == []
    assert result["flag"] is False
    assert result["grpc_before"] is False  # the stubs (and grpc) load on first use
    assert result["stub"] == "PredictionServiceStub"
    assert result["grpc_after"] is True
    assert result["names"] == []
    assert result["same"] is True


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


def test_real_tensorflow_works_afterwards():
    out = run_py("""
        import json, sys
        import numpy as np
        from tfsclient import codec, protos as tfs_protos
        assert "tensorflow" not in sys.modules
        import tensorflow as tf
        assert tfs_protos.tensorflow_runtime_loaded()
        result = {}
        result["constant"] = (tf.constant([1.0, 2.0]) * 2).numpy().tolist()
        # make_ndarray reads a TensorProto built through tfs_protos, and codec's.
        proto = tfs_protos.tensor_pb2.TensorProto(dtype=tfs_protos.types_pb2.DT_INT32)
        proto.tensor_shape.dim.add(size=3)
        proto.int_val.extend([4, 5, 6])
        result["make_ndarray"] = tf.make_ndarray(proto).tolist()
        result["make_ndarray_codec"] = tf.make_ndarray(codec.make_tensor_proto([[1.5, 2.5]])).tolist()
        # TF's protos are the very classes tfs_protos exposes.
        made = tf.make_tensor_proto(np.ones((2, 2), np.float32))
        result["same_class"] = type(made) is tfs_protos.tensor_pb2.TensorProto
        request = tfs_protos.predict_pb2.PredictRequest()
        request.inputs["x"].CopyFrom(made)
        result["copy_from"] = request.inputs["x"].tensor_shape.dim[0].size
        result["config_class"] = type(tf.compat.v1.ConfigProto()) is tfs_protos.config_pb2.ConfigProto
        example = tfs_protos.example_pb2.Example()
        example.features.feature["a"].float_list.value.extend([1.5, 2.5])
        parsed = tf.io.parse_single_example(example.SerializeToString(),
                                            {"a": tf.io.FixedLenFeature([2], tf.float32)})
        result["parse_example"] = parsed["a"].numpy().tolist()
        result["tf_function"] = float(tf.function(lambda v: tf.reduce_sum(v * v))(tf.ones([3])))
        result["tf_file"] = sys.modules["tensorflow"].__file__.endswith("__init__.py")
        print(json.dumps(result))
    """)
    result = json.loads(out)
    assert result == {
        "constant": [2.0, 4.0], "make_ndarray": [4, 5, 6], "make_ndarray_codec": [[1.5, 2.5]],
        "same_class": True, "copy_from": 2, "config_class": True, "parse_example": [1.5, 2.5],
        "tf_function": 3.0, "tf_file": True,
    }


def test_when_tensorflow_is_already_imported():
    out = run_py("""
        import sys
        import tensorflow as tf
        from tfsclient import protos as tfs_protos
        from tensorflow.core.framework import tensor_pb2
        print(tfs_protos.tensor_pb2 is tensor_pb2, sys.modules["tensorflow"] is tf,
              type(tf.make_tensor_proto([1.0, 2.0])) is tfs_protos.tensor_pb2.TensorProto)
    """)
    assert out.split() == ["True", "True", "True"]


def test_request_serializes_like_normal_imports():
    via_tfs_protos = run_py(BUILD_REQUEST + """
import sys
from tfsclient import protos as tfs_protos
print(build_request(tfs_protos.predict_pb2, tfs_protos.tensor_pb2, tfs_protos.types_pb2))
assert "tensorflow.python" not in sys.modules
""")
    via_normal_imports = run_py(BUILD_REQUEST + """
from tensorflow_serving.apis import predict_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
print(build_request(predict_pb2, tensor_pb2, types_pb2))
""")
    assert via_tfs_protos.strip() == via_normal_imports.strip()
    assert len(via_tfs_protos.strip()) > 40


def _site_packages():
    import google.protobuf
    import tensorflow_serving
    return (os.path.dirname(os.path.dirname(os.path.dirname(google.protobuf.__file__))),
            os.path.dirname(tensorflow_serving.__file__))


@pytest.mark.parametrize("present, message", [
    (("google", "tensorflow_serving"), "pip install tensorflow"),
    (("google",), "pip install tensorflow-serving-api"),
])
def test_clear_error_without_tensorflow_or_serving_api(tmp_path, present, message):
    """Only protobuf (and maybe tensorflow-serving-api) on the path, site-packages off (-S)."""
    site, serving = _site_packages()
    sources = {"google": os.path.join(site, "google"), "tensorflow_serving": serving}
    for name in present:
        os.symlink(sources[name], tmp_path / name)
    out = run_py("""
        import sys
        assert not any(p.endswith("site-packages") for p in sys.path), sys.path
        try:
            from tfsclient import protos  # noqa: F401
        except ImportError as e:
            print("ImportError:", e)
            print("leftover:", "tensorflow" in sys.modules)
        else:
            print("imported")
    """, env={"PYTHONPATH": f"{PYTHON_DIR}{os.pathsep}{tmp_path}"}, args=("-S",))
    assert out.startswith("ImportError:"), out
    assert message in out
    assert "leftover: False" in out
