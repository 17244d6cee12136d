"""Request logging: ModelConfig.logging_config, sampled requests appended as PredictionLog TFRecords.

Open-source TF Serving registers no log collector; this server has one, of type "file": the records
of a model go to `<filename_prefix>.tfrecord`. A record is in the file whole or not at all: each is
appended in one write(2), and a write that fails part-way (a full disk) is rolled back to the size
the file had before it, so a killed server loses nothing already logged and every record in the
file reads back. Records that cannot be written are dropped, counted and reported (at most one log
line per REPORT_INTERVAL seconds); logging goes on by itself once the write succeeds again.

A reload's config is checked without side effects (RequestLogger.validate opens and creates
nothing); its files are opened, and the ones no longer logged to closed, when the reload commits
(RequestLogger.update).
"""

import errno
import logging
import os
import random
import threading
import time

import grpc
from tensorflow_serving.apis import prediction_log_pb2

from tfsclient.tfrecord import frame  # the scripts' framing: they read these files

from ..util import status
from ..util.regular_files import NotRegularFile, check_regular, open_regular
from ..servables.predict_io import full_message
from ..util.metrics import METRICS

log = logging.getLogger("tensorflow_serving.core")

COLLECTOR_TYPE = "file"
REPORT_INTERVAL = 10.0  # seconds between two "records dropped" lines of one file
_LOG_FIELDS = {"Predict": "predict_log", "Classify": "classify_log", "Regress": "regress_log",
               "MultiInference": "multi_inference_log"}


def log_path(model):
    return model.logging_config.log_collector_config.filename_prefix + ".tfrecord"


class FileCollector:
    """Appends framed records to one file; one per file name, shared by the models that log there.

    `file` is an unbuffered binary file opened for appending (FileCollector.open makes one); it needs
    write (which may write short), seek(0, SEEK_END), truncate and close. `clock` paces the reports.
    """

    def __init__(self, path, file, clock=time.monotonic, reopen=None):
        self.path = path
        self._file = file
        self._clock = clock
        self._reopen = reopen  # path -> a new file: the file at `path` again, when the one held is not it
        self._lock = threading.Lock()
        self._rollback_to = None  # set while a torn record could not be cut off yet
        self._dropped = 0  # records dropped since the last report line
        self._failing = 0  # records dropped since the last successful write
        self._last_report = None

    @classmethod
    def open(cls, path):
        """Create the folders and open `path` for appending; OSError if it cannot be (NotRegularFile: a FIFO,
        a device or another non-file is there). The collector reopens `path` when the file it holds is no longer
        the one there (deleted, its folder removed, replaced)."""
        return cls(path, _open_for_append(path), reopen=_open_for_append)

    def write(self, data):
        """Append one record, whole or not at all; False (and counted, reported) when it was dropped."""
        record = frame(data)
        with self._lock:
            if self._file is None:  # closed by a reload while this request was running
                return False
            try:
                self._follow_path()
                self._append(record)
            except OSError as e:
                self._drop(e)
                return False
            if self._failing:
                log.warning("Writing the request log %s again; %d record(s) were dropped while it failed.",
                            self.path, self._failing)
                self._failing = self._dropped = 0
            return True

    def _follow_path(self):
        """Reopen the file at self.path when the one held is not it any more: deleted (rm -rf of its folder), or
        replaced by another file. Records written to a deleted file would be lost without a word; OSError (the
        record is dropped and reported, as on a full disk) when the path cannot be opened now: the next write
        tries again."""
        if self._reopen is None:
            return
        held = os.fstat(self._file.fileno())
        try:
            there = os.stat(self.path)
            if (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino):
                return
        except OSError:  # gone, or its folder replaced by a file
            pass
        new = self._reopen(self.path)
        old, self._file, self._rollback_to = self._file, new, None
        old.close()
        log.warning("The request log %s was removed or replaced; writing to a new file at that path.", self.path)

    def _append(self, record):
        if self._rollback_to is not None:
            self._file.truncate(self._rollback_to)
            self._rollback_to = None
        end = self._file.seek(0, os.SEEK_END)
        view = memoryview(record)
        written = 0
        try:
            while written < len(record):
                count = self._file.write(view[written:])
                if not count:  # no progress: as full as it gets
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += count
        except OSError:
            if written:  # a torn record: cut it off, or the records after it could not be read
                self._rollback_to = end
                try:
                    self._file.truncate(end)
                    self._rollback_to = None
                except OSError:
                    pass  # retried before the next write
            raise

    def _drop(self, error):
        self._dropped += 1
        self._failing += 1
        now = self._clock()
        if self._last_report is None or now - self._last_report >= REPORT_INTERVAL:
            log.error("Failed to write the request log %s: %s. %d record(s) dropped since the last report; "
                      "the file keeps whole records only.", self.path, error.strerror or error, self._dropped)
            self._dropped = 0
            self._last_report = now

    def close(self):
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as e:
                    log.error("Failed to close the request log %s: %s", self.path, e.strerror)
                self._file = None


