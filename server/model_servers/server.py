"""The model server: the core, the gRPC and REST front doors, the polling loops, and the shutdown that ends them
(as TF Serving's model_servers/server.cc)."""

import logging
import threading
from concurrent import futures

import grpc

from ..util import status
from ..util.status import StartupError
from . import flags
from .config import (file_bytes, read_config_file, read_ssl_config, read_text_proto, rest_idle_timeout,
                     session_config, single_model_config)

SHUTDOWN_GRACE_SECONDS = 5.0  # requests in flight at SIGTERM get this long to finish
log = logging.getLogger("tensorflow_serving.model_servers")


class ModelServer:
    """The core, its gRPC server and polling threads; `start()` then `wait()`."""

    def __init__(self, options):
        self.options = options
        self.grpc_server = None
        self.core = None
        self.request_logger = None
        self.batching = None
        self.batch_scheduler = None
        self.health = None
        self.rest_server = None
        self.leftover = None  # what stop() left running: a core.manager.Leftover (Manager.unload_all)
        self._rest_idle_timeout = None  # TFS_REST_IDLE_TIMEOUT_SECONDS, checked before any model loads
        self._stop = threading.Event()
        self._admission = None  # the gRPC calls taken: all until a stop (servicers.Admission, made by start)
        self._executor = None  # the gRPC calls' threads
        self._config_text = None

    def build_core(self):
        from ..core.server_core import ServerCore
        from ..servables import batching
        from . import loader as loading
        from .request_log import RequestLogger

        o = self.options
        sessions = session_config(o)
        self.batching = loading.batching_options(o)
        if self.batching is not None:
            self.batch_scheduler = batching.Scheduler(self.batching.num_batch_threads)
        load = loading.VersionLoader(o, sessions, self.batching, self.batch_scheduler)
        retry_seconds = max(o.load_retry_interval_micros, 0) / 1e6
        self.request_logger = RequestLogger()
        self.core = ServerCore(load, o.allow_version_labels_for_unavailable_models,
                               o.max_num_load_retries, retry_seconds,
                               num_load_threads=o.num_load_threads, num_unload_threads=o.num_unload_threads,
                               num_initial_load_threads=4 * flags.cpu_count(), config_readers=[self.request_logger])

    def initial_config(self):
        o = self.options
        if o.model_config_file:
            self._config_text = file_bytes(o.model_config_file)
            return read_config_file(o.model_config_file, self._config_text)  # the bytes compared by each poll
        if not o.model_base_path:
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, "Both server_options.model_base_path and "
                               "server_options.model_config_file are empty!")
        return single_model_config(o.model_name, o.model_base_path)

    def start(self):
        from .grpc import servicers as services
        from .rest.http_server import IDLE_TIMEOUT_SECONDS

        self._admission = services.Admission()

        o = self.options
        try:
            flags.check_ranges(o)  # before anything loads: a port or a thread count out of range
        except flags.FlagError as e:
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        if o.port == 0 and not o.grpc_socket_path:
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, "server_options.grpc_port is not set.")
        channel_args = flags.channel_arguments(o.grpc_channel_arguments)
        # Every check of the flags and files comes before a model loads: with large models, loading takes minutes.
        credentials = self._server_credentials()
        self._rest_idle_timeout = rest_idle_timeout(IDLE_TIMEOUT_SECONDS) if o.rest_api_port else None
        config = self.initial_config()
        self.build_core()
        try:
            self.core.reload(config, initial=True)
        except status.ServingError as e:
            raise StartupError(e.code, e.message) from None
        # TF Serving's C++ default is 4 x CPUs; in Python, threads past ~2 per CPU only fight over the GIL
        # (README.md, "Speed"; benchmarks/bench_server.py). A batching server needs no more: its calls wait for
        # their batch on the event loop (grpc/aio_server.py).
        workers = o.grpc_max_threads or 2 * flags.cpu_count()
        # No SO_REUSEPORT: a second server on a busy port must fail, not silently share it.
        # server.cc sets the message limits (SetMaxMessageSize) and then adds --grpc_channel_arguments,
        # which override them. gRPC keeps the first of two equal keys, so the server's own go only where the
        # user set none (--grpc_channel_arguments=grpc.max_receive_message_length=4194304 lowers the limit).
        own = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1),
               ("grpc.so_reuseport", 0)]
        users = {key for key, _ in channel_args}
        server_options = channel_args + [(key, value) for key, value in own if key not in users]
        executor = self._executor = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-call")
        if self.batching is not None:  # a batched call waits for its batch on an event loop (aio_server.py)
            from .grpc.aio_server import AioServer
            self.grpc_server = AioServer(executor, server_options)
            services.add_to_server(self._predictor("GRPC"), self.core, self.grpc_server, self._admission,
                                   aio_executor=executor)
        else:
            self.grpc_server = grpc.server(executor, options=server_options)
            services.add_to_server(self._predictor("GRPC"), self.core, self.grpc_server, self._admission)
        addresses = []
        if o.port:
            addresses.append((f"0.0.0.0:{o.port}", f"Running gRPC ModelServer at 0.0.0.0:{o.port} ..."))
        if o.grpc_socket_path:
            addresses.append((f"unix:{o.grpc_socket_path}",
                              f"Running gRPC ModelServer at UNIX socket {o.grpc_socket_path} ..."))
        if o.enable_grpc_healthcheck_service:
            from .grpc.health import Health
            self.health = Health(self.grpc_server, self.core)
        for address, _ in addresses:
            try:
                bound = (self.grpc_server.add_secure_port(address, credentials) if credentials
                         else self.grpc_server.add_insecure_port(address))
            except RuntimeError as e:
                raise StartupError(grpc.StatusCode.UNAVAILABLE, f"Failed to BuildAndStart gRPC server: cannot bind "
                                   f"{address}: {e}") from None
            if not bound and not address.startswith("unix:"):
                raise StartupError(grpc.StatusCode.UNAVAILABLE,
                                   f"Failed to BuildAndStart gRPC server: cannot bind {address}")
        self.grpc_server.start()
        for _, message in addresses:
            log.info("%s", message)
        if self.health is not None:
            self._every(0.5, self.health.update)
        if o.rest_api_port:
            self._start_rest()
        self._start_pollers()

    def _start_rest(self):
        """TF Serving's REST API (and the metrics page, if configured) on --rest_api_port."""
        from .rest.api import RestApi
        from .rest.http_server import RestServer
        from ..util.metrics import Page

        o = self.options
        page = None
        if o.monitoring_config_file:
            from ..util.local_protos import MonitoringConfig
            monitoring = read_text_proto(o.monitoring_config_file, MonitoringConfig())
            if monitoring.prometheus_config.enable:
                page = Page(monitoring.prometheus_config.path)
        if o.rest_api_port == o.port:
            log.error("server_options.http_port cannot be same as grpc_port. Please use a different port for "
                      "HTTP/REST API. Skipped exporting HTTP/REST API.")
            return
        api = RestApi(self._predictor("REST"), page,
                           timeout_seconds=o.rest_api_timeout_in_ms / 1000 if o.rest_api_timeout_in_ms > 0 else None,
                           cors=o.rest_api_enable_cors_support)
        try:
            self.rest_server = RestServer(api, o.rest_api_port, threads=o.rest_api_num_threads
                                                      or 4 * flags.cpu_count(), grace=SHUTDOWN_GRACE_SECONDS,
                                                      idle_timeout=self._rest_idle_timeout,
                                                      guard_timeouts=self.batching is not None).start()
        except OSError as e:
            log.error("Failed to start HTTP Server at localhost:%d (%s)", o.rest_api_port, e.strerror)
            return
        log.info("Exporting HTTP/REST API at:localhost:%d ...", o.rest_api_port)

    def _predictor(self, entrypoint):
        from .predictor import Predictor

        return Predictor(self.core, self.request_logger, entrypoint)

    def _server_credentials(self):
        """TLS credentials from --ssl_config_file; None: plaintext."""
        if not self.options.ssl_config_file:
            return None
        config = read_ssl_config(self.options.ssl_config_file)
        return grpc.ssl_server_credentials([(config.server_key.encode(), config.server_cert.encode())],
                                           root_certificates=config.custom_ca.encode() or None,
                                           require_client_auth=config.client_verify)

    def _start_pollers(self):
        o = self.options
        if o.file_system_poll_wait_seconds > 0:
            self._every(o.file_system_poll_wait_seconds, self.core.poll_file_system)
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._every(o.model_config_file_poll_wait_seconds, self._poll_config_file)

    def _every(self, seconds, action):
        def loop():
            while not self._stop.wait(seconds):
                try:
                    action()
                except Exception:  # a poll must never stop the server
                    log.exception("poll failed")

        threading.Thread(target=loop, name=action.__name__, daemon=True).start()

    def _poll_config_file(self):
        path = self.options.model_config_file
        try:  # one read, size-limited: the file parsed is the file compared, whatever replaces it meanwhile
            text = file_bytes(path)
            if text == self._config_text:
                return
            config = read_config_file(path, text)
        except StartupError as e:  # as server.cc's PollFilesystemAndReloadConfig: log, keep serving, poll again
            log.error("Failed to read ModelServerConfig file: %s%s", f"{e.preface}; " if e.preface else "", e)
            return
        self._config_text = text
        try:
            self.core.reload(config)
        except status.ServingError as e:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", e)

    def request_stop(self):
        """Note that a stop is asked for (from a signal handler: plain writes, no lock); stop() does the rest."""
        if self.core is not None:
            self.core.manager.request_stop()

    def stop(self, grace=SHUTDOWN_GRACE_SECONDS):
        """Stop accepting on every port at once, let requests in flight finish (`grace` s), then unload."""
        self._stop.set()
        if self.core is not None:
            self.core.manager.request_stop()
        if self.health is not None:
            self.health.enter_graceful_shutdown()  # every service NOT_SERVING: balancers stop sending
        if self.grpc_server is not None:
            self._admission.close()  # new calls UNAVAILABLE, and those gRPC's core holds taken (Admission)
        grpc_stopped = self.grpc_server.stop(grace) if self.grpc_server is not None else None
        if self.rest_server is not None:
            self.rest_server.stop()
        if grpc_stopped is not None:
            grpc_stopped.wait()
        if self._executor is not None:  # its idle threads end now; one a call still holds ends with the process
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.core is not None:
            self.leftover = self.core.manager.unload_all(load_wait=grace)
        if self.batch_scheduler is not None:
            self.batch_scheduler.close()
