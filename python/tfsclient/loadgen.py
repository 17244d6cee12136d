"""grpcBench's engine: one Predict request sent many times, closed loop or open loop, and what came back.

Closed loop (concurrency C: C requests in flight, the next sent when one returns) or open loop (rate R:
request i is sent at t0 + i/R whatever the server does, and its latency counts from that intended time, so
a server that stalls shows as latency instead of as fewer requests). The request is serialized once; every
send passes the same bytes to a generic call.
"""

import collections
import math
import threading
import time

import grpc

from . import cli, protos

PERCENTILES = (("min", 0.0), ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0))


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
        """Count one answer; return the time it was counted at (None after Ctrl-C)."""
        now = time.perf_counter()
        code = future.code()
        failure = future.exception() if code != grpc.StatusCode.OK else None
        if code == grpc.StatusCode.OK:
            try:  # an answer that is not a PredictResponse is an error, not an ok
                protos.predict_pb2.PredictResponse.FromString(future.result())
            except Exception as e:  # protobuf's DecodeError
                code, failure = None, UndecodableResponse(e)
        with self.lock:
            if self.closed:
                return None
            self.completed += 1
            self.last_completion = now
            if code == grpc.StatusCode.OK:
                self.latencies.append(now - since)
            else:
                name = (failure.NAME if isinstance(failure, UndecodableResponse)
                        else code.name if code is not None else "UNKNOWN")
                self.errors[name] += 1
                self.first_error.setdefault(name, failure)
        return now


class LoadRun:
    """One run of requests: the schedule, the futures in flight, the tally; run() returns when all answered."""

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
        future = self.call.future(self.payload, timeout=cli.per_call(self.args))
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
        answered_at = self.tally.record(future, since)
        with self.tally.lock:
            self.in_flight.discard(future)
            self.answered += 1
            # The answer's own time decides: a later reading could pass the deadline after an answer timed
            # before it, and the run would end short of -d (elapsed_s 0.499989 for -d 0.5).
            again = self.args.rate is None and self._more(answered_at or time.perf_counter())
            if again:
                self.issued += 1
            elif self.answered == self.issued and (self.args.rate is None or self.sending_done):
                # (not `in_flight` empty: a request issued but not sent yet is in no set)
                self.finished.set()
        if again:
            self._send(time.perf_counter())

    def begin(self):
        """Send the first requests (closed loop) or start the schedule (open loop); finished is set at the end."""
        self.start = time.perf_counter()
        if self.args.duration is not None:
            self.stop_at = self.start + self.args.duration
        if self.args.rate is None:
            self._closed_loop()
        else:
            threading.Thread(target=self._open_loop, daemon=True).start()

    def run(self, progress):
        self.begin()
        _wait([self], lambda: progress(self) if progress else None, bool(progress))

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
            self.issued = first  # reserved: an early answer's replacement must not take one of their places
        for sent in range(first):
            # -d bounds the first burst too (sending -c 100000 of them took 40 s), as Ctrl-C does.
            if self.stopping or (self.stop_at is not None and time.perf_counter() >= self.stop_at):
                with self.tally.lock:
                    self.issued -= first - sent  # never sent: no answer will come
                    if self.answered == self.issued:
                        self.finished.set()
                return
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


def _wait(loads, progress, often):
    """Wait until every load finished; Ctrl-C stops them all and raises KeyboardInterrupt; a bug of ours in
    another thread is raised here."""
    try:
        for load in loads:
            while not load.finished.wait(0.25 if often else 1.0):
                progress()
    except KeyboardInterrupt:
        for load in loads:
            load.stop()
        raise
    for load in loads:
        if load.failure is not None:
            raise load.failure


def run_together(loads, progress=None):
    """--fleet: start every load (one per replica, each on its own channel) at once and wait for all of them;
    progress(loads) about four times a second if given. Ctrl-C stops them all (KeyboardInterrupt)."""
    for load in loads:
        load.begin()
    _wait(loads, lambda: progress(loads) if progress else None, bool(progress))


def spread(total, n):
    """An integer total in n shares as even as can be, the larger ones first: spread(5, 3) == [2, 2, 1]."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


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


def total_report(loads, reports, target, interrupted=False):
    """--fleet: the loads of every replica measured as one run, in the shape of report(): requests and errors
    summed, throughput over the whole run (first start to last answer), percentiles of every ok latency."""
    first = reports[0]
    ok = sum(r["ok"] for r in reports)
    requests = sum(r["requests"] for r in reports)
    errors = collections.Counter()
    for r in reports:
        errors.update(r["errors"])
    start = min(load.start for load in loads)
    end = max((load.tally.last_completion or load.start for load in loads), default=start)
    elapsed = max(end - start, 1e-9)
    latencies = [v for load in loads for v in load.tally.latencies]
    open_loop = first["loop"] == "open"
    return {
        **{k: first[k] for k in ("model", "version", "version_label", "signature", "loop", "duration", "warmup")},
        "server": target,
        "concurrency": None if open_loop else sum(r["concurrency"] for r in reports),
        "rate": round(sum(r["rate"] for r in reports), 6) if open_loop else None,
        "requests": requests,
        "ok": ok,
        "errors": dict(errors.most_common()),
        "elapsed_s": round(elapsed, 6),
        "throughput_rps": round(requests / elapsed, 3),
        "ok_rps": round(ok / elapsed, 3),
        "latency_ms": {k: round(v, 4) for k, v in percentiles(latencies).items()} if ok else None,
        "offered_rps": round(sum(r["offered_rps"] or 0 for r in reports), 3) if open_loop else None,
        "schedule_lag_ms": max(r["schedule_lag_ms"] for r in reports) if open_loop else None,
        "interrupted": interrupted,
    }


def _offered(load):
    """Open loop: the rate the requests actually left at (below --rate if the generator fell behind)."""
    if load.args.rate is None or load.last_send is None:
        return None
    if load.issued < 2:
        return load.args.rate
    return round((load.issued - 1) / max(load.last_send - load.start, 1e-9), 3)