def _open_for_append(path):
    """`path` opened for appending, unbuffered, its missing folders created; OSError (NotRegularFile) else."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return open(open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab", buffering=0)


def _check_writable(path):
    """Raise unless `path` could be opened for appending, as far as that can be told without creating it.

    The file must be writable if it exists; otherwise its nearest existing ancestor must be a
    writable directory (the missing folders are created when the reload commits).
    """
    def refuse(why):
        return status.invalid_argument(f"Cannot open request log {path}: {why}")

    if os.path.isdir(path):
        raise refuse("Is a directory")
    if os.path.exists(path):
        try:
            check_regular(path)
        except NotRegularFile as e:  # a FIFO would block the reload and every later one; a device, fill it
            raise refuse(e.strerror) from None
        if not os.access(path, os.W_OK):
            raise refuse("Permission denied")
        return
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(directory):
        directory = os.path.dirname(directory)
    if not os.path.isdir(directory):
        raise refuse(f"{directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise refuse(f"{directory} is not writable")


class RequestLogger:
    """The request loggers of the served config, rebuilt on each reload (unchanged files keep theirs)."""

    def __init__(self):
        self._by_model = {}  # model name -> (LoggingConfig, FileCollector)
        self._collectors = {}  # path -> FileCollector, the files the served config logs to

    def validate(self, config):
        """Raise if `config`'s logging_configs cannot be served; creates and opens nothing."""
        for model in config.model_config_list.config:
            if not model.HasField("logging_config"):
                continue
            kind = model.logging_config.log_collector_config.type
            if kind != COLLECTOR_TYPE:
                raise status.ServingError(grpc.StatusCode.NOT_FOUND,
                                          f"Cannot find LogCollector::Factory for type: {kind}")
            prefix = model.logging_config.log_collector_config.filename_prefix
            if not prefix:
                raise status.invalid_argument(
                    f"Model {model.name}: logging_config.log_collector_config.filename_prefix is empty")
            if "\0" in prefix:  # no file's path holds one: the checks below would raise ValueError
                raise status.invalid_argument(
                    f"Model {model.name}: logging_config.log_collector_config.filename_prefix holds a NUL byte")
            rate = model.logging_config.sampling_config.sampling_rate
            if not 0.0 <= rate <= 1.0:
                raise status.invalid_argument(f"Model {model.name}: sampling_rate must be in [0, 1], not {rate}")
            path = log_path(model)
            if path not in self._collectors:
                _check_writable(path)

    def update(self, config):
        """Log what the committed `config` says from now on: open its new files, close the dropped ones.

        A file that cannot be opened now (it could when validated) is logged and its models go unlogged.
        """
        collectors = {}
        wanted = {}
        for model in config.model_config_list.config:
            if not model.HasField("logging_config"):
                continue
            path = log_path(model)
            if path not in collectors:
                collector = self._collectors.get(path)
                if collector is None:
                    try:
                        collector = FileCollector.open(path)
                    except OSError as e:
                        log.error("Cannot open request log %s: %s; model %s is not logged",
                                  path, e.strerror, model.name)
                        continue
                collectors[path] = collector
            wanted[model.name] = (model.logging_config, collectors[path])
        dropped = [c for path, c in self._collectors.items() if path not in collectors]
        self._by_model = wanted
        self._collectors = collectors
        for collector in dropped:  # a request still writing to it drops its record
            collector.close()

    def logs(self, model_name):
        """Whether requests to `model_name` may be logged (a logging config with a sampling rate)."""
        entry = self._by_model.get(model_name)
        return entry is not None and entry[0].sampling_config.sampling_rate > 0.0

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
        request = full_message(request)
        if request is None:  # its large inputs were freed before logging was configured
            return
        body.request.CopyFrom(request)
        body.response.CopyFrom(full_message(response))
        if collector.write(record.SerializeToString()):  # a full disk must not fail the request
            METRICS.request_logged(model_name)
