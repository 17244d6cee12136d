#!/usr/bin/env python3
"""Batching on a compute-bound model: Predict throughput at concurrency 32 with and without
--enable_batching, median of rounds, beside the in-process ceiling for the batch sizes seen.

The model is two 2048x2048 float32 layers (input `x` [-1, 2048], weights fixed by seed), built here;
alone it costs ~1.3 ms for one row and ~4.5 ms for 32 (TensorFlow's kernels), so 32 clients sending
1-3 rows each can share one run. The client is independent of the scripts, closed loop, each request
tagged in its rows, and each answer checked to hold its own tags (the model echoes column 0 as `tag`):
either 4 processes x 8 threads (the client the issue measured with) or one asyncio process with 32
calls in flight, which leaves the shared cores more for the server. Its processes start once, before
the rounds; each round starts them together at a wall-clock time sent ahead. The server's batch sizes
come from its metrics page (:tensorflow:serving:batching_session:processed_batch_size); server and
client CPU a request from /proc.

Each pair (no batching, batching) is measured with the server's default kernels and both clients:
oneDNN on CPUs where TensorFlow (so TF Serving) turns it on by itself (AVX512_VNNI, AVX512_BF16,
AVX_VNNI or AMX), else TensorFlow's own. Then with the other kernels (TF_ENABLE_ONEDNN_OPTS=0 or 1)
and the asyncio client; then once more on an identity model of the same signature, which computes
nothing: the difference is what the model costs, the rest is serving and batching. With the default
asyncio pair, a bound that is not the server (serve_asyncio_bound): the same session behind a grpc.aio
Predict that parks waiting requests in an event loop instead of blocked threads.

The servers of a pair (and the bound, or the unbatched model on a batching server, where the group has
one) are all up at once, and take their rounds in turn, the order reversed every other round: the
machine drifts (the unbatched figure alone moved 20% between runs), and so each round's batched figure
is divided by the unbatched one measured beside it; the table gives the median of those ratios and
their range.

Last, both Dense pairs and the bound again with h2load (nghttp2's C load generator) as the client, in
the threads client's shape (4 connections x 8 streams): a tenth of the Python clients' CPU a request,
so the figures of a server whose clients run on other machines. Its rows are skipped, and say so,
where h2load is not installed (`apt-get install nghttp2-client`).

    .venv/bin/python benchmarks/bench_batching.py [--rounds 5] [--seconds 4]

Writes benchmarks/results/batching.md. Client and server share this machine's cores.
"""

import argparse
import collections
import contextlib
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "python"))

import numpy as np  # noqa: E402

from proc import context_switches, cpu_seconds  # noqa: E402
from report import publish  # noqa: E402
from tfsclient.prometheus import BATCH_SIZE, METRICS_LIMIT, REQUEST_COUNT, parse_metrics, server_counts  # noqa: E402
from testing.server import ServerProcess, free_port  # noqa: E402

WIDTH = 2048
PROCESSES, THREADS = 4, 8
BATCHING = ("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
            "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 1 }\n")
PROCESSED = BATCH_SIZE  # :tensorflow:serving:batching_session:processed_batch_size


def build(path, tf, identity=False):
    """The Dense model at path/1; with `identity`, one with the same signature that computes nothing
    (y is x): what serving and batching cost a request of these tensors, without the model."""
    rng = np.random.default_rng(0)
    scale = np.float32(1 / np.sqrt(WIDTH))

    class Dense(tf.Module):
        def __init__(self):
            self.w1 = tf.Variable(rng.standard_normal((WIDTH, WIDTH), np.float32) * scale)
            self.w2 = tf.Variable(rng.standard_normal((WIDTH, WIDTH), np.float32) * scale)

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(tf.nn.relu(tf.matmul(x, self.w1)), self.w2), "tag": x[:, :1]}

    class Identity(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.identity(x), "tag": x[:, :1]}

    model = Identity() if identity else Dense()
    tf.saved_model.save(model, os.path.join(path, "1"), signatures=model.__call__)


def onednn_by_default():
    """Whether TensorFlow turns oneDNN on by itself on this CPU, as the server leaves it
    (server/model_servers/runtime.py)."""
    env = {name: value for name, value in os.environ.items() if name != "TF_ENABLE_ONEDNN_OPTS"}
    code = "from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return result.stdout.split()[-1] == "True"


def kernels_env(onednn):
    """The environment of a process running the model with oneDNN or TensorFlow's kernels; oneDNN on the
    system allocator, as the server sets it."""
    return dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0", TF_ONEDNN_USE_SYSTEM_ALLOCATOR="1")


