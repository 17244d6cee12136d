"""The gRPC services, on the servicers generated in tensorflow-serving-api: adapters around the Predictor.

Each call is the Predictor's (model_servers/predictor.py), given the call's deadline; a ServingError it
raises becomes the call's status here, its message cut as TF Serving cuts gRPC messages. A request whose
bytes do not parse is answered INVALID_ARGUMENT, and Predict reads and writes its large tensors without
protobuf's copies of them (wire.py).
"""

import asyncio
import functools
import logging
import math
import time

import grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from ...servables.predict_io import Prediction
from ...util import status
from ..predictor import INFERENCE_APIS
from . import wire

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
           (wire.parse_predict_request, wire.serialize_prediction)}


def _lenient_handler(handler, method, replacements):
    if handler is None or handler.request_deserializer is None:
        return handler
    deserializer, serializer = _CODECS.get(method, (handler.request_deserializer, handler.response_serializer))
    handler = handler._replace(request_deserializer=_lenient(deserializer), response_serializer=serializer)
    return handler._replace(unary_unary=replacements[method]) if method in replacements else handler


class _LenientGenericHandler(grpc.GenericRpcHandler):
    """A generated service's handler whose methods deserialize with `_lenient` (built once per method)."""

    def __init__(self, inner, replacements):
        self._inner, self._replacements = inner, replacements
        self._handlers = {}

    def service(self, handler_call_details):
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = _lenient_handler(self._inner.service(handler_call_details), method, self._replacements)
            if handler is not None:  # only the service's own methods: a client's made-up names are not kept
                self._handlers[method] = handler
        return handler


class _Registrar:
    """Stands for the grpc.Server while a generated add_*Servicer_to_server runs, making its methods lenient;
    `replacements` maps a method's full name to the behaviour that serves it instead of the servicer's."""

    def __init__(self, server, replacements):
        self._server, self._replacements = server, replacements

    def add_generic_rpc_handlers(self, handlers):
        self._server.add_generic_rpc_handlers(tuple(_LenientGenericHandler(h, self._replacements)
                                                    for h in handlers))

    def add_registered_method_handlers(self, service_name, method_handlers):  # newer generated code
        self._server.add_registered_method_handlers(service_name, {
            name: _lenient_handler(h, f"/{service_name}/{name}", self._replacements)
            for name, h in method_handlers.items()})

    def __getattr__(self, name):
        return getattr(self._server, name)


# TF Serving cuts a gRPC error message past this many bytes (util/grpc_status_util.cc); REST's are whole.
MESSAGE_LIMIT = 1024


def grpc_message(error):
    """A ServingError's message as a gRPC status carries it: its first MESSAGE_LIMIT bytes of UTF-8 (a character
    cut in two is left out: a status message is text) and "...TRUNCATED"."""
    data = error.message.encode("utf-8", "surrogateescape")
    if len(data) > MESSAGE_LIMIT:
        return data[:MESSAGE_LIMIT].decode("utf-8", "ignore") + "...TRUNCATED"
    return error.message


class Admission:
    """Whether a gRPC call is taken: every call until a stop closes it, then none (UNAVAILABLE).

    At a stop, gRPC's core cancels the calls it has received but the server has not taken yet (gRPC Python
    takes one at a time), and their clients see CANCELLED, which retry policies do not retry. So a stop first
    closes this gate and, if calls came in the last SETTLE_SECONDS, waits that long before gRPC's stop: the
    calls queued in the core are taken and answered UNAVAILABLE ("Server is shutting down"), and clients that
    back off before they retry stop sending. With 12 clients looping small Predicts, a batching server's stop
    cancelled 7-10 of their calls, the thread-pool server's 1-2; with the gate, none."""

    SETTLE_SECONDS = 0.2

    def __init__(self):
        self.closed = False
        self._last_call = -math.inf  # when a call last came in (time.monotonic)

    def admit(self):
        self._last_call = time.monotonic()
        return not self.closed

    def close(self):
        """Refuse every call from now on; return once the calls gRPC's core held have had time to be taken."""
        self.closed = True
        if time.monotonic() - self._last_call < self.SETTLE_SECONDS:
            time.sleep(self.SETTLE_SECONDS)


SHUTTING_DOWN = "Server is shutting down"


