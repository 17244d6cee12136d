"""TensorFlow Serving's API protos, imported without starting the TensorFlow runtime.

The generated modules of tensorflow-serving-api (``tensorflow_serving.apis.*_pb2``)
import the TensorFlow protos (``tensorflow.core.framework.tensor_pb2`` and a few
more), which live *inside* the ``tensorflow`` package. A plain import of them
therefore runs ``tensorflow/__init__.py``, i.e. loads the whole TF runtime
(~2.4 s and ~550 MB). This module imports the same generated modules under their
real names while the ``tensorflow`` package itself is never executed: for the
duration of the imports, ``sys.modules["tensorflow"]`` holds a bare, unexecuted
module made from the real package's spec (so its ``__path__`` is the installed
package directory); afterwards it is removed again, leaving only the imported
``tensorflow.core.*`` / ``tensorflow.compiler.*`` proto submodules. A later
``import tensorflow`` in the same process then runs the real TensorFlow as
usual, and it reuses those very proto modules, so a ``TensorProto`` made here is
the class ``tf.make_tensor_proto`` returns and ``tf.make_ndarray`` reads. If
TensorFlow is already imported, the modules are simply imported normally.

Usage::

    from tfsclient.protos import predict_pb2, prediction_service_pb2_grpc, tensor_pb2
    # or
    from tfsclient import protos
    request = protos.predict_pb2.PredictRequest()

Attributes, each the real generated module:

* tensorflow_serving.apis: ``predict_pb2``, ``classification_pb2``,
  ``regression_pb2``, ``inference_pb2``, ``input_pb2``, ``get_model_status_pb2``,
  ``get_model_metadata_pb2``, ``model_management_pb2``, ``model_pb2``,
  ``prediction_log_pb2``, ``logging_pb2``, ``session_service_pb2``,
  ``status_pb2``, ``prediction_service_pb2``, ``model_service_pb2``;
* their gRPC stubs ``prediction_service_pb2_grpc`` and ``model_service_pb2_grpc``,
  imported on first use (they import ``grpc``; a script that only builds protos
  does not pay for it);
* tensorflow_serving.config: ``model_server_config_pb2``, ``platform_config_pb2``,
  ``logging_config_pb2``, ``log_collector_config_pb2``,
  ``file_system_storage_path_source_pb2``;
* TensorFlow's own: ``tensor_pb2``, ``types_pb2``, ``tensor_shape_pb2``,
  ``example_pb2``, ``feature_pb2``, ``meta_graph_pb2``, ``config_pb2``.

``MODULES`` maps every attribute name above to its full module name.

Importing this module raises ImportError with an explanation when
tensorflow-serving-api is missing, or when the ``tensorflow`` package (which
ships the TensorFlow protos; ``tensorflow-cpu`` will do) is not installed.

Not thread-safe while it is being imported: import it at the top of a script
(as usual), not concurrently with another thread's first ``import tensorflow``.
"""

import importlib
import importlib.util
import sys

_APIS = "tensorflow_serving.apis."
_CONFIG = "tensorflow_serving.config."

