"""TF Serving's gRPC API for Python programs: one Client per server, numpy in and out, typed errors.

    import tfsclient

    with tfsclient.Client("localhost:8500") as client:
        outputs = client.predict({"input_1": [[1.0, 2.0]]}, "Toy", version=1)   # {"output_1": array(...)}
        client.status("Toy")            # {"model_version_status": [{"version": "1", "state": "AVAILABLE", ...}]}

Every call goes through one place (`Client.call`): the channel the scripts use (TLS, compression, retries on
UNAVAILABLE with backoff, wait-for-ready), the deadline, and a failure as a ``ServingError`` of its code
(tfsclient.rpc_errors). The scripts make their calls through it too.

Two levels:
- the RPCs by their names, messages in and out (``Predict``, ``Classify``, ``Regress``, ``MultiInference``,
  ``GetModelMetadata``, ``GetModelStatus``, ``HandleReloadConfigRequest``): the request and response classes of
  ``tfsclient.protos``, as a grpc stub takes them;
- plain calls: ``predict``, ``status``, ``metadata``, ``classify``, ``regress``, ``multi_inference``,
  ``reload``, taking and returning numpy arrays, lists and dicts.
"""

import math
import numbers
import types

import grpc

from . import codec, output, protos, transport
from .rpc_errors import from_code, from_rpc_error

# RPC -> (service, the request's module and class in tfsclient.protos)
_RPCS = {
    "Predict": ("prediction", "predict_pb2", "PredictRequest"),
    "Classify": ("prediction", "classification_pb2", "ClassificationRequest"),
    "Regress": ("prediction", "regression_pb2", "RegressionRequest"),
    "MultiInference": ("prediction", "inference_pb2", "MultiInferenceRequest"),
    "GetModelMetadata": ("prediction", "get_model_metadata_pb2", "GetModelMetadataRequest"),
    "GetModelStatus": ("model", "get_model_status_pb2", "GetModelStatusRequest"),
    "HandleReloadConfigRequest": ("model", "model_management_pb2", "ReloadConfigRequest"),
}
_METHODS = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}


