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

Each pair (no batching, batching) is measured with TensorFlow's own kernels (the server's default, as
TF Serving's release build) and both clients, and with oneDNN (TF_ENABLE_ONEDNN_OPTS=1) and the
asyncio client; then once more on an identity model of the same signature, which computes nothing:
the difference is what the model costs, the rest is serving and batching. After the TensorFlow-kernels
asyncio pair, a bound that is not the server (serve_asyncio_bound): the same session behind a grpc.aio
Predict that parks waiting requests in an event loop instead of blocked threads.

    .venv/bin/python benchmarks/bench_batching.py [--rounds 5] [--seconds 4]

Writes benchmarks/results/batching.md. Client and server share this machine's cores.
"""

import argparse
import multiprocessing
import os
import re
import statistics
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

from report import publish  # noqa: E402
from testing.server import ServerProcess, free_port  # noqa: E402

WIDTH = 2048
PROCESSES, THREADS = 4, 8
BATCHING = ("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
            "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 1 }\n")
PROCESSED = ":tensorflow:serving:batching_session:processed_batch_size"


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


def ceiling(path, batch_sizes, onednn):
    """{rows: seconds per run} of the signature called in-process (a subprocess: oneDNN is per process)."""
    code = f"""
import os, sys, time, json
sys.path.insert(0, {REPO!r})
import numpy as np
from server.quiet_tf import import_tensorflow
import_tensorflow()
from server.servable import SavedModelServable
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
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    import json
    return {int(k): v for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


def serve_asyncio_bound(port, model):
    """A bound, not the server: Dense's session behind a grpc.aio Predict that queues each request's rows
    for one batch thread and awaits them (no thread per waiting call), batches of whatever is queued. None
    of the server's checks, metrics, logging or deadlines; what an asyncio front end could reach here."""
    import asyncio

    import grpc
    from server.quiet_tf import import_tensorflow
    import_tensorflow()
    from server import tensors
    from server.servable import SavedModelServable
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
            tag, y = servable.run([(feed, np.concatenate([x for x, _ in batch]))], fetch)
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


def measure_bound(model, rounds, seconds):
    """measure()'s rows for serve_asyncio_bound (no batch sizes: it exports no metrics)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-asyncio-bound", str(port), model],
                               stdout=subprocess.PIPE, env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0"))
    rows = []
    try:
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the asyncio bound server did not start")
        load = Load(f"127.0.0.1:{port}", "asyncio")
        try:
            load.round(2, process.pid)
            for _ in range(rounds):
                rows.append(load.round(seconds, process.pid) + (None,))
                print(f"  asyncio bound: {rows[-1][0]:.0f} req/s, server {rows[-1][5]:.2f} ms a request",
                      file=sys.stderr, flush=True)
        finally:
            load.close()
    finally:
        process.kill()
        process.wait()
    return rows


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
# one costs the shared cores about half as much CPU a request, so more of them go to the server.
CLIENTS = {"threads": (_threads_client, PROCESSES, THREADS), "asyncio": (_asyncio_client, 1, PROCESSES * THREADS)}


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid):
    """Voluntary + involuntary context switches of a process's live threads so far (/proc/PID/task/*/status)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:  # the thread ended
            pass
    return total


class Load:
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
        """(req/s, p50 ms, p99 ms, errors, wrong answers, server CPU ms/request, client CPU ms/request,
        server context switches/request)."""
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
        done = sum(r[0] for r in results)
        per = 1000 / max(done, 1)
        return (done / seconds, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000,
                sum(r[2] for r in results), sum(r[3] for r in results), server * per, client * per,
                switches / max(done, 1))

    def close(self):
        for q in self._commands:
            q.put(None)
        for p in self._processes:
            p.join(30)


def batch_stats(rest_port):
    """(count, sum) of the server's processed batch sizes so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=30) as page:
        text = page.read(16 << 20).decode()
    values = dict(re.findall(rf"^{re.escape(PROCESSED)}_(count|sum) (\S+)$", text, re.M))
    return float(values.get("count", 0)), float(values.get("sum", 0))


def measure(model, tmp, batching, onednn, client, rounds, seconds):
    """Per round (req/s, p50, p99, errors, wrong, server CPU ms/req, client CPU ms/req, server context
    switches/req, mean batch or None)."""
    monitoring = os.path.join(tmp, "monitoring.config")
    with open(monitoring, "w") as f:
        f.write("prometheus_config { enable: true }\n")
    flags = ["--model_name=Dense", f"--model_base_path={model}", f"--monitoring_config_file={monitoring}"]
    if batching:
        parameters = os.path.join(tmp, "batching.config")
        with open(parameters, "w") as f:
            f.write(BATCHING)
        flags += ["--enable_batching", f"--batching_parameters_file={parameters}"]
    rest_port = free_port()
    server = ServerProcess(*flags, env={"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"})
    server.flags.append(f"--rest_api_port={rest_port}")
    rows = []
    with server:
        load = Load(server.target, client)
        try:
            load.round(2, server.process.pid)  # warm-up: the client's start, the first runs of each batch size
            for _ in range(rounds):
                before = batch_stats(rest_port)
                result = load.round(seconds, server.process.pid)
                after = batch_stats(rest_port)
                runs = after[0] - before[0]
                rows.append(result + ((after[1] - before[1]) / runs if runs else None,))
                print(f"  {client} client, batching={batching} onednn={onednn}: {result[0]:.0f} req/s, server "
                      f"{result[5]:.2f} ms, client {result[6]:.2f} ms, {result[7]:.0f} server context switches a "
                      f"request, batch {rows[-1][-1] or '-'}",
                      file=sys.stderr, flush=True)
        finally:
            load.close()
    return rows


# (model, oneDNN, client); the asyncio bound follows the Dense pair it is compared with
RUNS = (("Dense", False, "threads"), ("Dense", False, "asyncio"), ("Dense", True, "asyncio"),
        ("Identity", False, "asyncio"))
BOUND_AFTER = ("Dense", False, "asyncio")


def table(rounds, seconds):
    """The Markdown lines of the comparison (bench_server.py adds them to its own table)."""
    lines = [f"Compute-bound model (two {WIDTH}x{WIDTH} float32 layers), Predict of 1-3 rows at concurrency 32, "
             f"each answer checked for its own rows; median of {rounds} rounds of {seconds:g} s, "
             f"{os.cpu_count()} CPUs shared by client and server. Clients: `threads` is {PROCESSES} processes x "
             f"{THREADS} threads of blocking calls, `asyncio` one process with {PROCESSES * THREADS} grpc.aio calls "
             "in flight; both started before the rounds. Batching: `max_batch_size 128, batch_timeout_micros 0, "
             "num_batch_threads 1`. CPU: ms of user + system time a request, from /proc, in the middle round; "
             "context switches: the server's threads', from /proc, in the same round. "
             "Identity: a model with the same signature whose `y` is `x` (what serving and batching cost a request "
             "of these tensors, without the model). Asyncio bound: not the server, but Dense's session behind a "
             "grpc.aio Predict that queues each request for one batch thread and awaits it, with none of the "
             "server's checks, metrics or logging (what an asyncio front end could reach). Ceiling: the signature run in-process, one run at a time, at "
             "the median batch size seen (2 rows a request without batching), in requests/s.", "",
             "| model | kernels | client | batching | req/s (median) | rounds | p50 ms | p99 ms | mean batch (rows) | "
             "vs no batching | server CPU ms/req | client CPU ms/req | server context switches/req | "
             "in-process ceiling req/s | "
             "errors / wrong rows |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        from server.quiet_tf import import_tensorflow
        tf = import_tensorflow()
        paths = {name: os.path.join(tmp, name, "Dense") for name in ("Dense", "Identity")}
        for name, path in paths.items():
            build(path, tf, identity=name == "Identity")
        for name, onednn, client in RUNS:
            model = paths[name]
            kernels = "oneDNN (TF_ENABLE_ONEDNN_OPTS=1)" if onednn else "TensorFlow's (default)"
            base = None
            for batching in (False, True):
                rows = measure(model, tmp, batching, onednn, client, rounds, seconds)
                rps = statistics.median(r[0] for r in rows)
                base = base or rps
                middle = sorted(rows, key=lambda r: r[0])[len(rows) // 2]
                batch = statistics.median(r[8] for r in rows) if batching else None
                size = max(1, round(batch)) if batching else 2
                top = size / ceiling(model, [size], onednn)[size] / 2
                lines.append(f"| {name} | {kernels} | {client} | {'on' if batching else 'off'} | {rps:.0f} | "
                             f"{' '.join(f'{r[0]:.0f}' for r in rows)} | {middle[1]:.1f} | {middle[2]:.1f} | "
                             f"{f'{batch:.1f}' if batch else '-'} | {rps / base:.2f}x | {middle[5]:.2f} | "
                             f"{middle[6]:.2f} | {middle[7]:.0f} | {top:.0f} | "
                             f"{sum(r[3] for r in rows)} / {sum(r[4] for r in rows)} |")
            if (name, onednn, client) == BOUND_AFTER:
                rows = measure_bound(model, rounds, seconds)
                rps = statistics.median(r[0] for r in rows)
                middle = sorted(rows, key=lambda r: r[0])[len(rows) // 2]
                lines.append(f"| {name} | {kernels} | {client} | asyncio bound | {rps:.0f} | "
                             f"{' '.join(f'{r[0]:.0f}' for r in rows)} | {middle[1]:.1f} | {middle[2]:.1f} | - | "
                             f"{rps / base:.2f}x | {middle[5]:.2f} | {middle[6]:.2f} | {middle[7]:.0f} | - | "
                             f"{sum(r[3] for r in rows)} / {sum(r[4] for r in rows)} |")
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
