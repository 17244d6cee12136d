"""Request logging: ModelConfig.logging_config, sampled requests appended as PredictionLog TFRecords.

Open-source TF Serving registers no log collector; this server has one, of type "file": the records
of a model go to `<filename_prefix>.tfrecord`, appended one whole framed record per write(2), so a
killed server loses nothing already logged and a reader only ever sees whole records, perhaps
followed by one that is still being written.
"""

import logging
import os
import random
import struct
import threading

import google_crc32c
import grpc
from tensorflow_serving.apis import prediction_log_pb2

from . import status
from .metrics import METRICS

log = logging.getLogger("tensorflow_serving.core")

COLLECTOR_TYPE = "file"
_LOG_FIELDS = {"Predict": "predict_log", "Classify": "classify_log", "Regress": "regress_log",
               "MultiInference": "multi_inference_log"}


def _masked_crc(data):
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class FileCollector:
    """Appends framed records to one file; one per file name, shared by the models that log there."""

    def __init__(self, path):
        directory = os.path.dirname(path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise status.invalid_argument(f"Cannot open request log {path}: {e.strerror}") from None
        self.path = path
        self._lock = threading.Lock()

    def write(self, data):
        record = tfrecord(data)
        with self._lock:
            os.write(self._fd, record)


class RequestLogger:
    """The request loggers of the served config, rebuilt on each reload (unchanged configs keep theirs)."""

    def __init__(self):
        self._by_model = {}  # model name -> (LoggingConfig bytes, collector, sampling rate)
        self._collectors = {}  # path -> FileCollector
        self._lock = threading.Lock()

    def validate(self, config):
        for model in config.model_config_list.config:
            if not model.HasField("logging_config"):
                continue
            kind = model.logging_config.log_collector_config.type
            if kind != COLLECTOR_TYPE:
                raise status.ServingError(grpc.StatusCode.NOT_FOUND,
                                          f"Cannot find LogCollector::Factory for type: {kind}")
            if not model.logging_config.log_collector_config.filename_prefix:
                raise status.invalid_argument(
                    f"Model {model.name}: logging_config.log_collector_config.filename_prefix is empty")
            rate = model.logging_config.sampling_config.sampling_rate
            if not 0.0 <= rate <= 1.0:
                raise status.invalid_argument(f"Model {model.name}: sampling_rate must be in [0, 1], not {rate}")
        self.open_collectors(config)

    def open_collectors(self, config):
        """Open (or reuse) the files the config logs to; raise before anything changes if one cannot be."""
        with self._lock:
            for model in config.model_config_list.config:
                if model.HasField("logging_config"):
                    path = model.logging_config.log_collector_config.filename_prefix + ".tfrecord"
                    if path not in self._collectors:
                        self._collectors[path] = FileCollector(path)

    def update(self, config):
        """Log what `config` says from now on (its collectors were opened by open_collectors)."""
        wanted = {}
        for model in config.model_config_list.config:
            if model.HasField("logging_config"):
                path = model.logging_config.log_collector_config.filename_prefix + ".tfrecord"
                wanted[model.name] = (model.logging_config, self._collectors[path])
        self._by_model = wanted

    def log(self, api, model_name, request, response, model_spec):
        entry = self._by_model.get(model_name)
        if entry is None:
            return
        settings, collector = entry
        rate = settings.sampling_config.sampling_rate
        if rate <= 0.0 or (rate < 1.0 and random.random() >= rate):
            return
        record = prediction_log_pb2.PredictionLog()
        record.log_metadata.model_spec.CopyFrom(model_spec)
        record.log_metadata.sampling_config.CopyFrom(settings.sampling_config)
        record.log_metadata.saved_model_tags.append("serve")
        body = getattr(record, _LOG_FIELDS[api])
        body.request.CopyFrom(request)
        body.response.CopyFrom(response)
        try:
            collector.write(record.SerializeToString())
            METRICS.request_logged(model_name)
        except OSError as e:  # a full disk must not fail the request
            log.error("Failed to write the request log %s: %s", collector.path, e.strerror)
