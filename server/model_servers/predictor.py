"""The data plane: Predict, Classify, Regress, MultiInference, metadata and status on the ServerCore, for any
transport.

As TF Serving's `predictor_` behind both its gRPC service (model_servers/prediction_service_impl.cc) and
its REST handler (model_servers/http_rest_api_handler.cc): each call takes a request and a deadline and
returns TF Serving's response, or raises status.ServingError. The gRPC servicers (grpc/servicers.py) and
the REST API (rest/api.py) are adapters around it, each turning a ServingError into its own answer at its
own edge. It logs the requests (request_log.py) and counts them in the metrics (metrics.py).
"""

import asyncio
import contextlib
import logging
import time

import grpc
from tensorflow_serving.apis import get_model_status_pb2, inference_pb2, model_pb2

from ..servables import classify_regress
from ..servables.driver import Inference
from ..servables.predict_io import SplitPredictRequest
from ..util import status
from ..util.proto_keys import has_key
from ..util.metrics import METRICS

log = logging.getLogger("tensorflow_serving.model_servers")

PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE = "Predict", "Classify", "Regress", "MultiInference"
INFERENCE_APIS = (PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE)


class Predictor:
    """The calls of TF Serving's PredictionService and ModelService status, on `core` (a ServerCore).

    `request_logger`: the server's request_log.RequestLogger; `entrypoint`: the transport's name in the
    request-latency metric ("GRPC" or "REST").
    """

    def __init__(self, core, request_logger, entrypoint):
        self.core, self.request_logger, self.entrypoint = core, request_logger, entrypoint

    # -- inference ----------------------------------------------------------------------------

    def predict(self, request, deadline=None):
        """A predict_io.Prediction for a PredictRequest (or a SplitPredictRequest): its outputs still arrays,
        for the transport to write. `deadline`: time.monotonic() seconds that bound its session run."""
        return self._infer(PREDICT, request, deadline)

    def classify(self, request, deadline=None):
        return self._infer(CLASSIFY, request, deadline)

    def regress(self, request, deadline=None):
        return self._infer(REGRESS, request, deadline)

    def multi_inference(self, request, deadline=None):
        return self._infer(MULTI_INFERENCE, request, deadline)

    async def infer_async(self, api, request, deadline, executor):
        """An inference call (one of INFERENCE_APIS) on an event loop: a batched session run is awaited here,
        holding no thread; any other run, a large request's decoding and the request log's write go to
        `executor`."""
        with self._accounted(api, request) as call:
            spec, steps = self._plan(api, call)
            with self.core.handle(spec) as servable:
                call.version = servable.version
                inference = Inference(servable, steps(servable), deadline)
                call.response = await inference.run_async(executor, read_off_loop=_held_aside(call.request))
            if self.request_logger.logs(spec.name):  # a file write: off the event loop
                await asyncio.get_running_loop().run_in_executor(executor, self._log, api, spec, call)
            return call.response

    def _infer(self, api, request, deadline):
        with self._accounted(api, request) as call:
            spec, steps = self._plan(api, call)
            with self.core.handle(spec) as servable:
                call.version = servable.version
                call.response = Inference(servable, steps(servable), deadline).run()
            self._log(api, spec, call)
            return call.response

    def _plan(self, api, call):
        """(the ModelSpec of the servable the call asks for, a function of that servable giving its steps)."""
        request = call.request
        if api == MULTI_INFERENCE:
            # The servable is the first task's; no task at all reads as an empty ModelSpec (as TF Serving).
            spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
            return spec, lambda servable: classify_regress.multi_inference_steps(servable, request)
        _require_model_spec(request)
        if api == PREDICT:
            request.keep = self.request_logger.logs(request.model_spec.name)  # its whole bytes, for the log
            return request.model_spec, lambda servable: servable.predict_steps(request, request.model_spec.name)
        steps = classify_regress.classify_steps if api == CLASSIFY else classify_regress.regress_steps
        return request.model_spec, lambda servable: steps(servable, request)

    def _log(self, api, spec, call):
        response = call.response
        logged_spec = response.results[0].model_spec if api == MULTI_INFERENCE else response.model_spec
        self.request_logger.log(api, spec.name, call.request, response, logged_spec)

    @contextlib.contextmanager
    def _accounted(self, api, request):
        """The call's bookkeeping: a Predict's request made a SplitPredictRequest; its errors as _errors_logged
        makes them; the metrics of the call as it ends."""
        call = _Call(SplitPredictRequest(request) if api == PREDICT and not isinstance(
            request, SplitPredictRequest) else request)
        started, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            with self._errors_logged(api):
                yield call
        except status.ServingError as e:
            code = e.code
            raise
        finally:
            METRICS.request(_model_name(call.request), api, self.entrypoint, code.name,
                            time.perf_counter() - started, call.version)

    # -- metadata and status ------------------------------------------------------------------

    def metadata(self, request):
        """A GetModelMetadataResponse (the signature_def field, the only one TF Serving has)."""
        with self._errors_logged("GetModelMetadata"):
            _require_model_spec(request)
            if not request.metadata_field:
                raise status.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise status.invalid_argument(f"Metadata field {field} is not supported")
            with self.core.handle(request.model_spec) as servable:
                return servable.metadata(request)

    def status(self, request):
        """A GetModelStatusResponse: every version's state, newest first, or the one version asked for."""
        with self._errors_logged("GetModelStatus"):
            _require_model_spec(request)
            name = request.model_spec.name
            states = self.core.manager.states(name)
            response = get_model_status_pb2.GetModelStatusResponse()
            if request.model_spec.WhichOneof("version_choice") == "version":  # a label is ignored, as TF Serving
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

    def signature(self, model_spec, key):
        """The SignatureDef `key` of the version `model_spec` resolves to (REST decodes JSON by its types)."""
        with self._errors_logged("Predict"), self.core.handle(model_spec) as servable:
            if not has_key(servable.signatures, key):
                raise status.invalid_argument(f'Serving signature name: "{key}" not found in signature def')
            return servable.signatures[key]

    @staticmethod
    @contextlib.contextmanager
    def _errors_logged(api):
        """A ServingError as it is (logged at debug); anything else logged with its traceback and raised as
        INTERNAL: the server keeps serving whatever one request does."""
        try:
            yield
        except status.ServingError as e:
            log.debug("%s failed: %s", api, e.message)
            raise
        except Exception as e:  # the server keeps serving whatever one request does
            log.exception("%s failed", api)
            raise status.ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}") from None


class _Call:
    """One inference call's request and, once they are known, the version that took it and its response."""

    __slots__ = ("request", "version", "response")

    def __init__(self, request):
        self.request, self.version, self.response = request, "", None


def _require_model_spec(request):
    if not request.HasField("model_spec"):
        raise status.invalid_argument("Missing ModelSpec")


def _held_aside(request):
    return isinstance(request, SplitPredictRequest) and request.held_aside


def _model_name(request):
    if isinstance(request, inference_pb2.MultiInferenceRequest):
        return request.tasks[0].model_spec.name if request.tasks else ""
    return request.model_spec.name
