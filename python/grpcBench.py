#!/usr/bin/env python3
"""Load generator: send one Predict request many times and report throughput, latency and errors.

Closed loop (--concurrency C requests in flight, the next sent when one returns) or open loop
(--rate R: request i is sent at t0 + i/R whatever the server does, and its latency counts from
that intended time, so a server that stalls shows as latency instead of as fewer requests).
The request is built and serialized once; every send passes the same bytes to a generic call.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    import startup
    startup.quiet_interrupts()

import collections
import math
import os
import sys
import threading
import time

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
    load.add_argument("-c", "--concurrency", type=flags.count(1), metavar="C",
                      help="closed loop: keep C requests in flight (default: 1)")
    load.add_argument("-r", "--rate", type=flags.positive("the rate"), metavar="R",
                      help="open loop: send R requests/s on a fixed schedule, however many are in flight; "
                           "latency counts from each request's scheduled time")
    parser.add_argument("--warmup", type=flags.count(0), default=10, metavar="N",
                        help="first send N requests one at a time, not counted; "
                             "any failure among them stops the run (default: %(default)s)")
    parser.add_argument("--histogram", metavar="FILE.png",
                        help="also draw the latency distribution of the ok requests (needs matplotlib)")
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


def _progress_line(load):
    tally, args = load.tally, load.args
    elapsed = time.perf_counter() - load.start
    goal = f"{elapsed:.1f}/{args.duration:g} s" if args.duration is not None else f"{tally.completed}/{args.requests}"
    errors = sum(tally.errors.values())
    rate = tally.completed / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(f"\r{PROGRAM}: {goal}, {tally.completed} done, {errors} errors, {rate:.0f} req/s\033[K")
    sys.stderr.flush()


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


# -- the script ----------------------------------------------------------------------------------

def _pyplot(path):
    """matplotlib's pyplot, checked before anything is sent (it is not in requirements.txt)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise common.InputError(f"--histogram {path}: no such directory: {directory}")
    try:
        import matplotlib
    except ImportError:
        raise common.InputError("--histogram needs matplotlib, which is not installed "
                                "(pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def bench(args):
    if args.duration is None and args.requests is None:
        args.requests = 1000
    if args.rate is None and args.concurrency is None:
        args.concurrency = 1
    pyplot = _pyplot(args.histogram) if args.histogram else None
    with common.channel(args) as channel:
        stub = common.protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        payload = inputs.predict_request(args, stub).SerializeToString()
        call = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        for _ in range(args.warmup):
            answer = call(payload, timeout=common.per_call(args))  # an error here stops the run: nothing measured yet
            try:
                common.protos.predict_pb2.PredictResponse.FromString(answer)
            except Exception as e:
                raise common.ServerError(f"warmup: {UndecodableResponse(e)}") from None
        load = Load(call, payload, args)
        progress = _progress_line if sys.stderr.isatty() else None
        interrupted = False
        try:
            load.run(progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if progress:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()
    r = report(load, interrupted)
    if args.format == "json":
        common.dump_json(r)
    else:
        sys.stdout.write(text_report(r))
    sys.stdout.flush()
    if pyplot is not None:
        draw_histogram(pyplot, args.histogram, r, load.tally.latencies)
    if interrupted:
        raise KeyboardInterrupt
    if r["errors"]:
        failed = r["requests"] - r["ok"]
        first = next(iter(load.tally.first_error.values()))
        said = common.rpc_error_message(first, args) if isinstance(first, grpc.RpcError) else str(first)
        raise common.ServerError(f"{failed} of {r['requests']} requests failed, the first with: {said}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(bench, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
