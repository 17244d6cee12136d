"""The gRPC services, on the servicers generated in tensorflow-serving-api."""

import asyncio
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
        except Exception as e:  # the server keeps serving whatever one request does
            code, message = _failure(method.__name__, e)
            context.abort(code, message)
        finally:
            _count(method.__name__, request, getattr(context, "entrypoint", "GRPC"), code, started, response)

    return wrapper


def _failure(api, error):
    """The code and message a call that raised `error` is answered with: a ServingError's own; anything
    else is INTERNAL, and logged with its traceback (call it from the `except` block)."""
    if isinstance(error, status.ServingError):
        log.debug("%s failed: %s", api, error.message)
        return error.code, error.grpc_message()
    log.exception("%s failed", api)
    return grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"


_INFERENCE_APIS = frozenset({"Predict", "Classify", "Regress", "MultiInference"})


def _count(api, request, entrypoint, code, started, response):
    """The request metrics of an inference call that ended with `code`."""
    if api in _INFERENCE_APIS:
        METRICS.request(_model_name(request), api, entrypoint, code.name, time.perf_counter() - started,
                        _version(response))


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


def _run_timeout_ms(context):
    """The session-run bound of a gRPC call in ms (its deadline, rounded up to a step); None for REST or no
    deadline."""
    remaining = getattr(context, "time_remaining", None)
    seconds = remaining() if callable(remaining) else None
    return None if seconds is None else deadlines.step_ms(seconds * 1000)


def run_timeout_for(context):
    """The session-run bound of a gRPC call, as a context manager (see servable.run_timeout)."""
    step = _run_timeout_ms(context)
    return contextlib.nullcontext() if step is None else servable_module.run_timeout(step)


def _inference(api, request, core):
    """What an inference call runs: (the ModelSpec of the servable it asks for, a function of that servable
    giving the call's steps, see SavedModelServable.complete)."""
    if api == "MultiInference":
        # The servable is the first task's; no task at all reads as an empty ModelSpec (as TF Serving).
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        return spec, lambda servable: inference.multi_inference_steps(servable, request)
    _require_model_spec(request)
    if api == "Predict":
        if isinstance(request, wire.PredictRequestView):
            request.keep = core.request_logger.logs(request.model_spec.name)
        return request.model_spec, lambda servable: servable.predict_steps(request, request.model_spec.name)
    steps = inference.classify_steps if api == "Classify" else inference.regress_steps
    return request.model_spec, lambda servable: steps(servable, request)


def _logged_spec(api, response):
    return response.results[0].model_spec if api == "MultiInference" else response.model_spec


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    def _infer(self, api, request, context):
        """Run the call on the servable it asks for, then log it (if configured).

        Over gRPC, the call's deadline bounds its session runs, as TF Serving puts it in their RunOptions
        (model_servers/prediction_service_impl.cc, enforce_session_run_timeout: on unless on a TPU): TensorFlow
        cancels a run that outlives its client, and the thread is free again. REST calls bring their own
        bound (--rest_api_timeout_in_ms)."""
        spec, steps = _inference(api, request, self.core)
        with self.core.handle(spec) as servable, run_timeout_for(context):
            response = servable.complete(steps(servable))
        self.core.request_logger.log(api, spec.name, request, response, _logged_spec(api, response))
        return response

    @rpc
    def Predict(self, request, context):
        return self._infer("Predict", request, context)

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
        return self._infer("Classify", request, context)

    @rpc
    def Regress(self, request, context):
        return self._infer("Regress", request, context)

    @rpc
    def MultiInference(self, request, context):
        return self._infer("MultiInference", request, context)


class AsyncInference:
    """Predict, Classify, Regress and MultiInference on the grpc.aio server of a batching server
    (aio_server.py): a call whose run batches waits for its batch on the event loop, holding no thread.
    Everything else about it is PredictionService's: the same steps, checks, codes and messages,
    deadline, request log and metrics.

    TF Serving's gRPC threads wait in BatchingSession::Run (batching/batching_session.cc). In Python a
    thread a waiting request costs context switches and GIL hand-offs (benchmarks/bench_batching.py).
    A run that does not batch (no batching for the version, or no batchable input) goes to `executor`,
    the server's thread pool, where the sync services run."""

    def __init__(self, core, executor):
        self.core, self.executor = core, executor

    def handlers(self):
        """{full method name: coroutine function} for _Registrar."""
        return {f"/tensorflow.serving.PredictionService/{api}": functools.partial(self._serve, api)
                for api in _INFERENCE_APIS}

    async def _serve(self, api, request, context):
        # A call its client cancels, or whose deadline passes, is cancelled here; as in TF Serving, whose
        # handler thread goes on, its run still ends and is counted and logged as it ends.
        response, failure = await asyncio.shield(asyncio.ensure_future(self._answer(api, request, context)))
        if failure is not None:
            await context.abort(*failure)
        if isinstance(response, wire.PredictResponseView):  # large outputs: their bytes are written off the loop
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, wire.serialize_predict_response, response)
        return response

    async def _answer(self, api, request, context):
        """(the response, None) or (None, (code, message)); counted in the metrics."""
        started, code, response = time.perf_counter(), grpc.StatusCode.OK, None
        try:
            response = await self._infer(api, request, context)
            return response, None
        except Exception as e:  # the server keeps serving whatever one request does
            code, message = _failure(api, e)
            return None, (code, message)
        finally:
            _count(api, request, "GRPC", code, started, response)

    async def _infer(self, api, request, context):
        if isinstance(request, MalformedRequest):
            raise status.invalid_argument(request.message)
        spec, steps = _inference(api, request, self.core)
        timeout_ms = _run_timeout_ms(context) or 0
        with self.core.handle(spec) as servable:
            # a large request's arrays are made off the loop (the first step reads the inputs)
            response = await self._complete(servable, steps(servable), timeout_ms,
                                            isinstance(request, wire.PredictRequestView))
        if self.core.request_logger.logs(spec.name):  # a file write: off the event loop
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self.core.request_logger.log, api, spec.name, request, response,
                _logged_spec(api, response))
        return response

    async def _complete(self, servable, steps, timeout_ms, large=False):
        """SavedModelServable.complete, awaiting each run: a batched one on this loop, any other on the pool;
        with `large`, the first step (which reads the request's tensors) runs on the pool too."""
        loop = asyncio.get_running_loop()
        try:
            feeds, fetch_names = await loop.run_in_executor(self.executor, next, steps) if large else next(steps)
            while True:
                run = servable.submit(feeds, fetch_names, timeout_ms, loop)
                if run is None:
                    run = loop.run_in_executor(self.executor, _run, servable, feeds, fetch_names, timeout_ms)
                feeds = None  # the run's inputs are not held while the answer is built
                feeds, fetch_names = steps.send(await run)
        except StopIteration as done:
            return done.value


def _run(servable, feeds, fetch_names, timeout_ms):
    with servable_module.run_timeout(timeout_ms):
        return servable.run(feeds, fetch_names)


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


def add_to_server(core, server, aio_executor=None):
    """Register PredictionService and ModelService on `server` with the generated code's method table;
    a request whose bytes do not parse is answered INVALID_ARGUMENT (see MalformedRequest).

    `aio_executor`: `server` is a grpc.aio server (aio_server.AioServer) and this is its thread pool;
    the inference methods are then AsyncInference's."""
    replacements = {} if aio_executor is None else AsyncInference(core, aio_executor).handlers()
    registrar = _Registrar(server, replacements)
    for servicer_class, (module, name) in _GENERATED_ADD.items():
        getattr(module, name)(servicer_class(core), registrar)
