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

--fleet spreads the load over every replica behind -s, one channel each, and reports each replica and the
total (a table; --format json: keyed by address, and the total), so a slow or failing pod shows up:
-c C is the requests in flight in total, spread round-robin over the replicas (C=5 over 3: 2, 2, 1; at
least one each; default one per replica); -r R is split evenly (R/3 each, each replica its own schedule);
-n N is the requests in total, split as -c is (each replica runs its share to the end; the total's
throughput counts from the first start to the last answer); -d D runs every replica for D seconds.
--warmup N is sent to each replica, all at once: a replica that fails it is reported as failed and not
loaded, and the others share the whole load. The request is built and serialized once (its signature
checked against the first replica that answers). Exit 1 names the replicas that failed or had errors.
A sweep (-c 1,2,4), --plot and --metrics are one server's: not with --fleet (exit 2); --histogram draws
every replica's latencies together.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import argparse
import os
import signal
import sys
import tempfile
import time

import grpc

from tfsclient import argtypes, bench_report, common, files, fleet, loadgen, predict_inputs
from tfsclient.prometheus import ServerView

PROGRAM = "grpcBench.py"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
# SIGTERM ends the bench as Ctrl-C does, and with the status that goes with it: Ctrl-C exits 130 (128 + SIGINT, an
# exit status rather than the signal raised again), so SIGTERM exits 143 (128 + SIGTERM), what a shell reports for
# a process SIGTERM killed, and what `kill`, `docker stop` or a CI job's timeout expect.
TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: whatever catches Ctrl-C catches it (the run stops, its report is
    printed); bench() turns it into exit 143."""


def _terminate(signum, frame):
    raise Terminated


def build_parser():
    parser = common.parser("Send a Predict request many times and report throughput, latency and errors.",
                           "python3 grpcBench.py -m Toy -v 1 --concurrency 4 --duration 10", signature=True)
    predict_inputs.add_arguments(parser)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("-n", "--requests", type=argtypes.count(1), metavar="N",
                        help="send N requests, warmup not counted (default: 1000 unless --duration)")
    # Bounds that keep a run measurable and finite: under 1 ms a run sends nothing; the open loop sleeps 1/R
    # between sends (-r 1e-300: an OverflowError; 0.001: 1000 s), and a million a second is 100 times what one
    # client sends (-r 1e300: t0 + i/R stays t0, so -d never ends the schedule).
    amount.add_argument("-d", "--duration", metavar="SECONDS",
                        type=argtypes.between("the duration", 0.001, argtypes.NO_DEADLINE, "seconds"),
                        help="send for this many seconds instead")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("-c", "--concurrency", type=argtypes.counts(1), metavar="C[,C...]",
                      help="closed loop: keep C requests in flight (default: 1; with --fleet: C in total, spread "
                           "over the replicas, default one each); a comma list (1,2,4,8,16,32) runs one round per "
                           "concurrency, in that order, and prints a table")
    load.add_argument("-r", "--rate", type=argtypes.between("the rate", 0.001, 1e6, "requests/s"), metavar="R",
                      help="open loop: send R requests/s on a fixed schedule, however many are in flight; "
                           "latency counts from each request's scheduled time")
    parser.add_argument("--warmup", type=argtypes.count(0), default=10, metavar="N",
                        help="first send N requests one at a time, not counted; "
                             "any failure among them stops the run (default: %(default)s)")
    parser.add_argument("--histogram", metavar="FILE.png", type=argtypes.text("the histogram file"),
                        help="also draw the latency distribution of the ok requests (needs matplotlib)")
    parser.add_argument("--plot", metavar="FILE.png", type=argtypes.text("the plot file"),
                        help="draw throughput against p99 latency, one point per concurrency (needs matplotlib)")
    parser.add_argument("--metrics", metavar="URL", type=argtypes.url("the metrics URL"),
                        help="the server's Prometheus page (e.g. http://localhost:8501/monitoring/prometheus/"
                             "metrics): read before and after each round to show the server's mean latency, "
                             "request count and mean batch size beside the client's numbers")
    for action in parser._actions:  # here -t bounds each request; -n or --duration bound the run
        if action.dest == "timeout":
            action.help = "seconds each request may take; inf: no limit (default: %(default)s)"
    return parser


def _progress_line(load, label=""):
    tally, args = load.tally, load.args
    elapsed = time.perf_counter() - load.start
    goal = f"{elapsed:.1f}/{args.duration:g} s" if args.duration is not None else f"{tally.completed}/{args.requests}"
    errors = sum(tally.errors.values())
    rate = tally.completed / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(f"\r{PROGRAM}: {label}{goal}, {tally.completed} done, {errors} errors, {rate:.0f} req/s\033[K")
    sys.stderr.flush()

def _pyplot(flag, path):
    """matplotlib's pyplot, and the image's path, checked before anything is sent (matplotlib is not in
    requirements.txt)."""
    _check_image_path(flag, path)
    try:
        import matplotlib
    except ImportError:
        raise common.InputError(f"{flag} needs matplotlib, which is not installed "
                                "(pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    if bench_report.image_format(path) is None:
        extension = os.path.splitext(path)[1]
        raise common.InputError(f"{flag} {path}: matplotlib cannot write {extension} files: name it .png "
                                "(or .svg, .pdf)")
    return pyplot


def _check_image_path(flag, path):
    """Where an image will go: a regular file if it exists (files.check_output_file: /dev/full or a FIFO would
    take it nowhere or block), in a folder that exists and takes a new file, as bench_report.save writes the image
    beside the path, then renames it over it. A file is made there and dropped at once to know."""
    files.check_output_file(path, flag)
    folder = os.path.dirname(os.path.realpath(path))
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise common.InputError(f"{flag}: cannot write {path}: {e.strerror or e} in the folder {folder} "
                                "(give a path in a folder you can write)") from None


def _draw(flag, path, draw):
    """draw(), which writes the image at path, after the report: a file that cannot be written is one line, exit 1."""
    try:
        draw()
    except OSError as e:
        raise common.OutputError(f"{flag}: cannot write {path}: {e.strerror or e} (the file is unchanged)") from None


def _check(args):
    """The flags' combinations (each value is checked by its type); defaults filled in."""
    if args.duration is None and args.requests is None:
        args.requests = 1000
    if args.fleet:
        _check_fleet(args)
    levels = args.concurrency or ([1] if args.rate is None else None)
    if args.histogram and levels and len(levels) > 1:
        raise common.InputError("--histogram draws the latencies of one run, not of a list of concurrencies "
                                "(--plot draws the sweep)")
    if args.plot and args.rate is not None:
        raise common.InputError("--plot draws one point per concurrency (-c): not with --rate")
    if args.plot and args.histogram and os.path.abspath(args.plot) == os.path.abspath(args.histogram):
        raise common.InputError(f"--plot and --histogram are the same file: {args.plot}")
    return levels


