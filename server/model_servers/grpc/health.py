"""The grpc.health.v1 service under TF Serving's names (--enable_grpc_healthcheck_service)."""

# The names TF Serving registers with the health service, and the same with their package.
SERVICES = ("ModelService", "PredictionService", "tensorflow.serving.ModelService",
            "tensorflow.serving.PredictionService")
SERVING, NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus


class Health:
    """Every named service SERVING; "" (the server as a whole) SERVING once every model is AVAILABLE."""

    def __init__(self, grpc_server, core):
        from grpc_health.v1 import health, health_pb2_grpc

        self.core = core
        self.servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, grpc_server)
        for name in SERVICES:
            self.servicer.set(name, SERVING)
        self._overall = None
        self.update()  # the models are loaded already: right from the first call

    def update(self):
        config = self.core.config
        names = [m.name for m in config.model_config_list.config] if config is not None else []
        ready = all(self.core.manager.available_versions(name) for name in names)
        wanted = SERVING if ready else NOT_SERVING
        if wanted != self._overall:  # set() sends every Watch an update, changed or not
            self._overall = wanted
            self.servicer.set("", wanted)

    def enter_graceful_shutdown(self):
        self.servicer.enter_graceful_shutdown()  # every service NOT_SERVING: balancers stop sending
