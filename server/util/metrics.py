"""The server's metrics under TF Serving's (and TensorFlow's) names, exposed in Prometheus text by prometheus_client.

TF Serving's exporter turns "/tensorflow/serving/request_count" into ":tensorflow:serving:request_count"; the
same names are used here so that dashboards and alerts written for TF Serving work unchanged. Latencies are
histograms in microseconds with TF's buckets (10 x 1.8^i, 33 of them).
"""

import threading

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import Metric

try:  # no "<name>_created" series: TF Serving has none
    from prometheus_client import disable_created_metrics
    disable_created_metrics()
except ImportError:  # older prometheus_client
    pass

DEFAULT_PATH = "/monitoring/prometheus/metrics"
_BATCHING_LOCK = threading.Lock()
_LATENCY_BUCKETS = tuple(10 * 1.8 ** i for i in range(33)) + (float("inf"),)
# TF's monitoring::Buckets::Exponential(scale, growth, count): the batching metrics' buckets
# (tensorflow_serving/batching/batching_session.cc, batching_util.h)
_QUEUING_BUCKETS = tuple(100 * 1.2 ** i for i in range(52)) + (float("inf"),)
_BATCH_SIZE_BUCKETS = tuple(float(2 ** i) for i in range(14)) + (float("inf"),)


class _Counters:
    """Counters printed under their exact names: prometheus_client's Counter would rename every one to
    "<name>_total", and dashboards made for TF Serving query ":tensorflow:serving:request_count"."""

    def __init__(self):
        self._families = {}  # name -> (help, label names, {label values: count})
        self._lock = threading.Lock()

    def declare(self, name, documentation, labels):
        self._families[name] = (documentation, labels, {})

    def add(self, name, values, amount=1):
        with self._lock:
            counts = self._families[name][2]
            counts[values] = counts.get(values, 0) + amount

    def collect(self):
        with self._lock:
            families = [(name, doc, labels, dict(counts)) for name, (doc, labels, counts) in self._families.items()]
        for name, documentation, labels, counts in families:
            if not counts:
                continue
            metric = Metric(name, documentation, "unknown")  # printed as "untyped", under the exact name
            for values, count in sorted(counts.items()):
                metric.add_sample(name, dict(zip(labels, values)), count)
            yield metric


class Metrics:
    REQUEST_COUNT = ":tensorflow:serving:request_count"
    REQUEST_COUNT_BY_VERSION = ":tensorflow:serving:request_count_by_version"  # ours: TF Serving has no version label
    REQUEST_LOG_COUNT = ":tensorflow:serving:request_log_count"
    LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"
    LOAD_LATENCY = ":tensorflow:cc:saved_model:load_latency"
    BATCHING = ":tensorflow:serving:batching_session:"

    def __init__(self):
        self.registry = CollectorRegistry()
        self.counters = _Counters()
        self.counters.declare(self.REQUEST_COUNT, "The total number of requests.", ("model_name", "status"))
        self.counters.declare(self.REQUEST_COUNT_BY_VERSION, "Requests a served version took, by model, version, "
                              "API and status.", ("model_name", "version", "API", "status"))
        self.counters.declare(self.REQUEST_LOG_COUNT, "The total number of requests logged from the model server "
                              "sliced down by model_name and status code.", ("model_name", "status_code"))
        self.counters.declare(self.LOAD_ATTEMPT_COUNT, "The number of times a SavedModel was successfully loaded.",
                              ("model_path", "status"))
        self.counters.declare(self.LOAD_LATENCY, "Latency in microseconds for SavedModels that were successfully "
                              "loaded.", ("model_path",))
        self.counters.declare(self.BATCHING + "wrapped_run_count", "Total count of run calls on the wrapped session",
                              ())
        self.registry.register(self.counters)

        def histogram(name, documentation, labels, buckets=_LATENCY_BUCKETS):
            return Histogram(name, documentation, labels, registry=self.registry, buckets=buckets)

        self.request_latency = histogram(":tensorflow:serving:request_latency", "Distribution of wall time (in "
                                         "microseconds) for Tensorflow Serving request.",
                                         ("model_name", "API", "entrypoint"))
        self.warmup_latency = histogram(":tensorflow:serving:model_warmup_latency", "Distribution of wall time (in "
                                        "microseconds) for warming up the model.", ("model_path", "status"))

        self._histogram = histogram
        self._batching = None  # made at the first batch: TF Serving prints no batching series before one

    def _batching_histograms(self):
        if self._batching is not None:
            return self._batching
        with _BATCHING_LOCK:
            if self._batching is None:
                h = self._histogram
                self._batching = (
                    h(self.BATCHING + "queuing_latency", "Distribution of wall time spent (in microseconds) in "
                      "queuing", ("thread_pool_name",), _QUEUING_BUCKETS),
                    h(self.BATCHING + "input_batch_size", "Tracks the batch size distribution on the inputs.", (),
                      _BATCH_SIZE_BUCKETS),
                    h(self.BATCHING + "processed_batch_size", "Tracks the batch size distribution on processing.",
                      (), _BATCH_SIZE_BUCKETS),
                    h(self.BATCHING + "padding_size", "Tracks the padding size distribution on batches.",
                      ("execution_batch_size",), _BATCH_SIZE_BUCKETS))
            return self._batching

    def request(self, model_name, api, entrypoint, status_name, seconds, version=""):
        """An inference call that ended with `status_name`, on `version` ("" when none was resolved).

        As TF Serving (model_servers/prediction_service_impl.cc, http_server.cc): every request counts in
        request_count, and only one that succeeded in request_latency, so a made-up model name costs one
        series, not a histogram's 36. request_count_by_version (ours) counts the requests a served version
        took: bounded by the versions served, whatever names clients send."""
        self.counters.add(self.REQUEST_COUNT, (model_name, status_name))
        if version != "":
            self.counters.add(self.REQUEST_COUNT_BY_VERSION, (model_name, str(version), api, status_name))
        if status_name == "OK":
            self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def load(self, model_path, ok, seconds):
        self.counters.add(self.LOAD_ATTEMPT_COUNT, (model_path, "success" if ok else "fail"))
        if ok:
            self.counters.add(self.LOAD_LATENCY, (model_path,), int(seconds * 1e6))

    def warmup(self, model_path, status_name, seconds):
        self.warmup_latency.labels(model_path, status_name).observe(seconds * 1e6)

    def request_logged(self, model_name, status_name="OK"):
        self.counters.add(self.REQUEST_LOG_COUNT, (model_name, status_name))

    def batch_input(self, rows):
        """A request's run joined a batching queue with `rows` rows (RecordInputBatchSize)."""
        self._batching_histograms()[1].observe(rows)

    def batch_queued(self, thread_pool_name, micros):
        """A task left its queue for a batch thread after `micros` (queuing_latency)."""
        self._batching_histograms()[0].labels(thread_pool_name).observe(micros)

    def batch_run(self, execution_batch_size, padding):
        """A batch runs at `execution_batch_size` rows, `padding` of them padding."""
        _, _, processed, padded = self._batching_histograms()
        processed.observe(execution_batch_size)
        padded.labels(str(execution_batch_size)).observe(padding)
        self.counters.add(self.BATCHING + "wrapped_run_count", ())

    def exposition(self):
        return generate_latest(self.registry)


METRICS = Metrics()  # one per process, as TF's metric registry


class Page:
    """The metrics page at the configured path (model_servers/rest/api.py serves it)."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, path):
        self.path = path or DEFAULT_PATH

    def exposition(self):
        return METRICS.exposition()