def ceiling(path, batch_sizes, onednn):
    """{rows: seconds per run} of the signature called in-process (a subprocess: oneDNN is per process)."""
    code = f"""
import os, sys, time, json
sys.path.insert(0, {REPO!r})
import numpy as np
from server.util.quiet_tf import import_tensorflow
import_tensorflow()
from server.servables.saved_model import SavedModelServable
s = SavedModelServable("Dense", 1, {os.path.join(path, "1")!r})
sig = s.signatures["serving_default"]
feed, fetch = sig.inputs["x"].name, [sig.outputs["y"].name, sig.outputs["tag"].name]
out = {{}}
for rows in {sorted(batch_sizes)!r}:
    x = np.random.rand(rows, {WIDTH}).astype(np.float32)
    for _ in range(5):
        s.run([(feed, x)], fetch)
    times = []
    for _ in range(30):
        t = time.perf_counter(); s.run([(feed, x)], fetch); times.append(time.perf_counter() - t)
    out[rows] = sorted(times)[len(times) // 2]
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=kernels_env(onednn),
                            check=True)
    import json
    return {int(k): v for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


def serve_asyncio_bound(port, model):
    """A bound, not the server: Dense's session behind a grpc.aio Predict that queues each request's rows
    for one batch thread and awaits them (no thread per waiting call), batches of whatever is queued. None
    of the server's checks, metrics, logging or deadlines; what an asyncio front end could reach here."""
    import asyncio

    import grpc
    from server.util.quiet_tf import import_tensorflow
    import_tensorflow()
    from server.servables import tensors
    from server.servables.saved_model import SavedModelServable
    from tensorflow_serving.apis import predict_pb2

    servable = SavedModelServable("Dense", 1, os.path.join(model, "1"))
    signature = servable.signatures["serving_default"]
    feed, fetch = signature.inputs["x"].name, [signature.outputs["tag"].name, signature.outputs["y"].name]
    ready, queued = threading.Condition(), []

    def batches(loop):
        while True:
            with ready:
                while not queued:
                    ready.wait()
                batch = queued[:]
                queued.clear()
            tag, y = servable.run([(feed, tensors.concat_rows([x for x, _ in batch]))], fetch)
            answers, start = [], 0
            for x, future in batch:
                answers.append((future, (tag[start:start + len(x)], y[start:start + len(x)])))
                start += len(x)
            loop.call_soon_threadsafe(lambda answers=answers: [f.set_result(a) for f, a in answers if not f.done()])

    async def main():
        loop = asyncio.get_running_loop()
        threading.Thread(target=batches, args=(loop,), daemon=True).start()

        async def predict(request, context):
            future = loop.create_future()
            with ready:
                queued.append((tensors.to_ndarray(request.inputs["x"]), future))
                ready.notify()
            tag, y = await future
            response = predict_pb2.PredictResponse()
            response.model_spec.name = "Dense"
            tensors.write_proto(response.outputs["tag"], tag)
            tensors.write_proto(response.outputs["y"], y)
            return response

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(predict, predict_pb2.PredictRequest.FromString,
                                                      predict_pb2.PredictResponse.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService", {"Predict": handler}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def _requests(seed):
    """Endless (request, tags, rows): 1-3 rows of zeros, column 0 a random tag per row."""
    from tfsclient import codec
    from tfsclient.protos import predict_pb2

    rng = np.random.default_rng(seed)
    while True:
        rows = int(rng.integers(1, 4))
        x = np.zeros((rows, WIDTH), np.float32)
        tags = rng.integers(1, 2**20, rows).astype(np.float32)
        x[:, 0] = tags
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "Dense"
        request.inputs["x"].CopyFrom(codec.make_tensor_proto(x))
        yield request, tags, rows


def _right(answer, tags, rows):
    """Whether an answer holds this request's own rows (the model echoes column 0 as `tag`)."""
    from tfsclient import codec

    return np.array_equal(codec.make_ndarray(answer.outputs["tag"]).ravel(), tags) and \
        codec.make_ndarray(answer.outputs["y"]).shape == (rows, WIDTH)


def _threads_client(target, calls, seed, commands, results):
    """One client process: `calls` threads, each a closed loop of blocking calls."""
    import grpc
    from tfsclient.protos import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    for number, (start, stop) in enumerate(iter(commands.get, None)):
        counts, latencies, errors, wrong = [0] * calls, [], [0], [0]

        def loop(index, number=number, start=start, stop=stop, counts=counts, latencies=latencies,
                 errors=errors, wrong=wrong):
            requests = _requests(seed * 100_000 + number * 100 + index)
            time.sleep(max(0.0, start - time.time()))
            while time.time() < stop:
                request, tags, rows = next(requests)
                began = time.perf_counter()
                try:
                    answer = stub.Predict(request, timeout=60)
                except grpc.RpcError:
                    errors[0] += 1
                    continue
                latencies.append(time.perf_counter() - began)
                wrong[0] += not _right(answer, tags, rows)
                counts[index] += 1

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.put((sum(counts), latencies, errors[0], wrong[0]))


def _asyncio_client(target, calls, seed, commands, results):
    """One client process: one event loop with `calls` calls in flight (grpc.aio)."""
    import asyncio

    import grpc
    from tfsclient.protos import prediction_service_pb2_grpc

    async def main():
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.aio.insecure_channel(target))
        loop = asyncio.get_running_loop()
        number = 0
        while (command := await loop.run_in_executor(None, commands.get)) is not None:
            start, stop = command
            counts, latencies, errors, wrong = [0], [], [0], [0]

            async def one(index):
                requests = _requests(seed * 100_000 + number * 100 + index)
                await asyncio.sleep(max(0.0, start - time.time()))
                while time.time() < stop:
                    request, tags, rows = next(requests)
                    began = time.perf_counter()
                    try:
                        answer = await stub.Predict(request, timeout=60)
                    except grpc.RpcError:
                        errors[0] += 1
                        continue
                    latencies.append(time.perf_counter() - began)
                    wrong[0] += not _right(answer, tags, rows)
                    counts[0] += 1

            await asyncio.gather(*(one(i) for i in range(calls)))
            results.put((counts[0], latencies, errors[0], wrong[0]))
            number += 1

    asyncio.run(main())


