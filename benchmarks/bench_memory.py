#!/usr/bin/env python3
"""The server's memory for one large Predict: peak RSS over idle, per request size, and what it keeps after.

One server (TF Serving's half_plus_two, whose output is as large as its input) gets one float32
Predict of each size over gRPC (tensor_content, as the scripts and tf.make_tensor_proto send it).
For each: the server's RSS when idle, its peak during the request (VmHWM, reset before each one
through /proc/PID/clear_refs) and its RSS 3 s after the answer. Aim: peak under 3x the request size
over idle, and back near idle afterwards.

The reference, in the same run: gRPC Python itself, a server whose handler echoes the request's
bytes (no parsing, no model), measured the same way. Its peak is the floor any Python gRPC server
pays for receiving and sending that many bytes.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 16,64,256] (add 1024 for a 1 GiB tensor: ~6 GB free)

Writes benchmarks/results/memory.md.
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "python"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from tfsclient import codec  # noqa: E402
from testing.server import ServerProcess, free_port, wait_until  # noqa: E402
from tfsclient.protos import predict_pb2  # noqa: E402
from report import publish  # noqa: E402

MODEL = os.path.abspath(os.path.join(REPO, "..", "shared", "tfs-testdata", "saved_model_half_plus_two_cpu"))
SETTLE_SECONDS = 3.0  # after the answer: the server's trim runs 1 s after a large request
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
PREDICT = "/tensorflow.serving.PredictionService/Predict"

# gRPC Python and nothing else: the request's bytes, unparsed, sent back as the answer.
ECHO_SERVER = """
import sys, threading
from concurrent import futures
import grpc
server = grpc.server(futures.ThreadPoolExecutor(4), options={options!r})
echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "tensorflow.serving.PredictionService", {{"Predict": echo}}),))
server.add_insecure_port("127.0.0.1:{port}")
server.start()
threading.Event().wait()
"""


def status_mb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def request(size_mb):
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "half_plus_two"
    message.inputs["x"].CopyFrom(codec.make_tensor_proto(np.ones(size_mb * 2**20 // 4, np.float32)))
    return message.SerializeToString()


def measure(pid, target, sizes, check, rounds):
    """[(size, idle, peak, after, seconds)] for Predicts of each size to the server `pid`: per size, the
    round with the median peak over idle."""
    rows = []
    with grpc.insecure_channel(target, options=UNLIMITED) as channel:
        call = channel.unary_unary(PREDICT)  # bytes in, bytes out: the client's own copies stay out of it
        call(request(1), timeout=60)  # the first run's own allocations are not the request's
        for size in sizes:
            results = []
            for _ in range(rounds):
                results.append(one_call(pid, call, size, check))
            results.sort(key=lambda r: r[1] - r[0])
            rows.append((size, *results[len(results) // 2]))
    return rows


def one_call(pid, call, size, check):
    """(idle, peak, after, seconds) of one Predict of `size` MB."""
    data = request(size)
    time.sleep(SETTLE_SECONDS)  # let the last request's trim run: nothing to poll
    idle = status_mb(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    started = time.perf_counter()
    answer = call(data, timeout=600)
    seconds = time.perf_counter() - started
    check(answer, size)
    peak = status_mb(pid, "VmHWM")
    del answer, data
    time.sleep(SETTLE_SECONDS)  # the trim is timed: nothing to poll
    after = status_mb(pid, "VmRSS")
    print(f"  {size} MB: idle {idle:.0f}, peak {peak:.0f}, after {after:.0f} MB, {seconds:.2f} s",
          file=sys.stderr, flush=True)
    return idle, peak, after, seconds


def check_predict(answer, size):
    response = predict_pb2.PredictResponse.FromString(answer)
    assert len(response.outputs["y"].float_val) == size * 2**20 // 4


def check_echo(answer, size):
    assert len(answer) > size * 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256", help="request sizes in MB (default 16,64,256)")
    parser.add_argument("--rounds", type=int, default=3, help="calls per size; the median is shown (default 3)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("the local server:", file=sys.stderr)
    with ServerProcess("--model_name=half_plus_two", f"--model_base_path={MODEL}") as server:
        ours = measure(server.process.pid, server.target, sizes, check_predict, args.rounds)
    print("gRPC Python alone (an echo server):", file=sys.stderr)
    port = free_port()
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER.format(options=UNLIMITED, port=port)],
                            env=dict(os.environ, GRPC_VERBOSITY="NONE"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_until(lambda: channel_ready(channel), timeout=60, what="the echo server")
        floor = measure(echo.pid, f"127.0.0.1:{port}", sizes, check_echo, args.rounds)
    finally:
        echo.kill()
        echo.wait()
    lines = ["Server memory for one float32 Predict on half_plus_two (answer as large as the request), "
             f"{os.cpu_count()} CPUs, median of {args.rounds} calls. gRPC Python alone: an echo server's peak "
             "for the same bytes.", "",
             "| request | idle RSS | peak RSS | peak over idle | / request size (aim < 3x) | "
             "gRPC Python alone | RSS 3 s after | kept over idle | time |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (size, idle, peak, after, seconds), (_, floor_idle, floor_peak, _, _) in zip(ours, floor):
        lines.append(f"| {size} MB | {idle:.0f} MB | {peak:.0f} MB | {peak - idle:.0f} MB | "
                     f"{(peak - idle) / size:.2f}x | {(floor_peak - floor_idle) / size:.2f}x | "
                     f"{after:.0f} MB | {after - idle:.0f} MB | {seconds:.2f} s |")
    publish("memory", lines)


def channel_ready(channel):
    try:
        grpc.channel_ready_future(channel).result(timeout=1)
        return True
    except grpc.FutureTimeoutError:
        return False


if __name__ == "__main__":
    sys.exit(main())
