"""The gRPC services, on the servicers generated in tensorflow-serving-api."""

import functools
import logging

import grpc
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from . import inference, status

log = logging.getLogger("tensorflow_serving.model_servers")


def rpc(method):
    """Answer a ServingError with its code and message; anything else is INTERNAL, and logged."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except status.ServingError as e:
            log.debug("%s failed: %s", method.__name__, e.message)
            context.abort(e.code, e.grpc_message())
        except Exception as e:  # the server keeps serving whatever one request does
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    return wrapper


def _require_model_spec(request):
    if not request.HasField("model_spec"):
        raise status.invalid_argument("Missing ModelSpec")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    def _infer(self, api, request, spec, run):
        """Run `run(servable, request)` on the servable `spec` asks for, then log it (if configured)."""
        with self.core.handle(spec) as servable:
            response = run(servable, request)
        logged_spec = response.results[0].model_spec if api == "MultiInference" else response.model_spec
        self.core.request_logger.log(api, spec.name, request, response, logged_spec)
        return response

    @rpc
    def Predict(self, request, context):
        _require_model_spec(request)
        return self._infer("Predict", request, request.model_spec,
                           lambda servable, r: servable.predict(r, r.model_spec.name))

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
        return self._infer("Classify", request, request.model_spec, inference.classify)

    @rpc
    def Regress(self, request, context):
        _require_model_spec(request)
        return self._infer("Regress", request, request.model_spec, inference.regress)

    @rpc
    def MultiInference(self, request, context):
        # The servable is the first task's; no task at all reads as an empty ModelSpec (as TF Serving).
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        return self._infer("MultiInference", request, spec, inference.multi_inference)


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
