#!/usr/bin/env python3
"""The server's memory for one large Predict: peak RSS over idle, per request size, and what it keeps after.

One server (TF Serving's half_plus_two, whose output is as large as its input) gets one float32
Predict of each size over gRPC (tensor_content, as the scripts and tf.make_tensor_proto send it).
For each: the server's RSS when idle, its peak during the request (VmHWM, reset before each one
through /proc/PID/clear_refs) and its RSS 3 s after the answer. Aim: peak under 3x the request size
over idle, and back near idle afterwards.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 16,64,256] (add 1024 for a 1 GiB tensor: ~12 GB free)

Writes benchmarks/results/memory.md.
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "python"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

import codec  # noqa: E402
from server.testing import ServerProcess  # noqa: E402
from tfs_protos import predict_pb2, prediction_service_pb2_grpc  # noqa: E402
from report import publish  # noqa: E402

MODEL = os.path.abspath(os.path.join(REPO, "..", "shared", "tfs-testdata", "saved_model_half_plus_two_cpu"))
SETTLE_SECONDS = 3.0  # after the answer: the server's trim runs 1 s after a large request


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
    return message


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256", help="request sizes in MB (default 16,64,256)")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    rows = []
    with ServerProcess("--model_name=half_plus_two", f"--model_base_path={MODEL}") as server:
        pid = server.process.pid
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        with grpc.insecure_channel(server.target, options=options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(request(1), timeout=60)  # the first run's own allocations are not the request's
            for size in sizes:
                message = request(size)
                time.sleep(SETTLE_SECONDS)  # noqa: let the last request's trim run; nothing to poll
                idle = status_mb(pid, "VmRSS")
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")  # VmHWM := VmRSS
                started = time.perf_counter()
                answer = stub.Predict(message, timeout=600)
                seconds = time.perf_counter() - started
                assert len(answer.outputs["y"].float_val) == size * 2**20 // 4
                peak = status_mb(pid, "VmHWM")
                del answer, message
                time.sleep(SETTLE_SECONDS)  # noqa: the trim is timed; nothing to poll
                after = status_mb(pid, "VmRSS")
                rows.append((size, idle, peak, after, seconds))
                print(f"  {size} MB: idle {idle:.0f}, peak {peak:.0f}, after {after:.0f} MB, {seconds:.2f} s",
                      file=sys.stderr, flush=True)
    lines = ["Server memory for one float32 Predict on half_plus_two (answer as large as the request), "
             f"{os.cpu_count()} CPUs", "",
             "| request | idle RSS | peak RSS | peak over idle | / request size (aim < 3x) | RSS 3 s after | "
             "kept over idle | time |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, idle, peak, after, seconds in rows:
        lines.append(f"| {size} MB | {idle:.0f} MB | {peak:.0f} MB | {peak - idle:.0f} MB | "
                     f"{(peak - idle) / size:.1f}x | {after:.0f} MB | {after - idle:.0f} MB | {seconds:.2f} s |")
    publish("memory", lines)


if __name__ == "__main__":
    sys.exit(main())
