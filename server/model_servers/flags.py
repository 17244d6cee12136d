"""tensorflow_model_server's command line: TF Serving's flags, names, defaults and spellings.

Accepted forms: --flag=value and --flag value; booleans also --flag, --flag=true/false/1/0.
"""

import dataclasses
import os
import re

# Flags this server honours. (name, type, default, help)
_FLAGS = [
    ("port", int, 8500, "TCP port to listen on for gRPC API. Disabled if port set to zero."),
    ("grpc_socket_path", str, "", "If non-empty, listen to a UNIX socket for gRPC API on the given path."),
    ("grpc_channel_arguments", str, "", "A comma separated list of arguments to be passed to the grpc "
     "server. (e.g. grpc.max_connection_age_ms=2000)"),
    ("grpc_max_threads", int, 0,
     "Max grpc server threads to handle grpc messages (0: 2 x CPUs; TF Serving's is 4 x CPUs)."),
    ("rest_api_port", int, 8501, "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be "
     "exported. This port must be different than the one specified in --port. (TF Serving's binary defaults "
     "to 0; its Docker image, like this server, uses 8501.)"),
    ("rest_api_num_threads", int, 0, "Number of threads for HTTP/REST API processing. If not set, will be auto set "
     "based on number of CPUs."),
    ("rest_api_timeout_in_ms", int, 30000, "Timeout for HTTP/REST API calls."),
    ("rest_api_enable_cors_support", bool, False, "Enable CORS headers in response"),
    ("model_config_file", str, "", "If non-empty, read an ascii ModelServerConfig protobuf from the supplied "
     "file name, and serve the models in that file. (If used, --model_name, --model_base_path are ignored.)"),
    ("model_config_file_poll_wait_seconds", int, 0, "Interval in seconds between each poll of the filesystem "
     "for model_config_file. If unset or set to zero, poll will be done exactly once and not periodically."),
    ("model_name", str, "default", "name of model (ignored if --model_config_file flag is set)"),
    ("model_base_path", str, "", "path to export (ignored if --model_config_file flag is set, otherwise required)"),
    ("file_system_poll_wait_seconds", int, 1, "Interval in seconds between each poll of the filesystem for new "
     "model version. If set to zero poll will be exactly done once and not periodically. Setting this to "
     "negative value will disable polling entirely."),
    ("allow_version_labels_for_unavailable_models", bool, False, "If true, allows assigning unused version "
     "labels to models that are not available yet."),
    ("max_num_load_retries", int, 5, "Maximum number of times it retries loading a model after the first "
     "failure, before giving up. If set to 0, a load is attempted only once."),
    ("load_retry_interval_micros", int, 60 * 1000 * 1000, "The interval, in microseconds, between each servable "
     "load retry. If set negative, it doesn't wait."),
    ("num_load_threads", int, 0, "The number of threads in the thread-pool used to load servables. If set as 0, "
     "we don't use a thread-pool, and servable loads are performed serially in the manager's main work loop."),
    ("num_unload_threads", int, 0, "The number of threads in the thread-pool used to unload servables. If set as 0, "
     "we don't use a thread-pool, and servable unloads are performed serially in the manager's main work loop."),
    ("flush_filesystem_caches", bool, True, "Flush file system caches after the initial load (accepted)."),
    ("tensorflow_session_parallelism", int, 0, "Number of threads to use for running a Tensorflow session."),
    ("tensorflow_session_config_file", str, "", "If non-empty, read an ascii TensorFlow Session ConfigProto "
     "protobuf from the supplied file name."),
    ("tensorflow_intra_op_parallelism", int, 0, "Number of threads to use to parallelize the execution of an "
     "individual op."),
    ("tensorflow_inter_op_parallelism", int, 0, "Controls the number of operators that can be executed "
     "simultaneously."),
    ("saved_model_tags", str, "serve", "Comma-separated set of tags corresponding to the meta graph def to "
     "load from SavedModel."),
    ("enable_signature_method_name_check", bool, False, "Enable method_name check for SignatureDef."),
    ("enable_serialization_as_tensor_content", bool, False, "Enable serialization of predict response as "
     "tensor content."),
    ("per_process_gpu_memory_fraction", float, 0.0, "GPU memory fraction (accepted; this server uses no GPU)."),
    ("enable_profiler", bool, True, "Enable profiler service (accepted)."),
    ("remove_unused_fields_from_bundle_metagraph", bool, True, "Remove unused fields from the metagraph "
     "(accepted)."),
    ("enable_grpc_healthcheck_service", bool, False, "Enable the standard gRPC healthcheck service."),
    ("ssl_config_file", str, "", "If non-empty, read an ascii SSLConfig protobuf from the supplied file name and set "
     "up a secure gRPC channel"),
    ("enable_batching", bool, False, "enable batching"),
    ("enable_per_model_batching_parameters", bool, False, "Enables model specific batching params like batch sizes, "
     "timeouts, batching feature flags to be read from `batching_params.pbtxt` file present in SavedModel dir of the "
     "model. Associated params in the global config from --batching_parameters_file are *ignored*. Only threadpool "
     "(name and size) related params are used from the global config, as this threadpool is shared across all the "
     "models that want to batch requests. This option is only applicable when --enable_batching flag is set."),
    ("batching_parameters_file", str, "", "If non-empty, read an ascii BatchingParameters protobuf from the supplied "
     "file name and use the contained values instead of the defaults."),
    ("enable_model_warmup", bool, True, "Enables model warmup, which triggers lazy initializations (such as TF "
     "optimizations) at load time, to reduce first request latency."),
    ("num_request_iterations_for_warmup", int, 0, "Number of times a request is iterated during warmup replay. "
     "This value is used only if > 0."),
    ("monitoring_config_file", str, "", "If non-empty, read an ascii MonitoringConfig protobuf from the supplied "
     "file name"),
    ("version", bool, False, "Display version"),
]
# TF Serving flags this server cannot honour: an error at start-up when set to anything but the default.
_UNSUPPORTED = [
    ("use_alts_credentials", bool, False, "ALTS credentials are not supported"),
    ("platform_config_file", str, "", "platform configs are not supported; use --model_config_file"),
    ("prefer_tflite_model", bool, False, "TensorFlow Lite models are not supported"),
    ("num_tflite_pools", int, 0, "TensorFlow Lite models are not supported"),
    ("num_tflite_interpreters_per_pool", int, 1, "TensorFlow Lite models are not supported"),
    ("xla_cpu_compilation_enabled", bool, False, "XLA compilation is not supported"),
    ("xla_gpu_compilation_enabled", bool, False, "XLA compilation is not supported"),
    ("thread_pool_factory_config_file", str, "", "thread pool factories are not supported"),
    ("mixed_precision", str, "", "mixed precision is not supported"),
    ("skip_initialize_tpu", bool, False, "TPUs are not supported"),
]
_TYPES = {name: (kind, default) for name, kind, default, _ in _FLAGS + _UNSUPPORTED}
# TF Serving declares these int64 (server.h), every other integer flag int32: a value that does not fit
# is a parse error there (tensorflow's command_line_flags.cc: "Couldn't interpret value ...").
_INT64 = {"load_retry_interval_micros", "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism",
          "tensorflow_inter_op_parallelism"}
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)  # what absl::SimpleAtoi takes: no "1_000", no "٣"
PORT = (0, 65535)
INT32_MAX = 2**31 - 1
# The values that make sense for the integer flags, checked at start-up (check_ranges): (low, high, meaning).
# TF Serving takes any int32 here, then fails to bind a port out of range (server.cc: "0.0.0.0:" + port),
# crashes on negative thread counts (a gRPC resource quota, a thread pool) or cuts an int64 to a ConfigProto's
# int32; Python's gRPC wraps a port modulo 65536 (70000 listened on 4464), so each is refused here instead.
# The other integer flags take any value of their type, as in TF Serving (a negative poll interval: no polling).
RANGES = {
    "port": PORT + ("a TCP port; 0: no gRPC port",),
    "rest_api_port": PORT + ("a TCP port; 0: no REST API",),
    "grpc_max_threads": (0, INT32_MAX, "a number of threads; 0: 2 x CPUs"),
    "rest_api_num_threads": (0, INT32_MAX, "a number of threads; 0: 4 x CPUs"),
    "num_load_threads": (0, INT32_MAX, "a number of threads"),
    "num_unload_threads": (0, INT32_MAX, "a number of threads"),
    "tensorflow_session_parallelism": (0, INT32_MAX, "a number of threads; 0: TensorFlow picks"),
    "tensorflow_intra_op_parallelism": (0, INT32_MAX, "a number of threads; 0: TensorFlow picks"),
    "tensorflow_inter_op_parallelism": (0, INT32_MAX, "a number of threads; 0: TensorFlow picks"),
    # A wait of more than 2**31 s does not fit Python's timeouts (threading.TIMEOUT_MAX); negative: no wait.
    "load_retry_interval_micros": (-2**63, INT32_MAX * 10**6, "68 years; negative: no wait"),
}

