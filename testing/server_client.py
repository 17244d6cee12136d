"""Request builders and stubs for the server tests (plain tensorflow_serving stubs, as any client)."""

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from server.servables import tensors

GUIDE_INPUT = [[1.0, 2.0], [1.0, 3.0]]


class Client:
    def __init__(self, target):
        self.channel = grpc.insecure_channel(target)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def predict(self, model="Toy", version=None, label=None, signature="serving_default", inputs=None,
                output_filter=(), timeout=30):
        request = predict_pb2.PredictRequest()
        spec(request.model_spec, model, version, label, signature)
        if inputs is None:
            inputs = {"input_1": np.array(GUIDE_INPUT, np.float32)}
        for alias, value in inputs.items():
            proto = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
            request.inputs[alias].CopyFrom(proto)
        request.output_filter.extend(output_filter)
        return self.predictions.Predict(request, timeout=timeout)

    def metadata(self, model="Toy", version=None, label=None, fields=("signature_def",)):
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        spec(request.model_spec, model, version, label)
        request.metadata_field.extend(fields)
        return self.predictions.GetModelMetadata(request, timeout=30)

    def status(self, model="Toy", version=None, label=None):
        request = get_model_status_pb2.GetModelStatusRequest()
        spec(request.model_spec, model, version, label)
        return self.models.GetModelStatus(request, timeout=30)

    def states(self, model):
        """{version: state name} from GetModelStatus."""
        states = get_model_status_pb2.ModelVersionStatus.State
        return {s.version: states.Name(s.state) for s in self.status(model).model_version_status}

    def reload(self, config, timeout=120):
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        return self.models.HandleReloadConfigRequest(request, timeout=timeout)


def spec(model_spec, model, version=None, label=None, signature=None):
    model_spec.name = model
    if version is not None:
        model_spec.version.value = version
    if label is not None:
        model_spec.version_label = label
    if signature is not None:
        model_spec.signature_name = signature


def values(response, alias):
    return tf.make_ndarray(response.outputs[alias]).ravel().tolist()


def model_config(*models):
    """ModelServerConfig from (name, base_path[, policy dict[, labels]]) tuples."""
    config = model_server_config_pb2.ModelServerConfig()
    for entry in models:
        name, base_path = entry[:2]
        model = config.model_config_list.config.add(name=name, base_path=str(base_path),
                                                    model_platform="tensorflow")
        policy = entry[2] if len(entry) > 2 else None
        if policy == "all":
            model.model_version_policy.all.SetInParent()
        elif isinstance(policy, int):
            model.model_version_policy.latest.num_versions = policy
        elif policy:
            model.model_version_policy.specific.versions.extend(policy)
        for label, version in (entry[3] if len(entry) > 3 else {}).items():
            model.version_labels[label] = version
    return config


def with_request_log(config, prefix, rate, kind="file"):
    """`config` (a ModelServerConfig) with every model logging its requests to `prefix` at `rate`."""
    for model in config.model_config_list.config:
        model.logging_config.log_collector_config.type = kind
        model.logging_config.log_collector_config.filename_prefix = str(prefix)
        model.logging_config.sampling_config.sampling_rate = rate
    return config


def rpc_error(call, *args, **kwargs):
    """The (code name, details) of a call expected to fail."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as e:
        return e.code().name, e.details()
    raise AssertionError("the call succeeded")


def tensor_proto(array, as_tensor_content=False):
    """A session output as the server encodes it (servables.tensors.write_proto) in a TensorProto of its own."""
    proto = tensor_pb2.TensorProto()
    tensors.write_proto(proto, array, as_tensor_content)
    return proto