class Client:
    """A connection to one TF Serving (or compatible) server's gRPC port; a context manager that closes it.

    target: HOST:PORT or any gRPC target (dns:///host:8500, unix:///tmp/tfs.sock).
    tls: connect with TLS (implied by any of the certificate arguments); ca_cert, client_cert, client_key: PEM
    file paths; server_name: the name to check the server's certificate against.
    compression: "none", "gzip" or "deflate". retries: retry a call answered UNAVAILABLE up to this many
    times, waiting 1, 2, 4... s (never a reload). wait_for_ready: wait for a server not reachable yet.
    timeout: each call's default deadline in seconds (None: none).
    """

    def __init__(self, target="localhost:8500", *, tls=False, ca_cert=None, client_cert=None, client_key=None,
                 server_name=None, compression="none", retries=0, wait_for_ready=False, timeout=None):
        if compression not in transport.COMPRESSIONS:
            raise ValueError(f"compression: one of {', '.join(transport.COMPRESSIONS)}, not {compression!r}")
        if not isinstance(retries, numbers.Integral) or retries < 0:
            raise ValueError(f"retries: a count >= 0, not {retries!r}")
        if not isinstance(target, str) or not target:
            raise ValueError(f"target: a server address such as localhost:8500, not {target!r}")
        timeout = _seconds(timeout)
        settings = types.SimpleNamespace(server=target, tls=tls, ca_cert=ca_cert, client_cert=client_cert,
                                         client_key=client_key, server_name=server_name, compression=compression,
                                         retries=retries, wait_for_ready=wait_for_ready, attempts=1)
        self._open(settings, timeout)

    @classmethod
    def from_args(cls, args):
        """The client the scripts' flags describe (args: their argparse Namespace; -t stays the scripts')."""
        client = cls.__new__(cls)
        client._open(args, None)
        return client

    def _open(self, settings, timeout):
        self.target, self.timeout = settings.server, timeout
        self.channel = transport.channel(settings)  # InputError for unreadable certificate files
        self._stubs = {}

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the RPCs, messages in and out ------------------------------------------------------------------------

    def call(self, method, request, timeout=None):
        """The RPC `method` (e.g. "Predict") with `request`: its response, or the ServingError of its failure.
        timeout: seconds for this call (None, or inf: the client's default)."""
        if method not in _RPCS:
            raise ValueError(f"no such RPC in TF Serving's API: {method!r}")
        service, module, name = _RPCS[method]
        wanted = getattr(getattr(protos, module), name)
        if type(request) is not wanted:  # (sent as it is, another message would be read as this one)
            raise TypeError(f"{method} takes a {wanted.DESCRIPTOR.full_name} of tfsclient.protos, "
                            f"not {type(request).__name__}")
        stub = self._stubs.get(service)
        if stub is None:
            make = (protos.prediction_service_pb2_grpc.PredictionServiceStub if service == "prediction"
                    else protos.model_service_pb2_grpc.ModelServiceStub)
            stub = self._stubs.setdefault(service, make(self.channel))
        timeout = _seconds(timeout)
        try:
            return getattr(stub, method)(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def Predict(self, request, timeout=None):  # noqa: N802 (the RPC's name)
        return self.call("Predict", request, timeout)

    def Classify(self, request, timeout=None):  # noqa: N802
        return self.call("Classify", request, timeout)

    def Regress(self, request, timeout=None):  # noqa: N802
        return self.call("Regress", request, timeout)

    def MultiInference(self, request, timeout=None):  # noqa: N802
        return self.call("MultiInference", request, timeout)

    def GetModelMetadata(self, request, timeout=None):  # noqa: N802
        return self.call("GetModelMetadata", request, timeout)

    def GetModelStatus(self, request, timeout=None):  # noqa: N802
        return self.call("GetModelStatus", request, timeout)

    def HandleReloadConfigRequest(self, request, timeout=None):  # noqa: N802
        return self.call("HandleReloadConfigRequest", request, timeout)

    # -- plain calls ----------------------------------------------------------------------------------------------

    def predict(self, inputs, model, version=None, label=None, signature=None, output_filter=None, timeout=None):
        """{output name: numpy array} for `inputs`, {input name: numpy array or nested lists} (lists of Python
        floats are sent as float32, as tf.make_tensor_proto sends them: give numpy arrays for other dtypes)."""
        request = protos.predict_pb2.PredictRequest()
        _model_spec(request.model_spec, model, version, label, signature)
        if not isinstance(inputs, dict):
            raise ValueError(f"inputs: a dict of input name to array, not {type(inputs).__name__}")
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(codec.make_tensor_proto(value))
        request.output_filter.extend([output_filter] if isinstance(output_filter, str) else output_filter or ())
        response = self.Predict(request, timeout)
        return {name: codec.make_ndarray(tensor) for name, tensor in response.outputs.items()}

    def status(self, model, version=None, timeout=None):
        """GetModelStatus as a dict, as `grpcModelStatus.py --format json` prints it."""
        request = protos.get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, model, version, None, None)
        return output.to_data(self.GetModelStatus(request, timeout))

    def metadata(self, model, version=None, label=None, timeout=None):
        """GetModelMetadata (its signature_def) as a dict, the SignatureDefMap unpacked under "metadata"."""
        request = protos.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _model_spec(request.model_spec, model, version, label, None)
        return output.to_data(self.GetModelMetadata(request, timeout))

    def classify(self, examples, model, version=None, label=None, signature=None, context=None, timeout=None):
        """[[(label, score), ...] per example]; examples: a list of {feature: value or list of values}."""
        request = protos.classification_pb2.ClassificationRequest()
        _model_spec(request.model_spec, model, version, label, signature)
        _examples(request.input, examples, context)
        return _classes(self.Classify(request, timeout).result)

    def regress(self, examples, model, version=None, label=None, signature=None, context=None, timeout=None):
        """[value per example]; examples as for classify."""
        request = protos.regression_pb2.RegressionRequest()
        _model_spec(request.model_spec, model, version, label, signature)
        _examples(request.input, examples, context)
        return [r.value for r in self.Regress(request, timeout).result.regressions]

    def multi_inference(self, tasks, examples, model, version=None, label=None, context=None, timeout=None):
        """One result per task, in order: tasks is a list of ("classify" or "regress", signature name or None);
        each result is what classify or regress returns."""
        request = protos.inference_pb2.MultiInferenceRequest()
        if not tasks:
            raise ValueError("tasks: at least one (\"classify\" or \"regress\", signature name or None)")
        for kind, signature in tasks:
            if kind not in _METHODS:
                raise ValueError(f"a task is classify or regress, not {kind!r}")
            _model_spec(request.tasks.add(method_name=_METHODS[kind]).model_spec, model, version, label, signature)
        _examples(request.input, examples, context)
        response = self.MultiInference(request, timeout)
        return [_classes(r.classification_result) if kind == "classify"
                else [x.value for x in r.regression_result.regressions]
                for (kind, _), r in zip(tasks, response.results)]

    def reload(self, config, timeout=None):
        """Send a ModelServerConfig (a message, or its text format): the server then serves that and only that.
        Never retried. A ServingError when the server refuses it."""
        if isinstance(config, str):
            from google.protobuf import text_format

            try:
                config = text_format.Parse(config, protos.model_server_config_pb2.ModelServerConfig(),
                                           descriptor_pool=protos.POOL)
            except text_format.ParseError as e:
                raise ValueError(f"config: not a ModelServerConfig in text format: {e}") from None
        request = protos.model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        status = self.HandleReloadConfigRequest(request, timeout).status
        if status.error_code:
            raise from_code(status.error_code, status.error_message)


