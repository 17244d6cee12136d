#!/usr/bin/env python3
"""Batching on a compute-bound model: Predict throughput at concurrency 32 with and without
--enable_batching, median of rounds, beside the in-process ceiling for the batch sizes seen.

The model is two 2048x2048 float32 layers (input `x` [-1, 2048], weights fixed by seed), built here;
alone it costs ~1.3 ms for one row and ~4.5 ms for 32 (TensorFlow's kernels), so 32 clients sending
1-3 rows each can share one run. The client is independent of the scripts: 4 processes x 8 threads,
closed loop, each request tagged in its rows, and each answer checked to hold its own tags (the model
echoes column 0 as `tag`). The server's batch sizes come from its metrics page
(:tensorflow:serving:batching_session:processed_batch_size).

Each pair (no batching, batching) is measured twice: with TensorFlow's own kernels (the server's
default, as TF Serving's release build) and with oneDNN (TF_ENABLE_ONEDNN_OPTS=1).

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


def build(path, tf):
    rng = np.random.default_rng(0)
    scale = np.float32(1 / np.sqrt(WIDTH))

    class Dense(tf.Module):
        def __init__(self):
            self.w1 = tf.Variable(rng.standard_normal((WIDTH, WIDTH), np.float32) * scale)
            self.w2 = tf.Variable(rng.standard_normal((WIDTH, WIDTH), np.float32) * scale)

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(tf.nn.relu(tf.matmul(x, self.w1)), self.w2), "tag": x[:, :1]}

    model = Dense()
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


def _client(target, seconds, seed, out):
    import grpc
    from tfsclient import codec
    from tfsclient.protos import predict_pb2, prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    counts, latencies, errors, wrong = [0] * THREADS, [], [0], [0]
    stop = time.monotonic() + seconds

    def loop(index):
        rng = np.random.default_rng(seed * 100 + index)
        while time.monotonic() < stop:
            rows = int(rng.integers(1, 4))
            x = np.zeros((rows, WIDTH), np.float32)
            tags = rng.integers(1, 2**20, rows).astype(np.float32)
            x[:, 0] = tags
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "Dense"
            request.inputs["x"].CopyFrom(codec.make_tensor_proto(x))
            started = time.perf_counter()
            try:
                answer = stub.Predict(request, timeout=60)
            except grpc.RpcError:
                errors[0] += 1
                continue
            latencies.append(time.perf_counter() - started)
            if not np.array_equal(codec.make_ndarray(answer.outputs["tag"]).ravel(), tags) or \
                    codec.make_ndarray(answer.outputs["y"]).shape != (rows, WIDTH):
                wrong[0] += 1
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((sum(counts), latencies, errors[0], wrong[0]))


def load(target, seconds):
    """(req/s, p50 ms, p99 ms, errors, wrong answers) of PROCESSES x THREADS closed-loop clients."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [context.Process(target=_client, args=(target, seconds, p, out)) for p in range(PROCESSES)]
    for p in processes:
        p.start()
    results = [out.get() for _ in processes]
    for p in processes:
        p.join()
    latencies = sorted(x for r in results for x in r[1])
    done = sum(r[0] for r in results)
    return (done / seconds, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000,
            sum(r[2] for r in results), sum(r[3] for r in results))


def batch_stats(rest_port):
    """(count, sum) of the server's processed batch sizes so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=30) as page:
        text = page.read(16 << 20).decode()
    values = dict(re.findall(rf"^{re.escape(PROCESSED)}_(count|sum) (\S+)$", text, re.M))
    return float(values.get("count", 0)), float(values.get("sum", 0))


def measure(model, tmp, batching, onednn, rounds, seconds, extra_flags=()):
    """Per round (req/s, p50, p99, errors, wrong, mean batch size or None)."""
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
    server = ServerProcess(*flags, *extra_flags, env={"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"})
    server.flags.append(f"--rest_api_port={rest_port}")
    rows = []
    with server:
        load(server.target, 2)  # warm-up: the first runs of each batch size
        for _ in range(rounds):
            before = batch_stats(rest_port)
            result = load(server.target, seconds)
            after = batch_stats(rest_port)
            runs = after[0] - before[0]
            rows.append(result + ((after[1] - before[1]) / runs if runs else None,))
            print(f"  batching={batching} onednn={onednn}: {result[0]:.0f} req/s, batch "
                  f"{rows[-1][-1] or '-'}", file=sys.stderr, flush=True)
    return rows


def table(rounds, seconds):
    """The Markdown lines of the comparison (bench_server.py adds them to its own table)."""
    lines = [f"Compute-bound model (two {WIDTH}x{WIDTH} float32 layers), Predict of 1-3 rows at concurrency 32 "
             f"({PROCESSES} client processes x {THREADS} threads, each answer checked for its own rows), "
             f"median of {rounds} rounds of {seconds:g} s, {os.cpu_count()} CPUs shared by client and "
             "server. Batching: `max_batch_size 128, batch_timeout_micros 0, num_batch_threads 1`. Ceiling: the "
             "signature run in-process, one run at a time, at the median batch size seen (2 rows a request "
             "without batching), in requests/s.", "",
             "| kernels | batching | req/s (median) | rounds | p50 ms | p99 ms | mean batch (rows) | "
             "vs no batching | in-process ceiling req/s | errors / wrong rows |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        from server.quiet_tf import import_tensorflow
        model = os.path.join(tmp, "Dense")
        build(model, import_tensorflow())
        for onednn in (False, True):
            kernels = "oneDNN (TF_ENABLE_ONEDNN_OPTS=1)" if onednn else "TensorFlow's (default)"
            base = None
            for batching in (False, True):
                rows = measure(model, tmp, batching, onednn, rounds, seconds)
                rps = statistics.median(r[0] for r in rows)
                base = base or rps
                middle = sorted(rows, key=lambda r: r[0])[len(rows) // 2]
                batch = statistics.median(r[5] for r in rows) if batching else None
                size = max(1, round(batch)) if batching else 2
                top = size / ceiling(model, [size], onednn)[size] / 2
                lines.append(f"| {kernels} | {'on' if batching else 'off'} | {rps:.0f} | "
                             f"{' '.join(f'{r[0]:.0f}' for r in rows)} | {middle[1]:.1f} | {middle[2]:.1f} | "
                             f"{f'{batch:.1f}' if batch else '-'} | {rps / base:.2f}x | {top:.0f} | "
                             f"{sum(r[3] for r in rows)} / {sum(r[4] for r in rows)} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    publish("batching", table(args.rounds, args.seconds))


if __name__ == "__main__":
    sys.exit(main())