# Both keep 32 calls in flight. The threads client is the one the issue measured with; the asyncio
# one costs the shared cores a third less CPU a request when the server batches, so more go to the server.
CLIENTS = {"threads": (_threads_client, PROCESSES, THREADS), "asyncio": (_asyncio_client, 1, PROCESSES * THREADS)}


Round = collections.namedtuple("Round", "rps p50_ms p99_ms errors wrong server_ms client_ms switches batch")
Round.__doc__ = """One measured round: req/s, latencies, errors and wrong answers, server and client CPU ms a request,
the server's context switches a request, and its mean batch size (None: not batching, or not known)."""


class _Client:
    """A client's rounds: `round(seconds, server_pid)` is the subclass's."""

    def warm_up(self, server_pid):
        """A round not counted: the client's start, the first runs of each batch size."""
        self.round(2, server_pid)

    def measured(self, seconds, server_pid, label, batch_stats=None):
        """One Round, printed to stderr; batch_stats() gives the server's (batches, rows) so far, for the
        round's mean batch size."""
        before = batch_stats() if batch_stats else None
        result = self.round(seconds, server_pid)
        if batch_stats:
            after = batch_stats()
            runs = after[0] - before[0]
            result = result._replace(batch=(after[1] - before[1]) / runs if runs else None)
        print(f"  {label}: {result.rps:.0f} req/s, server {result.server_ms:.2f} ms, client "
              f"{result.client_ms:.2f} ms, {result.switches:.0f} server context switches a request, batch "
              f"{result.batch or '-'}", file=sys.stderr, flush=True)
        return result

    def close(self):
        pass


