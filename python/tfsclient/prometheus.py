"""grpcBench --metrics: the server's Prometheus page, read before and after each round and compared.

A small parser of Prometheus' text format instead of prometheus_client's: that package is a server
requirement, not one of the scripts' (python/requirements.txt), and only a few series are needed.
"""

import http.client
import re
import socket
import threading
import time
import urllib.parse

from .errors import ServerError


METRICS_LIMIT = 16 << 20  # bytes: TF Serving's page with hundreds of models stays far below
METRICS_TIMEOUT = 10.0  # seconds for one read of the page, unless -t is shorter
LATENCY = ":tensorflow:serving:request_latency"  # histogram, microseconds: model_name, API, entrypoint
REQUEST_COUNT = ":tensorflow:serving:request_count"  # counter: model_name, status
BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"  # histogram, rows per batch run
_WANTED = frozenset((LATENCY + "_sum", LATENCY + "_count", REQUEST_COUNT, BATCH_SIZE + "_sum", BATCH_SIZE + "_count"))
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*(?:\{(.*)\})?[ \t]*([^ \t{}]+)(?:[ \t]+-?[0-9]+)?[ \t]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class MetricsError(Exception):
    """The metrics page cannot be read, or is not Prometheus text."""


def parse_metrics(text, wanted=_WANTED):
    """Prometheus text format: {name: [(labels, value)]} for the names in `wanted` (None: every name).

    Every line is checked (a page that is not Prometheus text is an error, whichever its first line)."""
    samples = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line.strip())
        labels = _labels(match.group(2)) if match and match.group(2) is not None else {}
        value = _number(match.group(3)) if match else None
        if match is None or labels is None or value is None:
            shown = line if len(line) <= 80 else line[:80] + "..."
            raise MetricsError(f"not Prometheus text (line {number}: {shown!r})")
        if wanted is None or match.group(1) in wanted:
            samples.setdefault(match.group(1), []).append((labels, value))
    return samples


def _labels(text):
    labels, at = {}, 0
    while at < len(text):
        match = _LABEL.match(text, at)
        if match is None or match.group(1) in labels:
            return None if text[at:].strip() else labels  # only blanks after the last comma
        labels[match.group(1)] = re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], match.group(2))
        at = match.end()
        if match.group(3) == "" and at < len(text):
            return None
    return labels


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


