#!/usr/bin/env python3
"""Load generator: send one Predict request many times and report throughput, latency and errors.

Closed loop (--concurrency C requests in flight, the next sent when one returns) or open loop
(--rate R: request i is sent at t0 + i/R whatever the server does, and its latency counts from
that intended time, so a server that stalls shows as latency instead of as fewer requests).
The request is built and serialized once; every send passes the same bytes to a generic call.

A list of concurrencies (-c 1,2,4,8) is a sweep: one closed-loop round per concurrency, in the order
given, each sending -n requests (or for -d seconds), after one warmup before the first round; a table
of throughput and latency per round shows where the server's knee is (--plot draws it). --metrics reads
the server's Prometheus page before and after each round and shows its own view beside the client's.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    import startup
    startup.quiet_interrupts()

import argparse
import collections
import http.client
import math
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc

import common
import flags
import inputs

PROGRAM = "grpcBench.py"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
PERCENTILES = (("min", 0.0), ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0))


def build_parser():
    parser = common.parser("Send a Predict request many times and report throughput, latency and errors.",
                           "python3 grpcBench.py -m Toy -v 1 --concurrency 4 --duration 10", signature=True)
    inputs.add_arguments(parser)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("-n", "--requests", type=flags.count(1), metavar="N",
                        help="send N requests, warmup not counted (default: 1000 unless --duration)")
    amount.add_argument("-d", "--duration", type=flags.positive("the duration"), metavar="SECONDS",
                        help="send for this many seconds instead")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("-c", "--concurrency", type=flags.counts(1), metavar="C[,C...]",
                      help="closed loop: keep C requests in flight (default: 1); a comma list (1,2,4,8,16,32) "
                           "runs one round per concurrency, in that order, and prints a table")
    load.add_argument("-r", "--rate", type=flags.positive("the rate"), metavar="R",
                      help="open loop: send R requests/s on a fixed schedule, however many are in flight; "
                           "latency counts from each request's scheduled time")
    parser.add_argument("--warmup", type=flags.count(0), default=10, metavar="N",
                        help="first send N requests one at a time, not counted; "
                             "any failure among them stops the run (default: %(default)s)")
    parser.add_argument("--histogram", metavar="FILE.png", type=flags.text("the histogram file"),
                        help="also draw the latency distribution of the ok requests (needs matplotlib)")
    parser.add_argument("--plot", metavar="FILE.png", type=flags.text("the plot file"),
                        help="draw throughput against p99 latency, one point per concurrency (needs matplotlib)")
    parser.add_argument("--metrics", metavar="URL", type=flags.url("the metrics URL"),
                        help="the server's Prometheus page (e.g. http://localhost:8501/monitoring/prometheus/"
                             "metrics): read before and after each round to show the server's mean latency, "
                             "request count and mean batch size beside the client's numbers")
    for action in parser._actions:  # here -t bounds each request; -n or --duration bound the run
        if action.dest == "timeout":
            action.help = "seconds each request may take; inf: no limit (default: %(default)s)"
    return parser


# -- the load ------------------------------------------------------------------------------------

class UndecodableResponse(Exception):
    """An OK answer whose bytes are not a PredictResponse."""
    NAME = "UNDECODABLE_RESPONSE"

    def __str__(self):
        return f"an answer that is not a PredictResponse ({' '.join(str(self.args[0]).split())[:200]})"


class Tally:
    """What came back: latencies of the ok requests, failures by status code."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []  # seconds
        self.errors = collections.Counter()  # status code name -> count
        self.first_error = {}  # status code name -> the first RpcError (or UndecodableResponse) with it
        self.completed = 0
        self.last_completion = None
        self.closed = False  # after Ctrl-C: answers still arriving are not counted

    def record(self, future, since):
        now = time.perf_counter()
        code = future.code()
        failure = future.exception() if code != grpc.StatusCode.OK else None
        if code == grpc.StatusCode.OK:
            try:  # an answer that is not a PredictResponse is an error, not an ok
                common.protos.predict_pb2.PredictResponse.FromString(future.result())
            except Exception as e:  # protobuf's DecodeError
                code, failure = None, UndecodableResponse(e)
        with self.lock:
            if self.closed:
                return False
            self.completed += 1
            self.last_completion = now
            if code == grpc.StatusCode.OK:
                self.latencies.append(now - since)
            else:
                name = (failure.NAME if isinstance(failure, UndecodableResponse)
                        else code.name if code is not None else "UNKNOWN")
                self.errors[name] += 1
                self.first_error.setdefault(name, failure)
        return True