#: attribute name -> full module name; the *_pb2_grpc ones are imported lazily.
MODULES = {
    # TensorFlow's protos (inside the tensorflow package).
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "feature_pb2": "tensorflow.core.example.feature_pb2",
    "example_pb2": "tensorflow.core.example.example_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
    "config_pb2": "tensorflow.core.protobuf.config_pb2",
    # TensorFlow Serving's API.
    "model_pb2": _APIS + "model_pb2",
    "status_pb2": _APIS + "status_pb2",
    "input_pb2": _APIS + "input_pb2",
    "predict_pb2": _APIS + "predict_pb2",
    "classification_pb2": _APIS + "classification_pb2",
    "regression_pb2": _APIS + "regression_pb2",
    "inference_pb2": _APIS + "inference_pb2",
    "get_model_metadata_pb2": _APIS + "get_model_metadata_pb2",
    "get_model_status_pb2": _APIS + "get_model_status_pb2",
    "model_management_pb2": _APIS + "model_management_pb2",
    "session_service_pb2": _APIS + "session_service_pb2",
    "logging_pb2": _APIS + "logging_pb2",
    "prediction_log_pb2": _APIS + "prediction_log_pb2",
    "prediction_service_pb2": _APIS + "prediction_service_pb2",
    "model_service_pb2": _APIS + "model_service_pb2",
    # TensorFlow Serving's config.
    "file_system_storage_path_source_pb2": _CONFIG + "file_system_storage_path_source_pb2",
    "log_collector_config_pb2": _CONFIG + "log_collector_config_pb2",
    "logging_config_pb2": _CONFIG + "logging_config_pb2",
    "platform_config_pb2": _CONFIG + "platform_config_pb2",
    "model_server_config_pb2": _CONFIG + "model_server_config_pb2",
    # gRPC stubs (import grpc): loaded on first attribute access.
    "prediction_service_pb2_grpc": _APIS + "prediction_service_pb2_grpc",
    "model_service_pb2_grpc": _APIS + "model_service_pb2_grpc",
}

_LAZY = frozenset(name for name in MODULES if name.endswith("_grpc"))

__all__ = sorted(MODULES) + ["MODULES", "tensorflow_runtime_loaded"]

_NO_TENSORFLOW = (
    "tfs_protos: the TensorFlow protos (tensorflow.core.framework.tensor_pb2 etc.), which "
    "tensorflow-serving-api's modules import, ship inside the 'tensorflow' pip package, "
    "and it is not installed: pip install tensorflow (or tensorflow-cpu). The TensorFlow "
    "runtime is not started by the client scripts; only its proto modules are used.")
_NO_SERVING = (
    "tfs_protos: tensorflow-serving-api is not installed (no module {name!r}): "
    "pip install tensorflow-serving-api")


def tensorflow_runtime_loaded():
    """True if the real TensorFlow runtime has been imported in this process."""
    return "tensorflow.python" in sys.modules


def _import(full_names):
    """Import the modules full_names (in order) without executing tensorflow/__init__.py."""
    if any(name.startswith("tensorflow_serving.") for name in full_names) and (
            "tensorflow_serving" not in sys.modules
            and importlib.util.find_spec("tensorflow_serving") is None):
        raise ImportError(_NO_SERVING.format(name="tensorflow_serving"), name="tensorflow_serving")
    placeholder = None
    if "tensorflow" not in sys.modules:
        try:
            spec = importlib.util.find_spec("tensorflow")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(_NO_TENSORFLOW, name="tensorflow")
        # A bare module object with the real package's __spec__, __path__ and
        # __file__; its __init__.py is never executed.
        placeholder = importlib.util.module_from_spec(spec)
        sys.modules["tensorflow"] = placeholder
    try:
        return [importlib.import_module(name) for name in full_names]
    except ModuleNotFoundError as e:
        if e.name and (e.name == "tensorflow_serving" or e.name.startswith("tensorflow_serving.")):
            raise ImportError(_NO_SERVING.format(name=e.name), name=e.name) from e
        if e.name and e.name.startswith("tensorflow."):
            raise ImportError(
                f"tfs_protos: the installed tensorflow package has no module {e.name!r}, which "
                "tensorflow-serving-api needs: install matching versions of tensorflow and "
                "tensorflow-serving-api", name=e.name) from e
        raise
    finally:
        if placeholder is not None and sys.modules.get("tensorflow") is placeholder:
            del sys.modules["tensorflow"]


def __getattr__(name):
    """Import the lazy gRPC stub modules on first use (PEP 562)."""
    if name in _LAZY:
        (module,) = _import([MODULES[name]])
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(MODULES))


_EAGER = [name for name in MODULES if name not in _LAZY]
globals().update(zip(_EAGER, _import([MODULES[name] for name in _EAGER])))