def read_metrics(url, args):
    """The wanted series of the page at url: a bounded read (METRICS_LIMIT bytes, METRICS_TIMEOUT seconds for the
    whole exchange: a server that trickles its status line or headers a byte at a time is cut off at the deadline,
    where a socket timeout only bounds each read)."""
    timeout = min(METRICS_TIMEOUT, args.timeout)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MetricsError("cannot read it (an http:// URL is wanted)")
    make = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        connection = make(parts.hostname, parts.port, timeout=timeout)
    except ValueError as e:  # a port that is not a number
        raise MetricsError(f"cannot read it ({e})") from None
    expired = threading.Event()

    def expire():  # the deadline: whatever the exchange is waiting for ends at once
        expired.set()
        if connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                           headers={"Accept": "text/plain;version=0.0.4"})
        response = connection.getresponse()
        if response.status != 200:
            hint = (" (is the server's Prometheus page on, at that path? --monitoring_config_file)"
                    if response.status == 404 else "")
            raise MetricsError(f"HTTP {response.status} {response.reason}{hint}")
        chunks, size = [], 0
        while True:
            chunk = response.read1(1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > METRICS_LIMIT:
                raise MetricsError(f"the page is larger than {METRICS_LIMIT >> 20} MiB")
            chunks.append(chunk)
        if expired.is_set():  # the shutdown ended the read as if the page were whole
            raise MetricsError(f"no whole page within {timeout:g}s")
    except MetricsError:
        raise
    except Exception as e:
        if expired.is_set():
            raise MetricsError(f"no whole page within {timeout:g}s") from None
        if isinstance(e, TimeoutError):
            raise MetricsError(f"no answer within {timeout:g}s") from None
        if isinstance(e, http.client.RemoteDisconnected):
            raise MetricsError("cannot read it (the connection closed without an answer)") from None
        if isinstance(e, http.client.HTTPException):  # e.g. gRPC's HTTP/2 frames: the message would be binary
            raise MetricsError(f"the answer is not HTTP/1.x ({type(e).__name__}): the page is on the REST port, "
                               "not the gRPC port") from None
        if isinstance(e, OSError):
            raise MetricsError(f"cannot read it ({e.strerror or e})") from None
        if isinstance(e, ValueError):  # a bad chunked encoding
            raise MetricsError(f"cannot read it ({type(e).__name__}: {e})") from None
        raise
    finally:
        timer.cancel()
        connection.close()
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise MetricsError("not Prometheus text (not UTF-8)") from None
    return parse_metrics(text)


def server_counts(samples, model):
    """The cumulative numbers this bench compares: requests by status, Predict latency and batch sizes."""
    def total(name, match):
        values = [v for labels, v in samples.get(name, ()) if match(labels)]
        return sum(values) if values else None

    def this_model(labels):  # a series without model_name (TF Serving's batching metrics) counts for every model
        return labels.get("model_name", model) == model

    def predict(labels):  # the gRPC Predict calls of this model (not REST's, when the page says which)
        return (this_model(labels) and labels.get("API") == "Predict"
                and labels.get("entrypoint", "GRPC").upper() == "GRPC")

    statuses = {}
    for labels, value in samples.get(REQUEST_COUNT, ()):
        if labels.get("model_name") == model:
            status = labels.get("status", "")
            statuses[status] = statuses.get(status, 0.0) + value
    return {
        "requests": statuses if REQUEST_COUNT in samples else None,
        "latency_sum": total(LATENCY + "_sum", predict), "latency_count": total(LATENCY + "_count", predict),
        "batch_sum": total(BATCH_SIZE + "_sum", this_model), "batch_count": total(BATCH_SIZE + "_count", this_model),
    }


def server_round(before, after):
    """What the server counted between two readings; None where it has no such series (or it was reset)."""
    def delta(key):
        if before[key] is None or after[key] is None or after[key] < before[key]:
            return None
        return after[key] - before[key]

    by_status = None
    if after["requests"] is not None:
        old = before["requests"] or {}
        by_status = {s: round(n - old.get(s, 0.0)) for s, n in sorted(after["requests"].items())}
        if any(n < 0 for n in by_status.values()):  # the server restarted: its counters began again
            by_status = None
        else:
            by_status = {s: n for s, n in by_status.items() if n}
    latency_sum, latency_count = delta("latency_sum"), delta("latency_count")
    batch_sum, batch_count = delta("batch_sum"), delta("batch_count")
    return {
        "requests": sum(by_status.values()) if by_status is not None else None,
        "requests_by_status": by_status,
        "latency_mean_ms": round(latency_sum / latency_count / 1000.0, 4) if latency_count else None,
        "batches": round(batch_count) if batch_count is not None and batch_sum is not None else None,
        "batch_size_mean": round(batch_sum / batch_count, 3) if batch_count and batch_sum is not None else None,
    }


class ServerView:
    """--metrics: the page read before and after each round."""

    def __init__(self, url, args):
        self.url, self.args = url, args
        self.last = None
        self.failure = None  # a read that failed after the first: the rounds go on, their server numbers '-'

    def read(self, first=False):
        try:
            return server_counts(read_metrics(self.url, self.args), self.args.model)
        except MetricsError as e:
            if first:  # nothing measured yet: stop here
                raise ServerError(f"--metrics {self.url}: {e}") from None
            self.failure = self.failure or f"--metrics {self.url}: {e}"
            return None

    def start(self, first=False):
        self.last = self.read(first)

    def finish(self, ok):
        """The server's numbers for the round that just ended (ok: the client's ok answers, which the
        server counted before answering: read again, briefly, until it shows at least as many)."""
        before = self.last
        deadline = time.monotonic() + 1.0
        while True:
            after = self.read()
            if before is None or after is None:
                self.last = after
                return None
            numbers = server_round(before, after)
            if numbers["requests"] is None or numbers["requests"] >= ok or time.monotonic() > deadline:
                self.last = after
                return numbers
            time.sleep(0.05)