class Load:
    """One run: the schedule, the futures in flight, the tally; run() returns when all answered."""

    def __init__(self, call, payload, args):
        self.call, self.payload, self.args = call, payload, args
        self.tally = Tally()
        self.finished = threading.Event()
        self.issued = 0
        self.answered = 0  # run() ends when every request issued is answered and no more will be
        self.in_flight = set()
        self.start = None
        self.stop_at = None
        self.schedule_lag = 0.0  # open loop: how late the generator sent, at worst (seconds)
        self.last_send = None  # open loop: when the last request left
        self.stopping = False
        self.sending_done = False  # open loop: the schedule is over
        self.failure = None  # an exception of ours in another thread, raised again by run()

    def _send(self, since):
        future = self.call.future(self.payload, timeout=common.per_call(self.args))
        with self.tally.lock:
            self.in_flight.add(future)
        future.add_done_callback(lambda f: self._done(f, since))

    def _more(self, now):
        """Whether to send another request (call with the tally's lock held)."""
        if self.stopping:
            return False
        if self.args.duration is not None:
            return now < self.stop_at
        return self.issued < self.args.requests

    def _done(self, future, since):
        try:
            self._next(future, since)
        except BaseException as e:  # a bug of ours: grpc would swallow it and the run would never end
            self.failure = e
            self.finished.set()

    def _next(self, future, since):
        """Count an answer; in the closed loop, send the next request in its place."""
        self.tally.record(future, since)
        with self.tally.lock:
            self.in_flight.discard(future)
            self.answered += 1
            again = self.args.rate is None and self._more(time.perf_counter())
            if again:
                self.issued += 1
            elif self.answered == self.issued and (self.args.rate is None or self.sending_done):
                # (not `in_flight` empty: a request issued but not sent yet is in no set)
                self.finished.set()
        if again:
            self._send(time.perf_counter())

    def run(self, progress):
        self.start = time.perf_counter()
        if self.args.duration is not None:
            self.stop_at = self.start + self.args.duration
        if self.args.rate is None:
            self._closed_loop()
        else:
            threading.Thread(target=self._open_loop, daemon=True).start()
        try:
            while not self.finished.wait(0.25 if progress else 1.0):
                if progress:
                    progress(self)
        except KeyboardInterrupt:
            self.stop()
            raise
        if self.failure is not None:
            raise self.failure

    def _open_loop(self):
        try:
            self._schedule()
        except BaseException as e:  # a bug of ours: the main thread reports it instead of waiting forever
            if not self.stopping:
                self.failure = e
            self.finished.set()

    def _closed_loop(self):
        with self.tally.lock:
            first = min(self.args.concurrency, self.args.requests or self.args.concurrency)
            self.issued = first
        for _ in range(first):
            self._send(time.perf_counter())

    def _schedule(self):
        interval = 1.0 / self.args.rate
        i = 0
        while True:
            intended = self.start + i * interval
            with self.tally.lock:
                if self.stopping or (self.args.requests is not None and i >= self.args.requests) or (
                        self.stop_at is not None and intended >= self.stop_at):
                    self.sending_done = True
                    if self.answered == self.issued:
                        self.finished.set()
                    return
                self.issued += 1
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self.schedule_lag = max(self.schedule_lag, -delay)
            self._send(intended)  # latency from the intended time: a late send still counts as waiting
            self.last_send = time.perf_counter()
            i += 1

    def stop(self):
        """Ctrl-C: send no more, count nothing more, cancel what is in flight."""
        with self.tally.lock:
            self.stopping = True
            self.tally.closed = True
            pending = list(self.in_flight)
        for future in pending:
            future.cancel()


