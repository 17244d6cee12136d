"""tensorflow_model_server: start-up, the gRPC server, the polling loops and shutdown.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 255 when start-up fails (as TF Serving's
`return -1`): a bad flag, a config file that does not parse, a model that does not load.
"""

import logging
import os
import signal
import stat
import sys
import threading
import time
from concurrent import futures

from . import flags, status

SERVER_VERSION = "0.1.0"
SHUTDOWN_GRACE_SECONDS = 5.0  # requests in flight at SIGTERM get this long to finish
# Not a TF Serving flag: how long a kept-alive REST connection may stay idle before it is closed.
REST_IDLE_TIMEOUT_VARIABLE = "TFS_REST_IDLE_TIMEOUT_SECONDS"
# The names TF Serving registers with the health service, and the same with their package.
HEALTH_SERVICES = ("ModelService", "PredictionService",
                   "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService")
HEALTH_SERVING, HEALTH_NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus
# The most a config, batching, monitoring, SSL or session config file may hold (TF Serving has no limit: it
# reads the size stat() gives, so a link to /dev/zero reads as empty there, while reading to the end took
# 13 GB here).
MAX_FILE_BYTES = 64 * 2**20
log = logging.getLogger("tensorflow_serving.model_servers")


PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"  # in a version's folder (bundle_factory_util.cc)


class StartupError(Exception):
    """Start-up failed; `preface` is a line printed before "Failed to start server" (a parser's error)."""

    def __init__(self, message, preface=None):
        super().__init__(message)
        self.preface = preface


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


