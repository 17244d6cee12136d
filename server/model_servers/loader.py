"""Loading one model version as the server does: the SavedModel, its batching, its warmup, and the metrics of
both (TF Serving's saved_model_bundle_factory.cc, bundle_factory_util.cc, saved_model_warmup.cc)."""

import os
import time

import grpc

from ..servables import batching
from ..util import status
from ..util.status import StartupError
from . import flags
from .config import read_text_proto
from ..util.metrics import METRICS

PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"  # in a version's folder (bundle_factory_util.cc)


class VersionLoader:
    """`load(name, version, path)` -> a ready servable, for the core's manager; what every load shares.

    `batching` is the global batching.Options (None: --enable_batching is off) and `scheduler` the batch
    threads every batched model shares.
    """

    def __init__(self, options, session_config, batching_options=None, scheduler=None):
        self.options = options
        self.session_config = session_config
        self.tags = tuple(t for t in options.saved_model_tags.split(",") if t)
        self.batching = batching_options
        self.scheduler = scheduler

    def __call__(self, name, version, path):
        from ..servables.saved_model import SavedModelServable
        from ..servables.warmup import run_warmup, warmup_path

        o = self.options
        started = time.perf_counter()
        try:
            servable = SavedModelServable(name, version, path, self.tags, self.session_config,
                                          tensor_content=o.enable_serialization_as_tensor_content,
                                          method_name_check=o.enable_signature_method_name_check,
                                          batching=self.model_batching(path))
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

    def model_batching(self, path):
        """(scheduler, Options) for the version at `path`, or None: not batched.

        With --enable_per_model_batching_parameters, the version's own batching_params.pbtxt, and no
        batching without one; only the batch threads come from the global parameters, which all models
        share (servables/tensorflow/bundle_factory_util.cc GetPerModelBatchingParams).
        """
        if self.batching is None:
            return None
        if not self.options.enable_per_model_batching_parameters:
            return self.scheduler, self.batching
        own = os.path.join(path, PER_MODEL_BATCHING_FILE)
        if not os.path.exists(own):
            return None
        try:
            options = batching.Options(read_text_proto(own, batching.BatchingParameters()), flags.cpu_count())
        except StartupError as e:  # a load's error, not the server's start-up
            raise status.ServingError(e.code, e.message) from None
        except ValueError as e:
            raise status.invalid_argument(str(e)) from None
        options.thread_pool_name = self.batching.thread_pool_name
        options.num_batch_threads = self.batching.num_batch_threads
        return self.scheduler, options


def batching_options(options):
    """The global batching.Options from the flags (None: off); StartupError for a bad parameters file."""
    if options.batching_parameters_file and not options.enable_batching:
        raise StartupError(
            grpc.StatusCode.INVALID_ARGUMENT, "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.")
    if not options.enable_batching:
        return None
    if not options.batching_parameters_file:
        return batching.Options(cpus=flags.cpu_count())
    parameters = read_text_proto(options.batching_parameters_file, batching.BatchingParameters())
    try:
        return batching.Options(parameters, flags.cpu_count())
    except ValueError as e:
        raise StartupError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
