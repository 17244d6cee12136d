"""The gRPC services, on the servicers generated in tensorflow-serving-api."""

import contextlib
import functools
import logging
import time

import grpc
from tensorflow_serving.apis import (get_model_status_pb2, inference_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from . import deadlines, inference, status, wire
from . import servable as servable_module
from .metrics import METRICS

log = logging.getLogger("tensorflow_serving.model_servers")


class MalformedRequest:
    """What a request whose bytes do not parse deserializes to: `rpc` answers it INVALID_ARGUMENT.

    gRPC Python answers a request its deserializer raises on with INTERNAL "Exception deserializing
    request!" (C++ gRPC, hence TF Serving, with INTERNAL too); a client's garbage is its own error.
    """

    def __init__(self, message):
        self.message = message


def _lenient(deserializer):
    """`deserializer` (a generated Message.FromString) that returns a MalformedRequest instead of raising."""
    if deserializer is None or getattr(deserializer, "lenient", False):
        return deserializer
    message_class = getattr(deserializer, "message_class", None) or getattr(deserializer, "__self__", None)
    name = message_class.DESCRIPTOR.full_name if hasattr(message_class, "DESCRIPTOR") else "request message"

    def deserialize(data):
        try:
            return deserializer(data)
        except Exception as e:  # DecodeError; whatever the parser raises, the server answers and goes on
            reason = str(e)
            if reason.startswith("Error parsing message with type"):  # "...'name': Wire format was corrupt"
                reason = reason.rsplit("': ", 1)[-1]
            return MalformedRequest(f"Could not parse the request ({len(data)} bytes) as a {name}: {reason}")

    deserialize.lenient = True
    return deserialize


# Predict reads and writes its large tensors without protobuf's copies of them (wire.py).
_CODECS = {"/tensorflow.serving.PredictionService/Predict":
           (wire.parse_predict_request, wire.serialize_predict_response)}


def _lenient_handler(handler, method):
    if handler is None or handler.request_deserializer is None:
        return handler
    deserializer, serializer = _CODECS.get(method, (handler.request_deserializer, handler.response_serializer))
    return handler._replace(request_deserializer=_lenient(deserializer), response_serializer=serializer)


class _LenientGenericHandler(grpc.GenericRpcHandler):
    """A generated service's handler whose methods deserialize with `_lenient` (built once per method)."""

    def __init__(self, inner):
        self._inner = inner
        self._handlers = {}

    def service(self, handler_call_details):
        handler = self._handlers.get(handler_call_details.method)
        if handler is None:
            handler = _lenient_handler(self._inner.service(handler_call_details), handler_call_details.method)
            if handler is not None:  # only the service's own methods: a client's made-up names are not kept
                self._handlers[handler_call_details.method] = handler
        return handler


class _Registrar:
    """Stands for the grpc.Server while a generated add_*Servicer_to_server runs, making its methods lenient."""

    def __init__(self, server):
        self._server = server

    def add_generic_rpc_handlers(self, handlers):
        self._server.add_generic_rpc_handlers(tuple(_LenientGenericHandler(h) for h in handlers))

    def add_registered_method_handlers(self, service_name, method_handlers):  # newer generated code
        self._server.add_registered_method_handlers(service_name, {
            name: _lenient_handler(h, f"/{service_name}/{name}") for name, h in method_handlers.items()})

    def __getattr__(self, name):
        return getattr(self._server, name)


def rpc(method):
    """Answer a ServingError with its code and message; anything else is INTERNAL, and logged."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        started, code, response = time.perf_counter(), grpc.StatusCode.OK, None
        try:
            if isinstance(request, MalformedRequest):
                raise status.invalid_argument(request.message)
            response = method(self, request, context)
            return response
        except status.ServingError as e:
            code = e.code
            log.debug("%s failed: %s", method.__name__, e.message)
            context.abort(e.code, e.grpc_message())
        except Exception as e:  # the server keeps serving whatever one request does
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            if method.__name__ in _INFERENCE_APIS:
                METRICS.request(_model_name(request), method.__name__, getattr(context, "entrypoint", "GRPC"),
                                code.name, time.perf_counter() - started, _version(response))

    return wrapper


_INFERENCE_APIS = frozenset({"Predict", "Classify", "Regress", "MultiInference"})


def _model_name(request):
    if isinstance(request, MalformedRequest):
        return ""
    if isinstance(request, inference_pb2.MultiInferenceRequest):
        return request.tasks[0].model_spec.name if request.tasks else ""
    return request.model_spec.name


def _version(response):
    """The version that answered (the first task's, for MultiInference); "" for a failure."""
    if response is None:
        return ""
    spec = response.results[0].model_spec if isinstance(response, inference_pb2.MultiInferenceResponse) \
        and response.results else getattr(response, "model_spec", None)
    return spec.version.value if spec is not None and spec.HasField("version") else ""


def _require_model_spec(request):
    if not request.HasField("model_spec"):
        raise status.invalid_argument("Missing ModelSpec")


def run_timeout_for(context):
    """The session-run bound of a gRPC call (its deadline, rounded up to a step); none for REST or no deadline."""
    remaining = getattr(context, "time_remaining", None)
    seconds = remaining() if callable(remaining) else None
    step = None if seconds is None else deadlines.step_ms(seconds * 1000)
    return contextlib.nullcontext() if step is None else servable_module.run_timeout(step)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    def _infer(self, api, request, spec, run, context):
        """Run `run(servable, request)` on the servable `spec` asks for, then log it (if configured).

        Over gRPC, the call's deadline bounds its session runs, as TF Serving puts it in their RunOptions
        (model_servers/prediction_service_impl.cc, enforce_session_run_timeout: on unless on a TPU): TensorFlow
        cancels a run that outlives its client, and the thread is free again. REST calls bring their own
        bound (--rest_api_timeout_in_ms)."""
        with self.core.handle(spec) as servable, run_timeout_for(context):
            response = run(servable, request)
        logged_spec = response.results[0].model_spec if api == "MultiInference" else response.model_spec
        self.core.request_logger.log(api, spec.name, request, response, logged_spec)
        return response

    @rpc
    def Predict(self, request, context):
        _require_model_spec(request)
        if isinstance(request, wire.PredictRequestView):
            request.keep = self.core.request_logger.logs(request.model_spec.name)
        return self._infer("Predict", request, request.model_spec,
                           lambda servable, r: servable.predict(r, r.model_spec.name), context)

    @rpc
    def GetModelMetadata(self, request, context):
        _require_model_spec(request)
        if not request.metadata_field:
            raise status.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise status.invalid_argument(f"Metadata field {field} is not supported")
        with self.core.handle(request.model_spec) as servable:
            return servable.metadata(request)

    @rpc
    def Classify(self, request, context):
        _require_model_spec(request)
        return self._infer("Classify", request, request.model_spec, inference.classify, context)

    @rpc
    def Regress(self, request, context):
        _require_model_spec(request)
        return self._infer("Regress", request, request.model_spec, inference.regress, context)

    @rpc
    def MultiInference(self, request, context):
        # The servable is the first task's; no task at all reads as an empty ModelSpec (as TF Serving).
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        return self._infer("MultiInference", request, spec, inference.multi_inference, context)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core):
        self.core = core

    @rpc
    def GetModelStatus(self, request, context):
        _require_model_spec(request)
        name = request.model_spec.name
        states = self.core.manager.states(name)
        response = get_model_status_pb2.GetModelStatusResponse()
        if request.model_spec.WhichOneof("version_choice") == "version":  # a label is ignored, as in TF Serving
            version = request.model_spec.version.value
            if version not in states:
                raise status.not_found(f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        elif not states:
            raise status.not_found(f"Could not find any versions of model {name}")
        for version in sorted(states, reverse=True):
            state, error = states[version]
            entry = response.model_version_status.add(version=version, state=state)
            status.fill_status_proto(entry.status, error)
        return response

    @rpc
    def HandleReloadConfigRequest(self, request, context):
        config = request.config
        if config.WhichOneof("config") == "model_config_list":
            for index, model in enumerate(config.model_config_list.config):
                log.info("\nConfig entry\n\tindex : %d\n\tpath : %s\n\tname : %s\n\tplatform : %s",
                         index, model.base_path, model.name, model.model_platform)
        try:
            self.core.reload(config)
        except status.ServingError as e:
            log.error("ReloadConfig failed: %s", e.message)
            raise
        response = model_management_pb2.ReloadConfigResponse()
        status.fill_status_proto(response.status, None)
        return response


_GENERATED_ADD = {
    PredictionService: (prediction_service_pb2_grpc, "add_PredictionServiceServicer_to_server"),
    ModelService: (model_service_pb2_grpc, "add_ModelServiceServicer_to_server"),
}


def add_to_server(core, server):
    """Register PredictionService and ModelService on `server` with the generated code's method table;
    a request whose bytes do not parse is answered INVALID_ARGUMENT (see MalformedRequest)."""
    registrar = _Registrar(server)
    for servicer_class, (module, name) in _GENERATED_ADD.items():
        getattr(module, name)(servicer_class(core), registrar)