def _progress_line(load, label=""):
    tally, args = load.tally, load.args
    elapsed = time.perf_counter() - load.start
    goal = f"{elapsed:.1f}/{args.duration:g} s" if args.duration is not None else f"{tally.completed}/{args.requests}"
    errors = sum(tally.errors.values())
    rate = tally.completed / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(f"\r{PROGRAM}: {label}{goal}, {tally.completed} done, {errors} errors, {rate:.0f} req/s\033[K")
    sys.stderr.flush()


# -- the server's metrics (--metrics) --------------------------------------------------------------
# A small parser of Prometheus' text format instead of prometheus_client's: that package is a server
# requirement, not one of the scripts' (python/requirements.txt), and only a few series are needed.

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
    """The wanted series of the page at url: a bounded read (METRICS_LIMIT bytes, METRICS_TIMEOUT seconds)."""
    timeout = min(METRICS_TIMEOUT, args.timeout)
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks, size = [], 0
            while True:
                chunk = response.read1(1 << 16) if hasattr(response, "read1") else response.read(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > METRICS_LIMIT:
                    raise MetricsError(f"the page is larger than {METRICS_LIMIT >> 20} MiB")
                if time.monotonic() > deadline:
                    raise MetricsError(f"no whole page within {timeout:g}s")
                chunks.append(chunk)
    except urllib.error.HTTPError as e:
        hint = " (is the server's Prometheus page on, at that path? --monitoring_config_file)" if e.code == 404 else ""
        raise MetricsError(f"HTTP {e.code} {e.reason}{hint}") from None
    except urllib.error.URLError as e:
        reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
        raise MetricsError(f"cannot read it ({reason})") from None
    except TimeoutError:
        raise MetricsError(f"no answer within {timeout:g}s") from None
    except http.client.RemoteDisconnected:
        raise MetricsError("cannot read it (the connection closed without an answer)") from None
    except http.client.HTTPException as e:  # e.g. gRPC's HTTP/2 frames: the message would be binary
        raise MetricsError(f"the answer is not HTTP/1.x ({type(e).__name__}): the page is on the REST port, "
                           "not the gRPC port") from None
    except (OSError, ValueError) as e:  # a reset, a bad chunked encoding
        raise MetricsError(f"cannot read it ({type(e).__name__}: {e})") from None
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
                raise common.ServerError(f"--metrics {self.url}: {e}") from None
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


# -- the report ----------------------------------------------------------------------------------

def percentiles(latencies):
    """Nearest-rank percentiles in ms: every value is one that was measured."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    n = len(ordered)
    rank = {name: max(1, math.ceil(round(q * n / 100.0, 6))) for name, q in PERCENTILES}  # 99.9% of 1000: 999
    return {name: 1000.0 * ordered[rank[name] - 1] for name, _ in PERCENTILES}


def report(load, interrupted=False):
    args, tally = load.args, load.tally
    end = tally.last_completion or time.perf_counter()
    elapsed = max(end - load.start, 1e-9)
    ok = len(tally.latencies)
    return {
        "server": args.server,
        "model": args.model,
        "version": args.version,
        "version_label": args.version_label,
        "signature": args.signature,
        "loop": "open" if args.rate is not None else "closed",
        "concurrency": args.concurrency,
        "rate": args.rate,
        "duration": args.duration,
        "warmup": args.warmup,
        "requests": tally.completed,
        "ok": ok,
        "errors": dict(tally.errors.most_common()),
        "elapsed_s": round(elapsed, 6),
        "throughput_rps": round(tally.completed / elapsed, 3),
        "ok_rps": round(ok / elapsed, 3),
        "latency_ms": {k: round(v, 4) for k, v in percentiles(tally.latencies).items()} if ok else None,
        "offered_rps": _offered(load),
        "schedule_lag_ms": round(1000.0 * load.schedule_lag, 4) if args.rate is not None else None,
        "interrupted": interrupted,
    }


def _offered(load):
    """Open loop: the rate the requests actually left at (below --rate if the generator fell behind)."""
    if load.args.rate is None or load.last_send is None:
        return None
    if load.issued < 2:
        return load.args.rate
    return round((load.issued - 1) / max(load.last_send - load.start, 1e-9), 3)


def _target(r):
    version = (f"version {r['version']}" if r["version"] is not None
               else f"label {r['version_label']}" if r["version_label"] else "latest version")
    signature = "" if r["signature"] == "serving_default" else f", signature {r['signature']}"
    return f"Predict {r['model']} ({version}{signature}) at {r['server']}"


def text_report(r):
    if r["loop"] == "closed":
        load = f"closed loop, concurrency {r['concurrency']}"
    else:
        load = f"open loop, {r['rate']:g} req/s scheduled"
    amount = f"for {r['duration']:g} s" if r["duration"] is not None else ""
    lines = [
        f"target       {_target(r)}",
        f"load         {load}{', ' + amount if amount else ''}, after {r['warmup']} warmup requests"
        + (" (interrupted)" if r["interrupted"] else ""),
        f"requests     {r['requests']}: ok {r['ok']}, errors {r['requests'] - r['ok']}",
        f"elapsed      {r['elapsed_s']:.3f} s",
        f"throughput   {r['throughput_rps']:.1f} req/s (ok {r['ok_rps']:.1f} req/s)",
    ]
    if r["loop"] == "open":
        lag = r["schedule_lag_ms"]
        offered = r["offered_rps"]
        behind = offered is not None and offered < 0.95 * r["rate"]
        behind = " (the generator fell behind: below --rate)" if behind else ""
        offered = f"{offered:.1f} req/s" if offered is not None else "-"
        lines.append(f"offered      {offered}, sends late by {lag:.3f} ms at worst{behind}")
    if r["latency_ms"]:
        lines.append("latency ms   " + "  ".join(f"{name:>8}" for name, _ in PERCENTILES))
        lines.append("   ok        " + "  ".join(f"{r['latency_ms'][name]:8.3f}" for name, _ in PERCENTILES))
    else:
        lines.append("latency ms   (no ok request)")
    if "server_metrics" in r:
        lines.append(_server_line(r["server_metrics"]))
    if r["errors"]:
        lines.append("errors by code")
        lines.extend(f"  {code:<22}{count}" for code, count in r["errors"].items())
    return "\n".join(lines) + "\n"


def draw_histogram(pyplot, path, r, latencies):
    figure, axes = pyplot.subplots(figsize=(8, 4.5))
    if latencies:
        values = [1000.0 * v for v in latencies]
        axes.hist(values, bins=min(100, max(10, len(values) // 20)), color="#4878a8")
        axes.set_yscale("log")
        for (name, value), style in zip(((n, r["latency_ms"][n]) for n in ("p50", "p90", "p99", "p99.9")),
                                        ("-", "--", "-.", ":")):
            axes.axvline(value, color="#c03030", linestyle=style, label=f"{name} {value:.3f} ms")
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no ok request", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("requests")
    axes.set_title(f"{_target(r)}\n{r['ok']} ok, {r['throughput_rps']:.1f} req/s", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def _server_line(m):
    """--metrics for a single run: the server's numbers in one line of the text report."""
    if m is None:
        return "server       - (the metrics page could not be read)"
    statuses = ", ".join(f"{s} {n}" for s, n in (m["requests_by_status"] or {}).items())
    requests = "-" if m["requests"] is None else f"{m['requests']}" + (f" ({statuses})" if statuses else "")
    return (f"server       requests {requests}, mean latency {_cell(m['latency_mean_ms'], '.3f')} ms, "
            f"mean batch size {_cell(m['batch_size_mean'], '.2f')}")


def _cell(value, spec):
    return "-" if value is None else format(value, spec)


def sweep_report(args, levels, rounds):
    """The sweep as one JSON document: what was asked, then one report per round, in order."""
    first = rounds[0]
    return {
        **{k: first[k] for k in ("server", "model", "version", "version_label", "signature", "loop")},
        "concurrency": levels,
        "requests_per_round": args.requests,
        "duration": args.duration,
        "warmup": args.warmup,
        "metrics": args.metrics,
        "rounds": rounds,
        "interrupted": any(r["interrupted"] for r in rounds),
    }


SWEEP_COLUMNS = (("concurrency", 11), ("requests", 9), ("errors", 7), ("ok req/s", 10),
                 ("p50 ms", 9), ("p90 ms", 9), ("p99 ms", 9))
SERVER_COLUMNS = (("server ms", 10), ("server req", 11), ("batch", 7))


def sweep_text(s):
    amount = f"for {s['duration']:g} s" if s["duration"] is not None else f"{s['requests_per_round']} requests"
    lines = [
        f"target       {_target(s)}",
        f"load         closed loop, {amount} per concurrency, after {s['warmup']} warmup requests before the first"
        + (" (interrupted)" if s["interrupted"] else ""),
    ]
    if s["metrics"]:
        lines.append(f"server       {s['metrics']} in each round: mean Predict latency, requests, "
                     "mean batch size (rows)")
    columns = SWEEP_COLUMNS + (SERVER_COLUMNS if s["metrics"] else ())
    lines.append("  ".join(f"{name:>{width}}" for name, width in columns))
    for r in s["rounds"]:
        latency = r["latency_ms"] or {}
        cells = [r["concurrency"], r["requests"], r["requests"] - r["ok"], f"{r['ok_rps']:.1f}",
                 *(_cell(latency.get(k), ".3f") for k in ("p50", "p90", "p99"))]
        if s["metrics"]:
            m = r.get("server_metrics") or {}
            cells += [_cell(m.get("latency_mean_ms"), ".3f"), _cell(m.get("requests"), "d"),
                      _cell(m.get("batch_size_mean"), ".2f")]
        lines.append("  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns))
                     + ("  (interrupted)" if r["interrupted"] else ""))
    if any(r["errors"] for r in s["rounds"]):
        lines.append("errors by code")
        lines.extend(f"  concurrency {r['concurrency']}: {code} {count}"
                     for r in s["rounds"] for code, count in r["errors"].items())
    return "\n".join(lines) + "\n"


def draw_sweep(pyplot, path, rounds):
    """Throughput against p99 latency, one labelled point per concurrency, joined in the order run."""
    figure, axes = pyplot.subplots(figsize=(8, 5))
    points = [(r["latency_ms"]["p99"], r["ok_rps"], r["concurrency"]) for r in rounds if r["latency_ms"]]
    if points:
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#4878a8")
        for latency, throughput, level in points:
            axes.annotate(f"c={level}", (latency, throughput), textcoords="offset points", xytext=(6, -12),
                          fontsize=8)
        axes.set_xlim(0, 1.15 * max(p[0] for p in points))  # room for the last label
        axes.set_ylim(0, 1.1 * max(p[1] for p in points) or 1)
    else:
        axes.text(0.5, 0.5, "no ok request", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (ok req/s)")
    axes.grid(True, alpha=0.3)
    axes.set_title(f"{_target(rounds[0])}\nclosed loop, one point per concurrency", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


# -- the script ----------------------------------------------------------------------------------

def _pyplot(flag, path):
    """matplotlib's pyplot, checked before anything is sent (it is not in requirements.txt)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise common.InputError(f"{flag} {path}: no such directory: {directory}")
    try:
        import matplotlib
    except ImportError:
        raise common.InputError(f"{flag} needs matplotlib, which is not installed "
                                "(pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def _check(args):
    """The flags' combinations (each value is checked by its type); defaults filled in."""
    if args.duration is None and args.requests is None:
        args.requests = 1000
    levels = args.concurrency or ([1] if args.rate is None else None)
    if args.histogram and levels and len(levels) > 1:
        raise common.InputError("--histogram draws the latencies of one run, not of a list of concurrencies "
                                "(--plot draws the sweep)")
    if args.plot and args.rate is not None:
        raise common.InputError("--plot draws one point per concurrency (-c): not with --rate")
    if args.plot and args.histogram and os.path.abspath(args.plot) == os.path.abspath(args.histogram):
        raise common.InputError(f"--plot and --histogram are the same file: {args.plot}")
    return levels


def _warmup(call, payload, args):
    for _ in range(args.warmup):
        answer = call(payload, timeout=common.per_call(args))  # an error here stops the run: nothing measured yet
        try:
            common.protos.predict_pb2.PredictResponse.FromString(answer)
        except Exception as e:
            raise common.ServerError(f"warmup: {UndecodableResponse(e)}") from None


def _round(call, payload, args, label=""):
    """One run at args' load: (the Load, whether Ctrl-C stopped it)."""
    load = Load(call, payload, args)
    progress = ((lambda load: _progress_line(load, label)) if sys.stderr.isatty() else None)
    try:
        load.run(progress)
        return load, False
    except KeyboardInterrupt:
        return load, True
    finally:
        if progress:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _failure(loads, args):
    """The exit-1 message when some requests failed, with the first error's text."""
    failed = sum(sum(load.tally.errors.values()) for load in loads)
    total = sum(load.tally.completed for load in loads)
    first = next(iter(next(load for load in loads if load.tally.errors).tally.first_error.values()))
    said = common.rpc_error_message(first, args) if isinstance(first, grpc.RpcError) else str(first)
    rounds = f" over {len(loads)} rounds" if len(loads) > 1 else ""
    return f"{failed} of {total} requests failed{rounds}, the first with: {said}"


def bench(args):
    levels = _check(args)
    pyplot = _pyplot("--histogram", args.histogram) if args.histogram else None
    plot = _pyplot("--plot", args.plot) if args.plot else None
    sweep = levels is not None and len(levels) > 1
    view = ServerView(args.metrics, args) if args.metrics else None
    loads, rounds, interrupted = [], [], False
    with common.channel(args) as channel:
        stub = common.protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        payload = inputs.predict_request(args, stub).SerializeToString()
        call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        if view:
            view.start(first=True)  # an unreachable page stops the bench before anything is measured
        _warmup(call, payload, args)
        for i, level in enumerate(levels or [None]):
            round_args = argparse.Namespace(**vars(args))
            round_args.concurrency = level
            round_args.warmup = args.warmup if i == 0 else 0  # one warmup, before the first round
            if view:
                view.start()
            load, interrupted = _round(call, payload, round_args, f"concurrency {level}: " if sweep else "")
            r = report(load, interrupted)
            if view:
                r["server_metrics"] = view.finish(r["ok"]) if not interrupted else None
            loads.append(load)
            rounds.append(r)
            if interrupted:
                break
    if sweep:
        s = sweep_report(args, levels, rounds)
        if args.format == "json":
            common.dump_json(s)
        else:
            sys.stdout.write(sweep_text(s))
    elif args.format == "json":
        common.dump_json(rounds[0])
    else:
        sys.stdout.write(text_report(rounds[0]))
    sys.stdout.flush()
    if pyplot is not None:
        draw_histogram(pyplot, args.histogram, rounds[0], loads[0].tally.latencies)
    if plot is not None:
        draw_sweep(plot, args.plot, rounds)
    if interrupted:
        raise KeyboardInterrupt
    if any(r["errors"] for r in rounds):
        raise common.ServerError(_failure(loads, args))
    if view and view.failure:
        raise common.ServerError(view.failure)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(bench, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