def _seconds(timeout):
    """A deadline in seconds: None (or inf) for none; ValueError for NaN or a negative one."""
    if timeout is None or (isinstance(timeout, numbers.Real) and math.isinf(timeout) and timeout > 0):
        return None
    if not isinstance(timeout, numbers.Real) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout: seconds >= 0 (or None for none), not {timeout!r}")
    return float(timeout)


def _model_spec(spec, model, version, label, signature):
    if not isinstance(model, str) or not model:
        raise ValueError(f"model: a model name, not {model!r}")
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    if label is not None and not isinstance(label, str):
        raise ValueError(f"label: a version label such as \"stable\", not {label!r}")
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    if signature:
        spec.signature_name = signature


def _examples(message, examples, context):
    made = [_example(features, f"example {i}") for i, features in enumerate(examples)]
    if context is not None:
        message.example_list_with_context.context.CopyFrom(_example(context, "context"))
        message.example_list_with_context.examples.extend(made)
    else:
        message.example_list.examples.extend(made)


def _example(features, where):
    """A tf.Example of Python (or numpy) values, each feature typed by its values, never by reading text: str and
    bytes are bytes features ("02139" stays "02139"), floats float, ints and bools int64 (the scripts read
    `age=31` from text, and infer)."""
    from . import tf_examples

    if not isinstance(features, dict):
        raise ValueError(f"{where}: a dict of feature name to a value or a list of values, not {features!r}")
    plain, kinds = {}, {}
    for name, raw in features.items():
        values = [v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v
                  for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
        plain[name] = values
        if any(isinstance(v, (str, bytes)) for v in values):
            kinds[name] = "bytes"
        elif any(isinstance(v, float) for v in values):
            kinds[name] = "float"
        elif values:
            kinds[name] = "int"
    return tf_examples.make_example(plain, kinds, where)


def _classes(result):
    return [[(c.label, c.score) for c in classifications.classes] for classifications in result.classifications]
