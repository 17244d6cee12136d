"""tensorflow_model_server: start-up, the gRPC server, the polling loops and shutdown.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 255 when start-up fails (as TF Serving's
`return -1`): a bad flag, a config file that does not parse, a model that does not load.
"""

import logging
import os
import signal
import sys
import threading
import time
from concurrent import futures

from . import flags, memory, status
from .config import (StartupError, file_bytes, read_config_file, read_text_proto, session_config,
                     single_model_config)

SERVER_VERSION = "0.1.0"
SHUTDOWN_GRACE_SECONDS = 5.0  # requests in flight at SIGTERM get this long to finish
# Not a TF Serving flag: how long a kept-alive REST connection may stay idle before it is closed.
REST_IDLE_TIMEOUT_VARIABLE = "TFS_REST_IDLE_TIMEOUT_SECONDS"
log = logging.getLogger("tensorflow_serving.model_servers")


def _setup_logging():
    class Formatter(logging.Formatter):
        def format(self, record):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
            micros = int(record.created % 1 * 1e6)
            where = record.name.replace(".", "/")
            return f"{stamp}.{micros:06d}: {record.levelname[0]} {where}] {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    root = logging.getLogger("tensorflow_serving")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class ModelServer:
    """The core, its gRPC server and polling threads; `start()` then `wait()`."""

    def __init__(self, options):
        self.options = options
        self.grpc_server = None
        self.core = None
        self.batching = None
        self.batch_scheduler = None
        self.health = None
        self.rest_server = None
        self._stop = threading.Event()
        self._config_text = None

    def build_core(self):
        from . import batching, loading
        from .core import ServerCore

        o = self.options
        sessions = session_config(o)
        self.batching = loading.batching_options(o)
        if self.batching is not None:
            self.batch_scheduler = batching.Scheduler(self.batching.num_batch_threads)
        load = loading.VersionLoader(o, sessions, self.batching, self.batch_scheduler)
        retry_seconds = max(o.load_retry_interval_micros, 0) / 1e6
        self.core = ServerCore(load, o.allow_version_labels_for_unavailable_models,
                               o.max_num_load_retries, retry_seconds,
                               num_load_threads=o.num_load_threads, num_unload_threads=o.num_unload_threads)

    def initial_config(self):
        o = self.options
        if o.model_config_file:
            self._config_text = file_bytes(o.model_config_file)
            return read_config_file(o.model_config_file, self._config_text)  # the bytes compared by each poll
        if not o.model_base_path:
            raise StartupError("INVALID_ARGUMENT: Both server_options.model_base_path and "
                               "server_options.model_config_file are empty!")
        return single_model_config(o.model_name, o.model_base_path)

    def start(self):
        import grpc

        from . import services

        o = self.options
        try:
            flags.check_ranges(o)  # before anything loads: a port or a thread count out of range
        except flags.FlagError as e:
            raise StartupError(f"INVALID_ARGUMENT: {e}") from None
        if o.port == 0 and not o.grpc_socket_path:
            raise StartupError("INVALID_ARGUMENT: server_options.grpc_port is not set.")
        channel_args = flags.channel_arguments(o.grpc_channel_arguments)
        config = self.initial_config()
        self.build_core()
        try:
            self.core.reload(config, initial=True)
        except status.ServingError as e:
            raise StartupError(str(e)) from None
        # TF Serving's C++ default is 4 x CPUs; in Python, threads past ~2 per CPU only fight over the GIL
        # (2 CPUs, Toy at concurrency 8: 3.4k req/s with 4 threads, 2.4k with 8; benchmarks/bench_server.py).
        # A batching server needs no more: its calls wait for their batch on the event loop (aio_server.py).
        workers = o.grpc_max_threads or 2 * flags.cpu_count()
        # No SO_REUSEPORT: a second server on a busy port must fail, not silently share it.
        # server.cc sets the message limits (SetMaxMessageSize) and then adds --grpc_channel_arguments,
        # which override them. gRPC keeps the first of two equal keys, so the server's own go only where the
        # user set none (--grpc_channel_arguments=grpc.max_receive_message_length=4194304 lowers the limit).
        own = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1),
               ("grpc.so_reuseport", 0)]
        users = {key for key, _ in channel_args}
        server_options = channel_args + [(key, value) for key, value in own if key not in users]
        executor = futures.ThreadPoolExecutor(max_workers=workers)
        if self.batching is not None:  # a batched call waits for its batch on an event loop (aio_server.py)
            from .aio_server import AioServer
            self.grpc_server = AioServer(executor, server_options)
            services.add_to_server(self.core, self.grpc_server, aio_executor=executor)
        else:
            self.grpc_server = grpc.server(executor, options=server_options)
            services.add_to_server(self.core, self.grpc_server)
        addresses = []
        if o.port:
            addresses.append((f"0.0.0.0:{o.port}", f"Running gRPC ModelServer at 0.0.0.0:{o.port} ..."))
        if o.grpc_socket_path:
            addresses.append((f"unix:{o.grpc_socket_path}",
                              f"Running gRPC ModelServer at UNIX socket {o.grpc_socket_path} ..."))
        credentials = self._server_credentials()
        if o.enable_grpc_healthcheck_service:
            from .health import Health
            self.health = Health(self.grpc_server, self.core)
        for address, _ in addresses:
            try:
                bound = (self.grpc_server.add_secure_port(address, credentials) if credentials
                         else self.grpc_server.add_insecure_port(address))
            except RuntimeError as e:
                raise StartupError(f"UNAVAILABLE: Failed to BuildAndStart gRPC server: cannot bind "
                                   f"{address}: {e}") from None
            if not bound and not address.startswith("unix:"):
                raise StartupError(f"UNAVAILABLE: Failed to BuildAndStart gRPC server: cannot bind {address}")
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
        from . import services
        from .rest.api import RestApi
        from .rest.http_server import RestServer
        from .metrics import Page

        o = self.options
        page = None
        if o.monitoring_config_file:
            from .local_protos import MonitoringConfig
            monitoring = read_text_proto(o.monitoring_config_file, MonitoringConfig())
            if monitoring.prometheus_config.enable:
                page = Page(monitoring.prometheus_config.path)
        if o.rest_api_port == o.port:
            log.error("server_options.http_port cannot be same as grpc_port. Please use a different port for "
                      "HTTP/REST API. Skipped exporting HTTP/REST API.")
            return
        api = RestApi(services.PredictionService(self.core), services.ModelService(self.core), page,
                           timeout_seconds=o.rest_api_timeout_in_ms / 1000 if o.rest_api_timeout_in_ms > 0 else None,
                           cors=o.rest_api_enable_cors_support)
        try:
            self.rest_server = RestServer(api, o.rest_api_port, threads=o.rest_api_num_threads
                                                      or 4 * flags.cpu_count(), grace=SHUTDOWN_GRACE_SECONDS,
                                                      idle_timeout=_rest_idle_timeout(),
                                                      guard_timeouts=self.batching is not None).start()
        except OSError as e:
            log.error("Failed to start HTTP Server at localhost:%d (%s)", o.rest_api_port, e.strerror)
            return
        log.info("Exporting HTTP/REST API at:localhost:%d ...", o.rest_api_port)

    def _server_credentials(self):
        """TLS credentials from --ssl_config_file (TF Serving's SSLConfig text, PEM contents inline); None: plaintext."""
        path = self.options.ssl_config_file
        if not path:
            return None
        import grpc

        from .local_protos import SSLConfig
        config = read_text_proto(path, SSLConfig())
        for field in ("server_key", "server_cert") + (("custom_ca",) if config.custom_ca else ()):
            if "-----BEGIN " not in getattr(config, field):
                raise StartupError(f"INVALID_ARGUMENT: {path}: {field} must hold a PEM block (-----BEGIN ...), "
                                   "the file's contents, not its path")
        if config.client_verify and not config.custom_ca:
            raise StartupError(f"INVALID_ARGUMENT: {path}: client_verify needs custom_ca, the CA that signs the "
                               "clients' certificates")
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
        self._stop.set()
        if self.core is not None:
            self.core.manager.stopping.set()

    def stop(self, grace=SHUTDOWN_GRACE_SECONDS):
        """Stop accepting on every port at once, let requests in flight finish (`grace` s), then unload."""
        self._stop.set()
        if self.core is not None:
            self.core.manager.stopping.set()
        if self.health is not None:
            self.health.enter_graceful_shutdown()  # every service NOT_SERVING: balancers stop sending
        grpc_stopped = self.grpc_server.stop(grace) if self.grpc_server is not None else None
        if self.rest_server is not None:
            self.rest_server.stop()
        if grpc_stopped is not None:
            grpc_stopped.wait()
        if self.core is not None:
            self.core.manager.unload_all()
        if self.batch_scheduler is not None:
            self.batch_scheduler.close()