def _check_fleet(args):
    if args.concurrency and len(args.concurrency) > 1:
        raise common.InputError("--fleet measures one round: give one concurrency (-c 4, the total over the "
                                "replicas), not a list")
    if args.plot:
        raise common.InputError("--plot draws a sweep of concurrencies, which --fleet does not run")
    if args.metrics:
        raise common.InputError("--metrics reads one server's page: not with --fleet")


def _warmup(call, payload, args):
    for _ in range(args.warmup):
        answer = call(payload, timeout=common.per_call(args))  # an error here stops the run: nothing measured yet
        try:
            common.protos.predict_pb2.PredictResponse.FromString(answer)
        except Exception as e:
            raise common.ServerError(f"warmup: {loadgen.UndecodableResponse(e)}") from None


def _round(call, payload, args, label=""):
    """One run at args' load: (the LoadRun, the KeyboardInterrupt or Terminated that stopped it, or None)."""
    load = loadgen.LoadRun(call, payload, args)
    progress = ((lambda load: _progress_line(load, label)) if sys.stderr.isatty() else None)
    try:
        load.run(progress)
        return load, None
    except KeyboardInterrupt as e:
        return load, e
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
    """The bench, with SIGTERM handled as Ctrl-C is (the report of what came back), then exit 143."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _bench(args)
    except Terminated:
        if args.debug:
            raise
        return TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bench(args):
    levels = _check(args)
    if args.fleet:
        return bench_fleet(args)
    pyplot = _pyplot("--histogram", args.histogram) if args.histogram else None
    plot = _pyplot("--plot", args.plot) if args.plot else None
    sweep = levels is not None and len(levels) > 1
    view = ServerView(args.metrics, args) if args.metrics else None
    loads, rounds, stopped = [], [], None
    with common.client(args) as client:
        payload = predict_inputs.predict_request(args, client).SerializeToString()
        # The sends: the request's bytes as they are, through the client's channel (no protobuf work per request).
        call = client.channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        if view:
            view.start(first=True)  # an unreachable page stops the bench before anything is measured
        _warmup(call, payload, args)
        for i, level in enumerate(levels or [None]):
            round_args = argparse.Namespace(**vars(args))
            round_args.concurrency = level
            round_args.warmup = args.warmup if i == 0 else 0  # one warmup, before the first round
            if view:
                view.start()
            load, stopped = _round(call, payload, round_args, f"concurrency {level}: " if sweep else "")
            r = loadgen.report(load, stopped is not None)
            if view:
                r["server_metrics"] = view.finish(r["ok"]) if stopped is None else None
            loads.append(load)
            rounds.append(r)
            if stopped is not None:
                break
    if sweep:
        s = bench_report.sweep_report(args, levels, rounds)
        if args.format == "json":
            common.dump_json(s)
        else:
            sys.stdout.write(bench_report.sweep_text(s))
    elif args.format == "json":
        common.dump_json(rounds[0])
    else:
        sys.stdout.write(bench_report.text_report(rounds[0]))
    sys.stdout.flush()
    if pyplot is not None:
        _draw("--histogram", args.histogram,
              lambda: bench_report.draw_histogram(pyplot, args.histogram, rounds[0], loads[0].tally.latencies))
    if plot is not None:
        _draw("--plot", args.plot, lambda: bench_report.draw_sweep(plot, args.plot, rounds))
    if stopped is not None:
        raise stopped  # Ctrl-C (exit 130) or SIGTERM (143), now that the report is out
    if any(r["errors"] for r in rounds):
        raise common.ServerError(_failure(loads, args))
    if view and view.failure:
        raise common.ServerError(view.failure)


def _fleet_payload(args, replicas):
    """The serialized request, built once; with -i its inputs are checked against the signature of the first
    replica that answers GetModelMetadata (ServerError when none does)."""
    errors = []
    for replica in replicas:
        replica_args = fleet.replica_args(args, replica)
        try:
            with common.client(replica_args) as client:
                return predict_inputs.predict_request(replica_args, client).SerializeToString()
        except grpc.RpcError as e:
            errors.append(f"{replica.address}: {common.rpc_error_message(e, replica_args)}")
    raise common.ServerError(f"no replica answered GetModelMetadata (the inputs are checked against the "
                             f"signature): {'; '.join(errors[:3])}" + (" ..." if len(errors) > 3 else ""))


class _Replica:
    """One replica's channel, opened and warmed up by fleet.each (a failure there is that replica's)."""

    def __init__(self, args, payload):
        self.args, self.payload = args, payload
        self.channel = None

    def __call__(self, args):
        self.channel = common.client(args).channel
        call = self.channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        try:
            _warmup(call, self.payload, args)
        except grpc.RpcError as e:
            raise common.ServerError(f"warmup: {common.rpc_error_message(e, args)}") from None
        return call

    def close(self):
        if self.channel is not None:
            self.channel.close()


def _fleet_progress(loads):
    elapsed = time.perf_counter() - min(load.start for load in loads)
    done = sum(load.tally.completed for load in loads)
    errors = sum(sum(load.tally.errors.values()) for load in loads)
    rate = done / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(f"\r{PROGRAM}: {len(loads)} replicas, {elapsed:.1f} s, {done} done, {errors} errors, "
                     f"{rate:.0f} req/s\033[K")
    sys.stderr.flush()


def bench_fleet(args):
    """--fleet: each replica warmed up and loaded on its own channel, at the same time; one report."""
    pyplot = _pyplot("--histogram", args.histogram) if args.histogram else None
    replicas = fleet.resolve_within(args.server, args)  # -t bounds the system resolver too
    n = len(replicas)
    concurrency = args.concurrency[0] if args.concurrency else (n if args.rate is None else None)
    for flag, value in (("-c", concurrency), ("-n", args.requests)):
        if value is not None and value < n:
            raise common.InputError(f"--fleet: {flag} {value} is fewer than the {n} replicas of {args.server} "
                                    f"(at least one each: {flag} {n})")
    payload = _fleet_payload(args, replicas)
    opened = {}

    def warm(replica_args):
        opened[replica_args.server] = _Replica(replica_args, payload)
        return opened[replica_args.server](replica_args)

    stopped = None
    try:
        outcomes = fleet.each(replicas, warm, args)
        measured = [o for o in outcomes if o.ok]
        loads = []
        shares = {"concurrency": loadgen.spread(concurrency, len(measured)) if concurrency else None,
                  "requests": loadgen.spread(args.requests, len(measured)) if args.requests else None}
        for i, outcome in enumerate(measured):
            load_args = argparse.Namespace(**vars(outcome.args))
            load_args.concurrency = shares["concurrency"][i] if concurrency else None
            load_args.requests = shares["requests"][i] if args.requests else None
            load_args.rate = args.rate / len(measured) if args.rate is not None else None
            loads.append(loadgen.LoadRun(outcome.value, payload, load_args))
        if loads:
            progress = _fleet_progress if sys.stderr.isatty() else None
            try:
                loadgen.run_together(loads, progress)
            except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
                stopped = e
            finally:
                if progress:
                    sys.stderr.write("\r\033[K")
                    sys.stderr.flush()
    finally:
        for replica in opened.values():
            replica.close()
    interrupted = stopped is not None
    reports = {o.address: None for o in outcomes}
    for outcome, load in zip(measured, loads):
        reports[outcome.address] = loadgen.report(load, interrupted)
    total = loadgen.total_report(loads, [r for r in reports.values() if r], args.server, interrupted) \
        if loads else None
    document = bench_report.fleet_report(args, outcomes, reports, total, concurrency)
    if args.format == "json":
        common.dump_json(document)
    else:
        sys.stdout.write(bench_report.fleet_text(document))
    sys.stdout.flush()
    if pyplot is not None and total is not None:
        latencies = [v for load in loads for v in load.tally.latencies]
        _draw("--histogram", args.histogram,
              lambda: bench_report.draw_histogram(pyplot, args.histogram, total, latencies))
    if stopped is not None:
        raise stopped
    failing = [o for o in outcomes if not o.ok or reports[o.address]["errors"]]
    if failing:
        raise common.ServerError(_fleet_failure(outcomes, failing, loads, measured))


def _fleet_failure(outcomes, failing, loads, measured):
    """The exit-1 line: the replicas that failed their warmup or had errors, each with its first reason."""
    loads_by_address = {o.address: load for o, load in zip(measured, loads)}
    said = []
    for o in failing[:5]:
        if not o.ok:
            said.append(f"{o.address} ({o.error})")
        else:
            said.append(f"{o.address} ({_failure([loads_by_address[o.address]], o.args)})")
    more = f"; and {len(failing) - 5} more" if len(failing) > 5 else ""
    return f"{len(failing)} of {len(outcomes)} replicas failed or had errors: {'; '.join(said)}{more}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(bench, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
