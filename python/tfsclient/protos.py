"""TF Serving's API protos, bundled with tfsclient: no TensorFlow, no tensorflow-serving-api.

The modules are protoc's, made from tfsclient's own schema (``tfsclient/schema``, see its docstring): the same
packages, message names, field numbers and services as TF Serving's, so they speak its wire exactly. They register
in a descriptor pool of their own (``POOL``), so a process may also import TensorFlow or tensorflow-serving-api, in
either order: their classes and ours are different classes of the same messages, and cross over as bytes::

    from tfsclient.protos import predict_pb2, prediction_service_pb2_grpc, tensor_pb2
    # or
    from tfsclient import protos
    request = protos.predict_pb2.PredictRequest()

Attributes, each a generated module, imported on first use:

* tensorflow_serving.apis: ``predict_pb2``, ``classification_pb2``, ``regression_pb2``, ``inference_pb2``,
  ``input_pb2``, ``get_model_status_pb2``, ``get_model_metadata_pb2``, ``model_management_pb2``, ``model_pb2``,
  ``prediction_log_pb2``, ``logging_pb2``, ``session_service_pb2``, ``status_pb2``, ``prediction_service_pb2``,
  ``model_service_pb2``;
* their gRPC stubs ``prediction_service_pb2_grpc`` and ``model_service_pb2_grpc`` (they import ``grpc``);
* tensorflow_serving.config: ``model_server_config_pb2``, ``platform_config_pb2``, ``logging_config_pb2``,
  ``log_collector_config_pb2``, ``file_system_storage_path_source_pb2``;
* TensorFlow's: ``tensor_pb2``, ``types_pb2``, ``tensor_shape_pb2``, ``example_pb2``, ``feature_pb2``,
  ``meta_graph_pb2``, ``config_pb2``.

``MODULES`` maps every attribute name above to its full module name. Text or JSON printing and parsing of a
message that may hold an ``Any`` passes ``descriptor_pool=POOL``.
"""

import importlib
import sys

from .schema import POOL

_SCHEMA = "tfsclient.schema."
_APIS = _SCHEMA + "tensorflow_serving.apis."
_CONFIG = _SCHEMA + "tensorflow_serving.config."

#: attribute name -> full module name; the *_pb2_grpc ones are imported lazily.
MODULES = {
    # TensorFlow's messages that TF Serving's reach.
    "types_pb2": _SCHEMA + "tensorflow.core.framework.types_pb2",
    "tensor_shape_pb2": _SCHEMA + "tensorflow.core.framework.tensor_shape_pb2",
    "tensor_pb2": _SCHEMA + "tensorflow.core.framework.tensor_pb2",
    "feature_pb2": _SCHEMA + "tensorflow.core.example.feature_pb2",
    "example_pb2": _SCHEMA + "tensorflow.core.example.example_pb2",
    "meta_graph_pb2": _SCHEMA + "tensorflow.core.protobuf.meta_graph_pb2",
    "config_pb2": _SCHEMA + "tensorflow.core.protobuf.config_pb2",
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


__all__ = sorted(MODULES) + ["MODULES", "POOL", "tensorflow_runtime_loaded"]


def tensorflow_runtime_loaded():
    """True if the TensorFlow runtime has been imported in this process (the scripts never do)."""
    return "tensorflow.python" in sys.modules


def __getattr__(name):
    """Import each module on first use (PEP 562; `from tfsclient.protos import predict_pb2` too): a script loads
    the ones it needs (a Predict: 15 of the schema's 44 files)."""
    if name in MODULES:
        module = importlib.import_module(MODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(MODULES))