def rpc(method):
    """Answer a ServingError with its code and message; anything else is INTERNAL, and logged. A call that
    comes once the server's Admission is closed is answered UNAVAILABLE."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        if not self.admission.admit():
            context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        try:
            if isinstance(request, MalformedRequest):
                raise status.invalid_argument(request.message)
            return method(self, request, context)
        except Exception as e:  # the server keeps serving whatever one request does
            context.abort(*_failure(method.__name__, e))

    return wrapper


def _failure(api, error):
    """The code and message a call that raised `error` is answered with: a ServingError's own; anything
    else (a fault of this adapter: the Predictor raises ServingErrors only) is INTERNAL, and logged."""
    if isinstance(error, status.ServingError):
        return error.code, grpc_message(error)
    log.exception("%s failed", api)
    return grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"


def deadline_of(context):
    """The call's deadline on time.monotonic()'s clock; None when the client set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Over gRPC, the call's deadline bounds its session runs, as TF Serving puts it in their RunOptions
    (model_servers/prediction_service_impl.cc, enforce_session_run_timeout: on unless on a TPU)."""

    def __init__(self, predictor, admission):
        self.predictor, self.admission = predictor, admission

    @rpc
    def Predict(self, request, context):
        return self.predictor.predict(request, deadline_of(context))

    @rpc
    def GetModelMetadata(self, request, context):
        return self.predictor.metadata(request)

    @rpc
    def Classify(self, request, context):
        return self.predictor.classify(request, deadline_of(context))

    @rpc
    def Regress(self, request, context):
        return self.predictor.regress(request, deadline_of(context))

    @rpc
    def MultiInference(self, request, context):
        return self.predictor.multi_inference(request, deadline_of(context))


class AsyncInference:
    """Predict, Classify, Regress and MultiInference on the grpc.aio server of a batching server
    (aio_server.py): a call whose run batches waits for its batch on the event loop, holding no thread
    (Predictor.infer_async). Everything else is as PredictionService's: the same Predictor, checks, codes,
    messages, deadline, request log and metrics.

    TF Serving's gRPC threads wait in BatchingSession::Run (batching/batching_session.cc). In Python a
    thread a waiting request costs context switches and GIL hand-offs (benchmarks/bench_batching.py).
    A run that does not batch (no batching for the version, or no batchable input) goes to `executor`,
    the server's thread pool, where the sync services run."""

    def __init__(self, predictor, executor, admission):
        self.predictor, self.executor, self.admission = predictor, executor, admission

    def handlers(self):
        """{full method name: coroutine function} for _Registrar."""
        return {f"/tensorflow.serving.PredictionService/{api}": functools.partial(self._serve, api)
                for api in INFERENCE_APIS}

    async def _serve(self, api, request, context):
        if not self.admission.admit():
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        if isinstance(request, MalformedRequest):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        # A call its client cancels, or whose deadline passes, is cancelled here; as in TF Serving, whose
        # handler thread goes on, its run still ends and is counted and logged as it ends.
        call = asyncio.ensure_future(self.predictor.infer_async(api, request, deadline_of(context), self.executor))
        call.add_done_callback(_retrieve)
        try:
            response = await asyncio.shield(call)
        except status.ServingError as e:
            await context.abort(e.code, grpc_message(e))
        if isinstance(response, Prediction) and wire.has_large_output(response):  # written off the loop
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, wire.serialize_prediction, response)
        return response


def _retrieve(future):
    """Take a finished call's outcome, so that one whose client left logs no 'exception never retrieved'."""
    if not future.cancelled():
        future.exception()


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor, core, admission):
        self.predictor, self.core, self.admission = predictor, core, admission

    @rpc
    def GetModelStatus(self, request, context):
        return self.predictor.status(request)

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


def add_to_server(predictor, core, server, admission, aio_executor=None):
    """Register PredictionService and ModelService (around `predictor`; reloads on `core`) on `server` with the
    generated code's method table; a request whose bytes do not parse is answered INVALID_ARGUMENT (see
    MalformedRequest).

    `admission`: an Admission, closed at a stop.
    `aio_executor`: `server` is a grpc.aio server (aio_server.AioServer) and this is its thread pool;
    the inference methods are then AsyncInference's."""
    replacements = {} if aio_executor is None else AsyncInference(predictor, aio_executor, admission).handlers()
    registrar = _Registrar(server, replacements)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(predictor, admission),
                                                                        registrar)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor, core, admission), registrar)
