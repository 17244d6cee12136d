#!/usr/bin/env python3
"""Local server Predict throughput: Toy and half_plus_two at concurrency 1, 8, 32, with and without
batching, against two bounds; then batching on a compute-bound model (bench_batching.py). One run.

- ceiling: the same SavedModel signature called in-process in a loop (no gRPC at all);
- gRPC floor: a gRPC Python server with the same thread pool whose Predict returns a ready-made
  response (all of gRPC's cost, none of the model's). A server cannot beat it at any concurrency.

Toy and half_plus_two cost ~40 us a run, so gRPC's ~0.5 ms per call bounds them and batching has
nothing to amortize: what batching costs. The second table (bench_batching.py's) is a model of two
2048x2048 layers, the kind batching exists for: what it pays.

    .venv/bin/python benchmarks/bench_server.py [--seconds 3]

Writes benchmarks/results/server.md. Client (grpcBench.py) and server share this machine's cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from testing.server import ServerProcess, free_port  # noqa: E402
from report import publish  # noqa: E402
import bench_batching  # noqa: E402  the compute-bound comparison

TESTDATA = os.path.abspath(os.path.join(REPO, "..", "shared", "tfs-testdata"))
MODELS = {
    "Toy": (os.path.join(REPO, "models", "save", "Toy"), ["-v", "1"], "input_1", [[1.0, 2.0], [1.0, 3.0]], "output_1"),
    "half_plus_two": (os.path.join(TESTDATA, "saved_model_half_plus_two_cpu"), ["-i", "x=[[1.0], [2.0]]"], "x",
                      [[1.0], [2.0]], "y"),
}
CONCURRENCY = (1, 8, 32)
BATCHING = "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\n" \
           "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 1 }\n"


def serve_floor(port, workers):
    """The gRPC floor: Predict answers a ready-made response; no model, no parsing beyond gRPC's."""
    from concurrent import futures

    import grpc
    sys.path.insert(0, os.path.join(REPO, "python"))
    from tfsclient.protos import predict_pb2, prediction_service_pb2_grpc

    response = predict_pb2.PredictResponse()
    response.outputs["y"].dtype = 1
    response.outputs["y"].float_val.extend([3.0, 4.0])

    class Floor(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", 2**31 - 1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Floor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def ceiling(seconds):
    """Calls/s of the signature in-process, one thread: the server's upper bound for one request stream."""
    from server.util.quiet_tf import import_tensorflow
    import_tensorflow()
    from server.servables.saved_model import SavedModelServable
    from server.core.source import version_folders
    result = {}
    for name, (base, _, alias, value, output) in MODELS.items():
        folders = version_folders(name, base)
        version = 1 if name == "Toy" else max(folders)  # Toy -v 1, as the requests below
        path = folders[version]
        servable = SavedModelServable(name, version, path)
        signature = servable.signatures["serving_default"]
        feeds = [(signature.inputs[alias].name, np.array(value, np.float32))]
        fetch = [signature.outputs[output].name]
        for _ in range(200):
            servable.run(feeds, fetch)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            servable.run(feeds, fetch)
            count += 1
        result[name] = count / (time.perf_counter() - started)
        servable.close()
    return result


def bench(target, model, args, concurrency, seconds):
    command = [sys.executable, "grpcBench.py", "-s", target, "-m", model, *args, "-c", str(concurrency),
               "-d", str(seconds), "--warmup", "50", "--format", "json"]
    out = subprocess.run(command, cwd=os.path.join(REPO, "python"), capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    return report["ok_rps"], report["latency_ms"]["p50"]


def floor(workers, seconds):
    """grpcBench.py against the gRPC floor server, at each concurrency."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-floor", str(port), "--workers", str(workers)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        return {c: bench(f"127.0.0.1:{port}", "Floor", [], c, seconds)[0] for c in CONCURRENCY}
    finally:
        server.kill()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the compute-bound comparison (median)")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=4 * os.cpu_count(), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        return serve_floor(args.serve_floor, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        ceilings = ceiling(args.seconds)
        floors = floor(args.workers, args.seconds)
        config = os.path.join(tmp, "models.config")
        with open(config, "w") as f:
            f.write("model_config_list {\n" + "".join(
                f"config {{ name: '{n}' base_path: '{b}' model_platform: 'tensorflow' "
                f"model_version_policy {{ {'specific { versions: 1 }' if n == 'Toy' else 'latest {}'} }} }}\n"
                for n, (b, *_rest) in MODELS.items()) + "}\n")
        batching = os.path.join(tmp, "batching.config")
        with open(batching, "w") as f:
            f.write(BATCHING)
        rows = []
        for label, flags in (("off", []), ("on", ["--enable_batching", f"--batching_parameters_file={batching}"])):
            with ServerProcess(f"--model_config_file={config}", *flags) as server:
                for model, (_, request_args, *_rest) in MODELS.items():
                    for concurrency in CONCURRENCY:
                        rps, p50 = bench(server.target, model, request_args, concurrency, args.seconds)
                        rows.append((model, label, concurrency, rps, p50))
    lines = [f"Local server Predict, {args.seconds:g} s per cell, {os.cpu_count()} CPUs shared by client and server. "
             "ceiling = the signature called in-process (one thread, no gRPC); gRPC floor = a gRPC Python server "
             "answering a ready-made response at that concurrency", "",
             "| model | batching | concurrency | req/s | p50 ms | vs no batching | vs ceiling | vs gRPC floor |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    base = {(m, c): r for m, b, c, r, _ in rows if b == "off"}
    for model, label, concurrency, rps, p50 in rows:
        lines.append(f"| {model} | {label} | {concurrency} | {rps:.0f} | {p50:.2f} | "
                     f"{rps / base[(model, concurrency)]:.2f}x | {rps / ceilings[model]:.2f}x | "
                     f"{rps / floors[concurrency]:.2f}x |")
    lines += ["", "| bound | req/s or calls/s |", "|---|---:|"]
    lines += [f"| ceiling, {m} | {c:.0f} |" for m, c in ceilings.items()]
    lines += [f"| gRPC floor, concurrency {c} | {r:.0f} |" for c, r in floors.items()]
    lines += ["", *bench_batching.table(args.rounds, args.seconds + 1)]
    publish("server", lines)


if __name__ == "__main__":
    sys.exit(main())
