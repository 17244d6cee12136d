"""The process's run-time set-up before anything loads: the log format, the allocator, oneDNN and TensorFlow."""

import logging
import os
import sys
import time

import grpc

from ..util import memory
from ..util.status import StartupError

# oneDNN's switches, which TensorFlow reads with TF_CHECK_OK (tensorflow/core/util/onednn_env_vars.cc): a value
# other than 0, 1, true or false aborts the process, with a C++ stack trace, when a model loads or runs.
ONEDNN_SWITCHES = ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS",
                   "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD")


def set_up_logging():
    """TF Serving's log lines on stderr: `2026-01-01 12:00:00.000000: I tensorflow_serving/...] message`."""

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


def start_tensorflow():
    """Set up the allocator and oneDNN, then import TensorFlow quietly; returns the tf module. StartupError for a
    oneDNN switch TensorFlow would abort on.

    oneDNN as in TF Serving: its builds define build_with_onednn_v2 (its .bazelrc), so TensorFlow turns oneDNN
    on by itself on x86 CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, and off on others
    (tensorflow/core/util/util.cc, IsMklEnabled); TF_ENABLE_ONEDNN_OPTS=0 or 1 decides, as there. Unlike TF
    Serving, oneDNN allocates from the system allocator (tensorflow/core/util/onednn_env_vars.cc,
    UseSystemAlloc): its own pools a large request's memory for good, and the server gives that back
    (util/memory.py; benchmarks/bench_memory.py). TF_ONEDNN_USE_SYSTEM_ALLOCATOR=0 asks for its own."""
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    memory.use_one_arena()  # before TensorFlow and gRPC start their threads
    for name in ONEDNN_SWITCHES:
        value = os.environ.get(name)
        if value is not None and value.lower() not in ("0", "1", "true", "false"):
            raise StartupError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"${name} must be 0, 1, true or false, not {value!r}")
    from ..util.quiet_tf import import_tensorflow

    return import_tensorflow()