Options = dataclasses.make_dataclass(
    "Options", [(name, kind, dataclasses.field(default=default)) for name, kind, default, _ in _FLAGS])


class FlagError(Exception):
    pass


def usage(program="tensorflow_model_server"):
    lines = [f"usage: {program} [--flag=value ...]", "Flags:"]
    for name, kind, default, text in _FLAGS:
        shown = f'"{default}"' if kind is str else str(default).lower() if kind is bool else default
        lines.append(f"\t--{name}={shown}".ljust(40) + f"\t{kind.__name__.replace('str', 'string')}\t{text}")
    return "\n".join(lines) + "\n"


def _shown(text):
    """A user's argument in an error line: one line, whatever it holds."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _convert(name, kind, text):
    if kind is bool:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    elif kind is int:
        bits = 64 if name in _INT64 else 32
        if _INTEGER.fullmatch(text):
            try:
                value = int(text)
            except ValueError:  # more than 4300 digits
                value = None
            if value is not None and -2**(bits - 1) <= value < 2**(bits - 1):
                return value
    else:
        try:
            return kind(text)
        except ValueError:
            pass
    raise FlagError(f"Couldn't interpret value {_shown(text)} for flag {name}.")


def parse(argv):
    """Options from argv (without the program name); raises FlagError naming the bad argument.

    Returns (options, help_requested).
    """
    values = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--help", "-h", "--helpfull"):
            return Options(), True
        if not arg.startswith("--") or arg == "--":
            raise FlagError(f"unknown argument: {_shown(arg)}")
        name, has_value, text = arg[2:].partition("=")
        if name not in _TYPES:
            raise FlagError(f"unknown argument: {_shown(arg)}")
        kind, _ = _TYPES[name]
        if not has_value:
            if kind is bool:
                text = "true"
            elif args:
                text = args.pop(0)
            else:
                raise FlagError(f"flag --{name} needs a value: --{name}=VALUE")
        values[name] = _convert(name, kind, text)
    for name, kind, default, why in _UNSUPPORTED:
        if name in values and values[name] != default:
            raise FlagError(f"--{name} is not supported by this server: {why}")
        values.pop(name, None)
    return Options(**values), False


def check_ranges(options):
    """FlagError (one line) for the first integer flag whose value makes no sense (RANGES)."""
    for name, (low, high, meaning) in RANGES.items():
        value = getattr(options, name)
        if not low <= value <= high:
            bounds = f"{low}..{high}" if low > -2**63 else f"at most {high}"
            raise FlagError(f"--{name}={value} is out of range: must be {bounds} ({meaning})")


def channel_arguments(text):
    """--grpc_channel_arguments: key=value,... with 32-bit integer values passed as ints (as TF Serving)."""
    result = []
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FlagError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        value = value.split("=")[0]
        try:
            number = int(value.strip())
            result.append((key, number) if -2**31 <= number < 2**31 else (key, value))
        except ValueError:
            result.append((key, value))
    return result


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
