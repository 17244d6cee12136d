"""SavedModel warmup, as TF Serving does it: replay <version>/assets.extra/tf_serving_warmup_requests.

Each PredictionLog record (predict, classify, regress or multi-inference) runs N times on the
version being loaded, before it becomes AVAILABLE; responses are not checked, any error fails the
load. At most 1000 records (a 1001st fails the load before it runs); a file that is not TFRecord
fails the load with DATA_LOSS.
"""

import logging
import os
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from ..util import status
from ..util.regular_files import check_regular
from . import classify_regress
from .driver import Inference
from .predict_io import SplitPredictRequest

log = logging.getLogger("tensorflow_serving.servables")
FILE_NAME = "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def warmup_path(version_path):
    return os.path.join(version_path, "assets.extra", FILE_NAME)


def run_warmup(servable, version_path, iterations=1):
    """Replay the warmup records of a freshly loaded servable; raise ServingError to fail the load."""
    path = warmup_path(version_path)
    started = time.monotonic()
    if not os.path.exists(path):
        log.info("No warmup data file found at %s", path)
        return 0
    try:  # TensorFlow reads it: a FIFO there would block the load for good
        check_regular(path)
    except OSError as e:
        raise status.invalid_argument(f"Cannot read warmup data file {path}: {e.strerror}") from None
    log.info("Starting to read warmup data for model at %s with model-warmup-options ", path)
    count = 0
    try:
        for record in tf.compat.v1.io.tf_record_iterator(path):
            # TF Serving (servables/tensorflow/saved_model_warmup_util.cc) replays record 1001 and then
            # refuses the file; the same refusal comes here before record 1001 is parsed or run.
            if count >= MAX_RECORDS:
                raise status.invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
            entry = prediction_log_pb2.PredictionLog()
            try:
                entry.ParseFromString(record)
            except Exception:
                raise status.invalid_argument(
                    f"Failed to parse warmup record: {record[:64]!r} from {path}") from None
            for _ in range(max(iterations, 1)):
                _replay(servable, entry)
            count += 1
    except tf.errors.DataLossError as e:
        raise status.ServingError(grpc.StatusCode.DATA_LOSS,
                                  f"{e.message}. Please verify your warmup data is in TFRecord format.") from None
    except tf.errors.OpError as e:
        raise status.from_tf_error(e) from None
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
             "Elapsed time (microseconds): %d.", path, count, (time.monotonic() - started) * 1e6)
    return count


def _replay(servable, entry):
    kind = entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = entry.predict_log.request
        steps = servable.predict_steps(SplitPredictRequest(request), request.model_spec.name)
    elif kind == "classify_log":
        steps = classify_regress.classify_steps(servable, entry.classify_log.request)
    elif kind == "regress_log":
        steps = classify_regress.regress_steps(servable, entry.regress_log.request)
    elif kind == "multi_inference_log":
        steps = classify_regress.multi_inference_steps(servable, entry.multi_inference_log.request)
    elif kind == "session_run_log":
        number = prediction_log_pb2.PredictionLog.DESCRIPTOR.fields_by_name[kind].number
        raise status.ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {number}")
    else:  # anything else (no type, a streamed predict) is skipped and counted, as TF Serving does
        return
    Inference(servable, steps).run()
