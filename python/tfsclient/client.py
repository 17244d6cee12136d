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

import types

import grpc

from . import codec, output, protos, transport
from .rpc_errors import from_code, from_rpc_error

_PREDICTION = ("Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata")
_MODEL = ("GetModelStatus", "HandleReloadConfigRequest")
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
        if retries < 0:
            raise ValueError(f"retries: a count >= 0, not {retries!r}")
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
        """The RPC `method` (e.g. "Predict") with `request`: its response, or the ServingError of its failure."""
        if method in _PREDICTION:
            service = "prediction"
            make = protos.prediction_service_pb2_grpc.PredictionServiceStub
        elif method in _MODEL:
            service, make = "model", protos.model_service_pb2_grpc.ModelServiceStub
        else:
            raise ValueError(f"no such RPC in TF Serving's API: {method!r}")
        stub = self._stubs.get(service) or self._stubs.setdefault(service, make(self.channel))
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
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(codec.make_tensor_proto(value))
        request.output_filter.extend(output_filter or ())
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

            config = text_format.Parse(config, protos.model_server_config_pb2.ModelServerConfig(),
                                       descriptor_pool=protos.POOL)
        request = protos.model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        status = self.HandleReloadConfigRequest(request, timeout).status
        if status.error_code:
            raise from_code(status.error_code, status.error_message)


def _model_spec(spec, model, version, label, signature):
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    if signature:
        spec.signature_name = signature


def _examples(message, examples, context):
    from . import tf_examples

    made = [tf_examples.make_example(features, {}, f"example {i}") for i, features in enumerate(examples)]
    if context is not None:
        message.example_list_with_context.context.CopyFrom(tf_examples.make_example(context, {}, "context"))
        message.example_list_with_context.examples.extend(made)
    else:
        message.example_list.examples.extend(made)


def _classes(result):
    return [[(c.label, c.score) for c in classifications.classes] for classifications in result.classifications]
