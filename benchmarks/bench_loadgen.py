#!/usr/bin/env python3
"""Load generator against a seed-style loop (tf.make_tensor_proto and a blocking stub.Predict per request),
on the same local server, in one run. Writes benchmarks/results/loadgen.md.

    .venv/bin/python benchmarks/bench_loadgen.py [--seconds 3]
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from testing.server import ServerProcess  # noqa: E402
from report import publish  # noqa: E402

SEED_LOOP = """
import sys, time, grpc, tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(sys.argv[1]))
seconds, count = float(sys.argv[2]), 0
started = time.perf_counter()
while time.perf_counter() - started < seconds:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "Toy"
    request.model_spec.signature_name = "serving_default"
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0], [1.0, 3.0]], dtype=tf.float32))
    stub.Predict(request, 30)
    count += 1
print(count / (time.perf_counter() - started))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    toy = os.path.join(REPO, "models", "save", "Toy")
    rows = []
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy}") as server:
        seed = float(subprocess.run([sys.executable, "-c", SEED_LOOP, server.target, str(args.seconds)],
                                    capture_output=True, text=True, check=True).stdout)
        rows.append(("seed-style loop (TF, blocking stub, one at a time)", seed))
        for concurrency in (1, 8, 32):
            out = subprocess.run([sys.executable, "grpcBench.py", "-s", server.target, "-c", str(concurrency),
                                  "-d", str(args.seconds), "--format", "json"], cwd=os.path.join(REPO, "python"),
                                 capture_output=True, text=True, check=True).stdout
            rows.append((f"grpcBench.py -c {concurrency}", json.loads(out)["ok_rps"]))
    lines = [f"Load generator against a seed-style loop, Predict on Toy, {args.seconds:g} s each, "
             f"{os.cpu_count()} CPUs shared by client and server", "",
             "| client | req/s | vs seed loop |", "|---|---:|---:|"]
    lines += [f"| {name} | {rps:.0f} | {rps / seed:.2f}x |" for name, rps in rows]
    publish("loadgen", lines)


if __name__ == "__main__":
    main()
