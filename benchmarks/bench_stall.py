#!/usr/bin/env python3
"""What one very large Predict costs the small ones beside it: while a 256 MB Predict (a model whose
output is its input) is read, run and answered, 1-row Predicts on another channel, one at a time;
the longest of their waits, median of rounds. On the thread-pool server (no batching) against the
batching server, whose gRPC front end is grpc.aio: it reads and writes messages on its event loop,
so what the loop does for the large call is time the small ones wait.

    .venv/bin/python benchmarks/bench_stall.py [--rounds 5]

Writes benchmarks/results/stall.md. Client and server share this machine's cores.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "python"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from bench_batching import WIDTH, build  # noqa: E402  its Identity model: y is x
from report import publish  # noqa: E402
from testing.server import ServerProcess  # noqa: E402
from tfsclient import codec  # noqa: E402
from tfsclient.protos import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

BIG_ROWS = 32768  # x bench_batching's WIDTH (2048) float32: 256 MB each way
CHANNEL = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def request(rows):
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "Id"
    message.inputs["x"].CopyFrom(codec.make_tensor_proto(np.ones((rows, WIDTH), np.float32)))
    return message


def rounds(target, count):
    """[(seconds of the large call, longest wait of a small one)] for `count` rounds."""
    big, small, results = request(BIG_ROWS), request(1), []
    for _ in range(count):
        channels = [grpc.insecure_channel(target, options=CHANNEL) for _ in range(2)]
        large, other = (prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels)
        for _ in range(20):
            other.Predict(small, timeout=30)
        waits, done = [], threading.Event()

        def smalls():
            while not done.is_set():
                started = time.perf_counter()
                other.Predict(small, timeout=60)
                waits.append(time.perf_counter() - started)

        thread = threading.Thread(target=smalls)
        thread.start()
        time.sleep(0.3)
        started = time.perf_counter()
        answer = large.Predict(big, timeout=120)
        seconds = time.perf_counter() - started
        if len(answer.outputs["y"].float_val) + len(answer.outputs["y"].tensor_content) // 4 != BIG_ROWS * WIDTH:
            raise RuntimeError("the large answer is not whole")
        time.sleep(0.3)
        done.set()
        thread.join()
        for channel in channels:
            channel.close()
        results.append((seconds, max(waits)))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = [f"One {BIG_ROWS}x{WIDTH} float32 Predict (256 MB in, 256 MB out) on a model whose output is its input, "
             "while 1-row Predicts on another channel go one at a time; medians of "
             f"{args.rounds} rounds, {os.cpu_count()} CPUs shared by client and server.", "",
             "| server | large call s | longest small wait ms | every round's longest wait ms |",
             "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        from server.util.quiet_tf import import_tensorflow
        build(os.path.join(tmp, "Id"), import_tensorflow(), identity=True)
        parameters = os.path.join(tmp, "batching.config")
        with open(parameters, "w") as f:
            f.write("max_batch_size { value: 1000000 }\nbatch_timeout_micros { value: 0 }\n"
                    "num_batch_threads { value: 1 }\n")
        for label, flags in (("thread pool (no batching)", []),
                             ("grpc.aio (--enable_batching)",
                              ["--enable_batching", f"--batching_parameters_file={parameters}"])):
            with ServerProcess("--model_name=Id", f"--model_base_path={os.path.join(tmp, 'Id')}", *flags) as server:
                results = rounds(server.target, args.rounds)
            print(f"  {label}: {results}", file=sys.stderr, flush=True)
            lines.append(f"| {label} | {statistics.median(s for s, _ in results):.2f} | "
                         f"{statistics.median(w for _, w in results) * 1000:.0f} | "
                         f"{' '.join(f'{w * 1000:.0f}' for _, w in results)} |")
    publish("stall", lines)


if __name__ == "__main__":
    sys.exit(main())
