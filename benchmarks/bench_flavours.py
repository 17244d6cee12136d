#!/usr/bin/env python3
"""gRPC server flavours for the local server: the thread pool it uses against an asyncio (grpc.aio) server.

Both serve Predict on Toy through the same ServerCore and servable; grpcBench.py loads each at
concurrency 1, 8 and 32. Writes benchmarks/results/flavours.md.

    .venv/bin/python benchmarks/bench_flavours.py [--seconds 3]
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from testing.server import ServerProcess, free_port  # noqa: E402
from report import publish  # noqa: E402

TOY = os.path.join(REPO, "models", "save", "Toy")


def serve_aio(port):
    """The asyncio flavour: async handlers on grpc.aio, the same core underneath."""
    from server.util.quiet_tf import import_tensorflow
    import_tensorflow()
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from server.core.server_core import ServerCore
    from server.model_servers.config import single_model_config
    from server.servables.driver import Inference
    from server.servables.predict_io import SplitPredictRequest
    from server.servables.saved_model import SavedModelServable

    core = ServerCore(lambda name, version, path: SavedModelServable(name, version, path))
    core.reload(single_model_config("Toy", TOY), initial=True)

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):
            with core.handle(request.model_spec) as servable:
                steps = servable.predict_steps(SplitPredictRequest(request), request.model_spec.name)
                return Inference(servable, steps).run().full_message()

    async def main():
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def bench(target, concurrency, seconds):
    out = subprocess.run([sys.executable, "grpcBench.py", "-s", target, "-m", "Toy", "-c", str(concurrency),
                          "-d", str(seconds), "--warmup", "50", "--format", "json"],
                         cwd=os.path.join(REPO, "python"), capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    return report["ok_rps"], report["latency_ms"]["p50"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--serve-aio", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_aio:
        return serve_aio(args.serve_aio)
    results = {}
    with ServerProcess("--model_name=Toy", f"--model_base_path={TOY}") as server:
        results["thread pool (the server's)"] = [bench(server.target, c, args.seconds) for c in (1, 8, 32)]
    port = free_port()
    aio = subprocess.Popen([sys.executable, __file__, "--serve-aio", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert aio.stdout.readline().strip() == "ready"
        results["asyncio (grpc.aio)"] = [bench(f"localhost:{port}", c, args.seconds) for c in (1, 8, 32)]
    finally:
        aio.terminate()
        aio.wait()
    lines = [f"gRPC server flavours, Predict on Toy, {args.seconds:g} s per cell, {os.cpu_count()} CPUs shared by "
             "client and server", "", "| flavour | c=1 req/s | c=8 req/s | c=32 req/s | p50 ms at c=32 |",
             "|---|---:|---:|---:|---:|"]
    for name, cells in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{rps:.0f}" for rps, _ in cells) + f" | {cells[2][1]:.2f} |")
    publish("flavours", lines)


if __name__ == "__main__":
    sys.exit(main())