class Load(_Client):
    """Closed-loop client processes, started once and warmed up; each round starts them together
    (a wall-clock start sent ahead) and counts only what happens between its start and stop, so
    the processes' start-up is not in any round."""

    def __init__(self, target, client):
        worker, processes, calls = CLIENTS[client]
        context = multiprocessing.get_context("spawn")
        self._results = context.Queue()
        self._commands = [context.Queue() for _ in range(processes)]
        self._processes = [context.Process(target=worker, args=(target, calls, p, q, self._results), daemon=True)
                           for p, q in enumerate(self._commands)]
        for p in self._processes:
            p.start()

    def round(self, seconds, server_pid):
        """A Round at this load, against the server process `server_pid` (batch: None)."""
        start = time.time() + 0.5
        for q in self._commands:
            q.put((start, start + seconds))
        time.sleep(max(0.0, start - time.time()))
        server, client = cpu_seconds(server_pid), sum(cpu_seconds(p.pid) for p in self._processes)
        switches = context_switches(server_pid)
        results = [self._results.get() for _ in self._processes]
        switches = context_switches(server_pid) - switches
        server = cpu_seconds(server_pid) - server
        client = sum(cpu_seconds(p.pid) for p in self._processes) - client
        latencies = sorted(x for r in results for x in r[1])
        done = max(sum(r[0] for r in results), 1)
        return Round(done / seconds, latencies[len(latencies) // 2] * 1000,
                     latencies[int(len(latencies) * 0.99)] * 1000,
                     sum(r[2] for r in results), sum(r[3] for r in results), server * 1000 / done,
                     client * 1000 / done, switches / done, None)

    def close(self):
        for q in self._commands:
            q.put(None)
        for p in self._processes:
            p.join(30)


H2LOAD = shutil.which("h2load")  # nghttp2's load generator, in C: apt-get install nghttp2-client


class H2Load(_Client):
    """h2load as the client: PROCESSES connections x THREADS streams (the threads client's shape: a
    channel a process, a call a thread), closed loop, sending one Predict of 2 rows (the clients' mean)
    over and over as a gRPC message, for `h2load -D` whole seconds a round. It costs the shared cores
    ~0.04 ms of CPU a request where the Python clients cost 0.3-0.8 ms, so the server has the two cores
    nearly to itself: what it makes when its clients run elsewhere. It does not read the answers: the
    server's request_count (`statuses()`, where it has a metrics page) must grow by OK only."""

    def __init__(self, target, statuses=None):
        from tfsclient import codec
        from tfsclient.protos import predict_pb2

        self._target, self._statuses = target, statuses
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "Dense"
        request.inputs["x"].CopyFrom(codec.make_tensor_proto(np.ones((2, WIDTH), np.float32)))
        message = request.SerializeToString()
        self._body = tempfile.NamedTemporaryFile(suffix=".grpc")
        self._body.write(b"\0" + struct.pack(">I", len(message)) + message)  # gRPC's frame: not compressed, length
        self._body.flush()

    def round(self, seconds, server_pid):
        seconds = max(1, round(seconds))
        before = self._statuses() if self._statuses else {}
        server, switches = cpu_seconds(server_pid), context_switches(server_pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        output = subprocess.run(
            [H2LOAD, "-D", str(seconds), "-c", str(PROCESSES), "-m", str(THREADS), "-d", self._body.name,
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://{self._target}/tensorflow.serving.PredictionService/Predict"],
            capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        switches = context_switches(server_pid) - switches
        server = cpu_seconds(server_pid) - server
        counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, "
                           r"(\d+) errored, (\d+) timeout", output)
        if counts is None:
            raise RuntimeError(f"h2load printed no request counts:\n{output}")
        done, failed, errored, timeout = (int(n) for n in counts.groups())
        errors = failed + errored + timeout
        if self._statuses:
            errors += int(sum(n - before.get(status, 0) for status, n in self._statuses().items() if status != "OK"))
        client = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        done = max(done, 1)
        return Round(done / seconds, None, None, errors, None, server * 1000 / done, client * 1000 / done,
                     switches / done, None)

    def close(self):
        self._body.close()


def _samples(rest_port, names):
    """The series `names` of the server's metrics page so far, read with the scripts' Prometheus parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=30) as page:
        return parse_metrics(page.read(METRICS_LIMIT).decode(), names)


def statuses(rest_port):
    """{status: count} of Dense's request_count so far, as grpcBench.py --metrics reads it."""
    return server_counts(_samples(rest_port, {REQUEST_COUNT}), "Dense")["requests"] or {}


def client_for(target, client, rest_port=None):
    """The `client` ("threads", "asyncio" or "h2load") of `target`; h2load's errors include the server's
    non-OK request counts when `rest_port` serves its metrics."""
    if client == "h2load":
        return H2Load(target, (lambda: statuses(rest_port)) if rest_port else None)
    return Load(target, client)


def batch_stats(rest_port):
    """(count, sum) of the server's processed batch sizes so far."""
    samples = _samples(rest_port, {PROCESSED + "_count", PROCESSED + "_sum"})
    return tuple(sum(value for _, value in samples.get(PROCESSED + suffix, [])) for suffix in ("_count", "_sum"))


# How the server is asked to batch: not at all; with BATCHING; or --enable_batching with per-model
# parameters and none in the model's folder, so that the model is served unbatched by a batching server
# (whose gRPC front end is grpc.aio: the run hops to the thread pool and back). BOUND is not the server
# but serve_asyncio_bound.
OFF, ON, NOT_BATCHED, BOUND = "off", "on", "on, model not batched", "asyncio bound"

Subject = collections.namedtuple("Subject", "pid load batch_stats")
Subject.__doc__ = "A server being measured: its process id, its client, and batch_stats() (None: no metrics)."


@contextlib.contextmanager
def _bound(model, onednn):
    """(pid, target, None) of serve_asyncio_bound, ready; it serves no metrics page."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-asyncio-bound", str(port), model],
                               stdout=subprocess.PIPE, env=kernels_env(onednn))
    try:
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the asyncio bound server did not start")
        yield process.pid, f"127.0.0.1:{port}", None
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _server(model, tmp, batching, onednn):
    """(pid, target, REST port) of the server at this configuration, ready."""
    monitoring = os.path.join(tmp, "monitoring.config")
    with open(monitoring, "w") as f:
        f.write("prometheus_config { enable: true }\n")
    flags = ["--model_name=Dense", f"--model_base_path={model}", f"--monitoring_config_file={monitoring}"]
    if batching == NOT_BATCHED:
        flags += ["--enable_batching", "--enable_per_model_batching_parameters"]
    elif batching == ON:
        parameters = os.path.join(tmp, "batching.config")
        with open(parameters, "w") as f:
            f.write(BATCHING)
        flags += ["--enable_batching", f"--batching_parameters_file={parameters}"]
    rest_port = free_port()
    # kernels_env's allocator is the server's own default (server/model_servers/runtime.py)
    server = ServerProcess(*flags, env={"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"})
    server.flags.append(f"--rest_api_port={rest_port}")
    with server:
        yield server.process.pid, server.target, rest_port


@contextlib.contextmanager
def serving(model, tmp, batching, onednn, client):
    """A Subject: the server (or the bound) at this configuration, ready, with its client started."""
    started = _bound(model, onednn) if batching == BOUND else _server(model, tmp, batching, onednn)
    with started as (pid, target, rest_port):
        load = client_for(target, client, rest_port)
        try:
            yield Subject(pid, load, (lambda: batch_stats(rest_port)) if rest_port else None)
        finally:
            load.close()


def measure(model, tmp, modes, onednn, client, rounds, seconds):
    """{mode: [Round]} for each batching mode. Every mode's server is up at once, and their rounds are taken
    in turn (one round of each, the order reversed every other time), so that the machine's drift (the
    unbatched figure alone moved 20% between runs here) falls on each mode alike, and round i of one mode
    compares fairly with round i of another."""
    with contextlib.ExitStack() as stack:
        subjects = {mode: stack.enter_context(serving(model, tmp, mode, onednn, client)) for mode in modes}
        for subject in subjects.values():
            subject.load.warm_up(subject.pid)
        results = {mode: [] for mode in modes}
        for number in range(rounds):
            for mode in modes if number % 2 == 0 else modes[::-1]:
                subject = subjects[mode]
                label = f"{client} client, batching={mode} onednn={onednn}"
                results[mode].append(subject.load.measured(seconds, subject.pid, label, subject.batch_stats))
        return results


# (model, the default kernels or the others, client, batching modes)
RUNS = (("Dense", True, "threads", (OFF, ON)), ("Dense", True, "asyncio", (OFF, ON, BOUND)),
        ("Dense", False, "asyncio", (OFF, ON)), ("Identity", True, "asyncio", (OFF, ON, NOT_BATCHED)),
        ("Dense", True, "h2load", (OFF, ON, BOUND)), ("Dense", False, "h2load", (OFF, ON)))


def _number(value, places):
    return "-" if value is None else f"{value:.{places}f}"


def _line(name, kernels, client, batching, rows, ratios, batch=None, ceiling_rps=None):
    """One row of the table: the median round's figures (by req/s), every round's req/s, and the median
    (and range) of the rounds' ratios to the unbatched rounds beside them."""
    rps = statistics.median(r.rps for r in rows)
    middle = sorted(rows, key=lambda r: r.rps)[len(rows) // 2]
    ratio = f"{statistics.median(ratios):.2f}x"
    if batching != OFF:
        ratio += f" ({min(ratios):.2f}-{max(ratios):.2f})"
    return (f"| {name} | {kernels} | {client} | {batching} | {rps:.0f} | {' '.join(f'{r.rps:.0f}' for r in rows)} | "
            f"{_number(middle.p50_ms, 1)} | {_number(middle.p99_ms, 1)} | {_number(batch, 1)} | {ratio} | "
            f"{middle.server_ms:.2f} | {middle.client_ms:.2f} | {middle.switches:.0f} | {_number(ceiling_rps, 0)} | "
            f"{sum(r.errors for r in rows)} / {'-' if middle.wrong is None else sum(r.wrong for r in rows)} |")


def table(rounds, seconds):
    """The Markdown lines of the comparison (bench_server.py adds them to its own table)."""
    lines = [f"Compute-bound model (two {WIDTH}x{WIDTH} float32 layers), Predict of 1-3 rows at concurrency 32, "
             f"each answer checked for its own rows; median of {rounds} rounds of {seconds:g} s, "
             f"{os.cpu_count()} CPUs shared by client and server. The servers of one pair (or group) are up at "
             "once and take their rounds in turn, the order reversed every other round; `vs no batching` is the "
             "median of each round's ratio to the unbatched round beside it, with their range. Clients: "
             f"`threads` is {PROCESSES} processes x "
             f"{THREADS} threads of blocking calls, `asyncio` one process with {PROCESSES * THREADS} grpc.aio calls "
             "in flight; both started before the rounds. Batching: `max_batch_size 128, batch_timeout_micros 0, "
             "num_batch_threads 1`. CPU: ms of user + system time a request, from /proc, in the middle round; "
             "context switches: the server's threads', from /proc, in the same round. "
             "Identity: a model with the same signature whose `y` is `x` (what serving and batching cost a request "
             "of these tensors, without the model); `on, model not batched`: a batching server (its gRPC front "
             "end grpc.aio) "
             "serving the model unbatched (--enable_per_model_batching_parameters, no batching_params.pbtxt). "
             "Asyncio bound: not the server, but Dense's session behind a "
             "grpc.aio Predict that queues each request for one batch thread and awaits it, with none of the "
             "server's checks, metrics or logging (what an asyncio front end could reach). Ceiling: the signature "
             "run in-process, one run at a time, at "
             "the median batch size seen (2 rows a request without batching), in requests/s. "
             f"`h2load`: nghttp2's C load generator, {PROCESSES} connections x {THREADS} streams (the threads "
             "client's shape), one Predict of 2 rows over and over, rounds of whole seconds: it "
             "costs the shared cores a tenth of the Python clients' CPU, so it shows what the server makes when its "
             "clients run elsewhere. It does not read the answers (no latencies, rows not checked); its errors "
             "include any request the server's metrics count as not OK.", "",
             "| model | kernels | client | batching | req/s (median) | rounds | p50 ms | p99 ms | mean batch (rows) | "
             "vs no batching | server CPU ms/req | client CPU ms/req | server context switches/req | "
             "in-process ceiling req/s | "
             "errors / wrong rows |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        from server.util.quiet_tf import import_tensorflow
        tf = import_tensorflow()
        paths = {name: os.path.join(tmp, name, "Dense") for name in ("Dense", "Identity")}
        for name, path in paths.items():
            build(path, tf, identity=name == "Identity")
        default = onednn_by_default()
        for name, by_default, client, modes in RUNS:
            if client == "h2load" and not H2LOAD:
                lines.append(f"| {name} | | h2load | not run: no h2load on the PATH (apt-get install nghttp2-client) "
                             "| | | | | | | | | | | |")
                continue
            model = paths[name]
            onednn = default if by_default else not default
            kernels = (("oneDNN" if onednn else "TensorFlow's") + (" (default)" if by_default else
                                                                   f" (TF_ENABLE_ONEDNN_OPTS={int(onednn)})"))
            results = measure(model, tmp, modes, onednn, client, rounds, seconds)
            for batching in modes:
                rows = results[batching]
                ratios = [row.rps / off.rps for row, off in zip(rows, results[OFF])]
                batch = statistics.median(r.batch for r in rows) if batching == ON else None
                top = None
                if batching != BOUND:
                    size = max(1, round(batch)) if batch else 2
                    top = size / ceiling(model, [size], onednn)[size] / 2
                lines.append(_line(name, kernels, client, batching, rows, ratios, batch, top))
    return lines


def main():
    if sys.argv[1:2] == ["--serve-asyncio-bound"]:
        return serve_asyncio_bound(int(sys.argv[2]), sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    publish("batching", table(args.rounds, args.seconds))


if __name__ == "__main__":
    sys.exit(main())