def _rest_idle_timeout():
    from .rest.http_server import IDLE_TIMEOUT_SECONDS

    text = os.environ.get(REST_IDLE_TIMEOUT_VARIABLE, "")
    try:
        seconds = float(text) if text else IDLE_TIMEOUT_SECONDS
    except ValueError:
        seconds = -1
    if not seconds > 0 or seconds == float("inf"):
        raise StartupError(f"INVALID_ARGUMENT: ${REST_IDLE_TIMEOUT_VARIABLE} must be a number of seconds > 0, "
                           f"not {text!r}")
    return seconds


# oneDNN's switches, which TensorFlow reads with TF_CHECK_OK (tensorflow/core/util/onednn_env_vars.cc): a value
# other than 0, 1, true or false aborts the process, with a C++ stack trace, when a model loads or runs.
ONEDNN_SWITCHES = ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS",
                   "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD")


def _check_onednn_switches():
    for name in ONEDNN_SWITCHES:
        value = os.environ.get(name)
        if value is not None and value.lower() not in ("0", "1", "true", "false"):
            raise StartupError(f"INVALID_ARGUMENT: ${name} must be 0, 1, true or false, not {value!r}")


def _start_up_failed(error, server=None):
    """The exit status of a start-up that failed with `error`, after its line (and preface) on stderr."""
    if server is not None:
        server.stop(0)
    if error.preface:
        print(error.preface, file=sys.stderr)
    print(f"Failed to start server. Error: {error}", file=sys.stderr)
    return 255


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, wants_help = flags.parse(argv)
        flags.channel_arguments(options.grpc_channel_arguments)
    except flags.FlagError as e:
        print(f"{e}\nRun tensorflow_model_server --help for the list of flags.", file=sys.stderr)
        return 255
    if wants_help:
        print(flags.usage(), end="")
        return 0
    _setup_logging()
    # oneDNN as in TF Serving: its builds define build_with_onednn_v2 (its .bazelrc), so TensorFlow turns
    # oneDNN on by itself on x86 CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, and off on others
    # (tensorflow/core/util/util.cc, IsMklEnabled); TF_ENABLE_ONEDNN_OPTS=0 or 1 decides, as there.
    # Unlike TF Serving, oneDNN allocates from the system allocator (tensorflow/core/util/onednn_env_vars.cc,
    # UseSystemAlloc): its own pools a large request's memory for good, and the server gives that back
    # (memory.py; benchmarks/bench_memory.py). TF_ONEDNN_USE_SYSTEM_ALLOCATOR=0 asks for its own.
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    memory.use_one_arena()  # before TensorFlow and gRPC start their threads
    try:
        _check_onednn_switches()
    except StartupError as e:
        return _start_up_failed(e)
    from .quiet_tf import import_tensorflow

    tf = import_tensorflow()
    if options.version:
        print(f"TensorFlow ModelServer: {SERVER_VERSION}-local\nTensorFlow Library: {tf.__version__}")
        return 0
    server = ModelServer(options)
    stopping = threading.Event()

    def on_signal(signum, frame):
        log.info("Received %s, shutting down.", signal.Signals(signum).name)
        stopping.set()
        server.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except StartupError as e:
        return _start_up_failed(e, server)
    while not stopping.wait(0.5):
        pass
    server.stop()
    log.info("Server stopped.")
    # A signal repeated while the server stops changes nothing, and after this must not either: at exit
    # Python puts SIG_DFL back in place of its own handlers (not of SIG_IGN), so a SIGTERM sent again
    # while the interpreter tears down would end a clean shutdown with "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