def read_text_proto(path, message, data=None):
    """Parse the text-format file `path` (its bytes `data`, if already read) into `message`; StartupError with
    TF Serving's messages (util.h's ParseProtoTextFile) if it can't be."""
    from google.protobuf import text_format

    if data is None:
        data = _file_text(path)
    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as a file read in text mode
    except UnicodeDecodeError:
        raise StartupError(f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        detail = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        raise StartupError(
            f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'",
            preface=f"Error parsing text-format {message.DESCRIPTOR.full_name}: "
                    f"{e.GetLine() or 0}:{e.GetColumn() or 0}: {detail}") from None
    except (ValueError, RecursionError) as e:
        # protobuf lets these out of Parse: an enum number beyond int32 ("Value out of range"),
        # Any fields nested hundreds deep (custom_model_config holding a ModelServerConfig...).
        detail = "messages nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
        raise StartupError(f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'",
                           preface=f"Error parsing text-format {message.DESCRIPTOR.full_name}: {detail}") from None
    return message


def read_config_file(path, data=None):
    """The ModelServerConfig in a text file (its bytes `data`, if already read)."""
    from tensorflow_serving.config import model_server_config_pb2

    return read_text_proto(path, model_server_config_pb2.ModelServerConfig(), data)


def single_model_config(name, base_path):
    from tensorflow_serving.config import model_server_config_pb2

    log.info("Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
             name, base_path)
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    return config


def _session_config(options):
    from tensorflow.core.protobuf import config_pb2

    if (options.tensorflow_intra_op_parallelism > 0 and options.tensorflow_inter_op_parallelism > 0
            and options.tensorflow_session_parallelism > 0):
        raise StartupError(
            "INVALID_ARGUMENT: Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all.")
    config = config_pb2.ConfigProto()
    if options.tensorflow_session_config_file:  # as server.cc: ParseProtoTextFile, its errors and its limits
        read_text_proto(options.tensorflow_session_config_file, config)
    if options.tensorflow_session_parallelism > 0:
        config.intra_op_parallelism_threads = options.tensorflow_session_parallelism
        config.inter_op_parallelism_threads = options.tensorflow_session_parallelism
    if options.tensorflow_intra_op_parallelism > 0:
        config.intra_op_parallelism_threads = options.tensorflow_intra_op_parallelism
    if options.tensorflow_inter_op_parallelism > 0:
        config.inter_op_parallelism_threads = options.tensorflow_inter_op_parallelism
    return config


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
        from .core import ServerCore
        from .metrics import METRICS
        from .servable import SavedModelServable
        from .warmup import run_warmup, warmup_path

        o = self.options
        tags = tuple(t for t in o.saved_model_tags.split(",") if t)
        session_config = _session_config(o)

        self.batching = self._batching_options()

        def load(name, version, path):
            started = time.perf_counter()
            try:
                servable = SavedModelServable(name, version, path, tags, session_config,
                                              tensor_content=o.enable_serialization_as_tensor_content,
                                              method_name_check=o.enable_signature_method_name_check,
                                              batching=self._model_batching(path))
            except BaseException:
                METRICS.load(path, False, time.perf_counter() - started)
                raise
            METRICS.load(path, True, time.perf_counter() - started)
            if o.enable_model_warmup:
                started, outcome = time.perf_counter(), "OK"
                try:
                    run_warmup(servable, path, o.num_request_iterations_for_warmup)
                except BaseException as e:
                    outcome = e.code.name if isinstance(e, status.ServingError) else "UNKNOWN"
                    servable.close()
                    raise
                finally:
                    if os.path.exists(warmup_path(path)):  # as TF Serving: timed only when there is warmup data
                        METRICS.warmup(path, outcome, time.perf_counter() - started)
            return servable

        retry_seconds = max(o.load_retry_interval_micros, 0) / 1e6
        self.core = ServerCore(load, o.allow_version_labels_for_unavailable_models,
                               o.max_num_load_retries, retry_seconds,
                               num_load_threads=o.num_load_threads, num_unload_threads=o.num_unload_threads)

    def _model_batching(self, path):
        """(scheduler, Options) for the version at `path`, or None: not batched.

        With --enable_per_model_batching_parameters, the version's own batching_params.pbtxt, and no
        batching without one; only the batch threads come from the global parameters, which all models
        share (servables/tensorflow/bundle_factory_util.cc GetPerModelBatchingParams).
        """
        from . import batching

        if self.batching is None:
            return None
        if not self.options.enable_per_model_batching_parameters:
            return self.batch_scheduler, self.batching
        own = os.path.join(path, PER_MODEL_BATCHING_FILE)
        if not os.path.exists(own):
            return None
        try:
            options = batching.Options(read_text_proto(own, batching.BatchingParameters()), flags.cpu_count())
        except StartupError as e:
            raise status.invalid_argument(str(e).split(": ", 1)[-1]) from None
        except ValueError as e:
            raise status.invalid_argument(str(e)) from None
        options.thread_pool_name = self.batching.thread_pool_name
        options.num_batch_threads = self.batching.num_batch_threads
        return self.batch_scheduler, options

    def _batching_options(self):
        from . import batching

        o = self.options
        if o.batching_parameters_file and not o.enable_batching:
            raise StartupError("INVALID_ARGUMENT: server_options.batching_parameters_file is set without setting "
                               "server_options.enable_batching to true.")
        if not o.enable_batching:
            return None
        if not o.batching_parameters_file:
            options = batching.Options(cpus=flags.cpu_count())
        else:
            parameters = read_text_proto(o.batching_parameters_file, batching.BatchingParameters())
            try:
                options = batching.Options(parameters, flags.cpu_count())
            except ValueError as e:
                raise StartupError(f"INVALID_ARGUMENT: {e}") from None
        self.batch_scheduler = batching.Scheduler(options.num_batch_threads)
        return options

    def initial_config(self):
        o = self.options
        if o.model_config_file:
            self._config_text = _file_text(o.model_config_file)
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
        workers = o.grpc_max_threads or 2 * flags.cpu_count()
        if self.batching is not None and not o.grpc_max_threads:
            # A request waits for its batch on a gRPC thread, so a batch can be no larger than the threads
            # that feed it: add a full batch's worth (waiting threads sleep, they do not contend).
            workers += min(self.batching.max_batch_size, 256)
        # No SO_REUSEPORT: a second server on a busy port must fail, not silently share it.
        # server.cc sets the message limits (SetMaxMessageSize) and then adds --grpc_channel_arguments,
        # which override them. gRPC keeps the first of two equal keys, so the server's own go only where the
        # user set none (--grpc_channel_arguments=grpc.max_receive_message_length=4194304 lowers the limit).
        own = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1),
               ("grpc.so_reuseport", 0)]
        users = {key for key, _ in channel_args}
        server_options = channel_args + [(key, value) for key, value in own if key not in users]
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                       options=server_options)
        services.add_to_server(self.core, self.grpc_server)
        addresses = []
        if o.port:
            addresses.append((f"0.0.0.0:{o.port}", f"Running gRPC ModelServer at 0.0.0.0:{o.port} ..."))
        if o.grpc_socket_path:
            addresses.append((f"unix:{o.grpc_socket_path}",
                              f"Running gRPC ModelServer at UNIX socket {o.grpc_socket_path} ..."))
        credentials = self._server_credentials()
        self._add_health_service()
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
            self._every(0.5, self._update_health)
        if o.rest_api_port:
            self._start_rest()
        self._start_pollers()

    def _start_rest(self):
        """TF Serving's REST API (and the metrics page, if configured) on --rest_api_port."""
        from . import rest, rest_server, services
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
        api = rest.RestApi(services.PredictionService(self.core), services.ModelService(self.core), page,
                           timeout_seconds=o.rest_api_timeout_in_ms / 1000 if o.rest_api_timeout_in_ms > 0 else None,
                           cors=o.rest_api_enable_cors_support)
        try:
            self.rest_server = rest_server.RestServer(api, o.rest_api_port, threads=o.rest_api_num_threads
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

    def _add_health_service(self):
        """grpc.health.v1 with TF Serving's service names; "" (overall) SERVING once every model is AVAILABLE."""
        if not self.options.enable_grpc_healthcheck_service:
            return
        from grpc_health.v1 import health, health_pb2_grpc

        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        for name in HEALTH_SERVICES:
            self.health.set(name, HEALTH_SERVING)
        self._overall_health = None
        self._update_health()  # the models are loaded already: right from the first call

    def _update_health(self):
        config = self.core.config
        names = [m.name for m in config.model_config_list.config] if config is not None else []
        ready = all(self.core.manager.available_versions(name) for name in names)
        wanted = HEALTH_SERVING if ready else HEALTH_NOT_SERVING
        if wanted != self._overall_health:  # set() sends every Watch an update, changed or not
            self._overall_health = wanted
            self.health.set("", wanted)

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
            text = _file_text(path)
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
    from .rest_server import IDLE_TIMEOUT_SECONDS

    text = os.environ.get(REST_IDLE_TIMEOUT_VARIABLE, "")
    try:
        seconds = float(text) if text else IDLE_TIMEOUT_SECONDS
    except ValueError:
        seconds = -1
    if not seconds > 0 or seconds == float("inf"):
        raise StartupError(f"INVALID_ARGUMENT: ${REST_IDLE_TIMEOUT_VARIABLE} must be a number of seconds > 0, "
                           f"not {text!r}")
    return seconds


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _file_text(path):
    """The bytes of the regular file `path` (a link is followed), at most MAX_FILE_BYTES; else StartupError."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below like any non-file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise StartupError(f"NOT_FOUND: {path}; {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "another kind of file")
        raise StartupError(f"INVALID_ARGUMENT: {path} is not a regular file ({kind})")
    with open(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)  # stat's size can lie (/proc) or change: the read is what counts
        except OSError as e:
            raise StartupError(f"INVALID_ARGUMENT: {path}; {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise StartupError(f"INVALID_ARGUMENT: {path} is larger than {MAX_FILE_BYTES} bytes")
    return data


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
    # TF Serving's release build leaves oneDNN out (its .bazelrc: --config=mkl is opt-in), so TensorFlow's
    # own kernels and allocator: its numbers, and a large request's memory given back after it (oneDNN's
    # allocator pools it for good). TF_ENABLE_ONEDNN_OPTS=1 in the environment asks for oneDNN.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
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
        server.stop(0)
        if e.preface:
            print(e.preface, file=sys.stderr)
        print(f"Failed to start server. Error: {e}", file=sys.stderr)
        return 255
    while not stopping.wait(0.5):
        pass
    server.stop()
    log.info("Server stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
