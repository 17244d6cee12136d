#!/usr/bin/env python3
"""What one large REST Predict costs the small requests beside it, and what its JSON costs.

Two tables, one run:

1. The parse of one ~30 MB predict body ({"instances": 1,600 rows of 2,048 floats}), in process: the
   Python json module, as the server parsed bodies before (with its first-wins object hook), against
   the server's parser (server/model_servers/rest/json_reader.parse). Seconds, and the longest
   time a thread that wants the interpreter waits for it (the GIL held in one go): the time every
   other client of the server stands still. Median of --rounds.
2. On a real server (a model whose output is its input, so the answer is ~30 MB of JSON too): small
   requests, one at a time on two clients (a 1-row REST predict on a kept-alive connection, and a
   1-row gRPC Predict), first alone, then while the large REST predict is read, parsed, run and
   answered. Their p50, p99 and longest latency, pooled over --rounds rounds.

    .venv/bin/python benchmarks/bench_rest_stall.py [--rounds 3]

Writes benchmarks/results/rest_stall.md. Client and server share this machine's cores.
"""

import argparse
import http.client
import json
import os
import socket
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
from testing.server import ServerProcess, free_port  # noqa: E402
from tfsclient import codec  # noqa: E402
from tfsclient.protos import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

ROWS = 1600  # x 2048 floats of 6 decimals: ~30 MB of JSON
PATH = "/v1/models/Id:predict"


def large_body():
    values = np.round(np.random.default_rng(0).random((ROWS, WIDTH)), 6)
    return json.dumps({"instances": values.tolist()}).encode()


def small_body():
    return json.dumps({"instances": [[0.5] * WIDTH]}).encode()


class Stalls:
    """A thread that sleeps 1 ms at a time and notes how late it wakes: the longest wait is how long
    another thread held the interpreter."""

    def __init__(self):
        self.gaps, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now

    def stop(self):
        self._stop.set()
        self._thread.join(5)


def parse_table(body, rounds):
    """[(label, median seconds, median longest wait)] for the old and the new parser."""
    from server.model_servers.rest import json_reader

    def first_wins(pairs):
        out = {}
        for key, value in pairs:
            out.setdefault(key, value)
        return out

    old = json.JSONDecoder(object_pairs_hook=first_wins)
    parsers = [("Python json, first-wins hook", lambda: old.raw_decode(body.decode("utf-8"))[0]),
               ("the server's json_reader.parse", lambda: json_reader.parse(body))]
    rows = []
    for label, parse in parsers:
        seconds, waits = [], []
        for _ in range(rounds):
            stalls = Stalls()
            time.sleep(0.05)
            stalls.gaps.clear()
            started = time.perf_counter()
            document = parse()
            seconds.append(time.perf_counter() - started)
            stalls.stop()
            waits.append(max(stalls.gaps))
            if len(document["instances"]) != ROWS:
                raise RuntimeError(f"{label} parsed the body wrong")
            del document
        print(f"  {label}: {seconds} {waits}", file=sys.stderr, flush=True)
        rows.append((label, statistics.median(seconds), statistics.median(waits)))
    return rows


def rest_post(port, body, timeout=300):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("POST", PATH, body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    if answer.status != 200:
        raise RuntimeError(f"REST answered {answer.status}: {data[:200]!r}")
    return data


def wait_rest(port, deadline=60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the REST port did not open")


def small_clients(grpc_target, rest_port, seconds_or_event):
    """Run the two small clients, one request at a time each, until the event is set; their latencies."""
    latencies = {"REST": [], "gRPC": []}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "Id"
    request.inputs["x"].CopyFrom(codec.make_tensor_proto(np.full((1, WIDTH), 0.5, np.float32)))
    body = small_body()

    def rest():
        connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=120)
        while not seconds_or_event.is_set():
            started = time.perf_counter()
            connection.request("POST", PATH, body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"small REST answered {answer.status}")
            latencies["REST"].append(time.perf_counter() - started)
        connection.close()

    def rpc():
        with grpc.insecure_channel(grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not seconds_or_event.is_set():
                started = time.perf_counter()
                stub.Predict(request, timeout=120)
                latencies["gRPC"].append(time.perf_counter() - started)

    threads = [threading.Thread(target=rest), threading.Thread(target=rpc)]
    for thread in threads:
        thread.start()
    return threads, latencies


def measure(grpc_target, rest_port, large, rounds):
    """{"alone"/"beside": {"REST"/"gRPC": [seconds]}}, and the large call's seconds per round."""
    pooled = {"alone": {"REST": [], "gRPC": []}, "beside": {"REST": [], "gRPC": []}}
    large_seconds = []
    rest_post(rest_port, small_body())
    for _ in range(rounds):
        for phase in ("alone", "beside"):
            done = threading.Event()
            threads, latencies = small_clients(grpc_target, rest_port, done)
            time.sleep(0.3)
            for values in latencies.values():
                values.clear()  # connections warm: count from here
            answer = None
            if phase == "alone":
                time.sleep(2.0)
            else:
                started = time.perf_counter()
                answer = rest_post(rest_port, large)
                large_seconds.append(time.perf_counter() - started)
            done.set()
            for thread in threads:
                thread.join(120)
            # checked once the small clients stopped: parsing it here holds this process's interpreter
            if answer is not None and len(json.loads(answer)["predictions"]) != ROWS:
                raise RuntimeError("the large answer is not whole")
            for client, values in latencies.items():
                pooled[phase][client].extend(values)
    return pooled, large_seconds


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = large_body()
    mb = len(body) / 1e6
    lines = [f"One REST predict body of {mb:.1f} MB ({ROWS} rows of {WIDTH} floats); {os.cpu_count()} CPUs shared "
             "by client and server.", "",
             f"Parsing it in process, median of {args.rounds}:", "",
             "| parser | seconds | longest hold of the interpreter, ms |", "|---|---:|---:|"]
    for label, seconds, wait in parse_table(body, args.rounds):
        lines.append(f"| {label} | {seconds:.2f} | {wait * 1000:.0f} |")
    lines += ["", f"Small requests one at a time (1 row; REST kept alive, and gRPC) alone, then beside the large "
              f"predict on a model whose output is its input (its answer is ~{mb:.0f} MB of JSON too); pooled over "
              f"{args.rounds} rounds:", "",
              "| small requests | n | p50 ms | p99 ms | longest ms |", "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        from server.util.quiet_tf import import_tensorflow
        build(os.path.join(tmp, "Id"), import_tensorflow(), identity=True)
        rest_port = free_port()
        with ServerProcess("--model_name=Id", f"--model_base_path={os.path.join(tmp, 'Id')}",
                           f"--rest_api_port={rest_port}") as server:
            wait_rest(rest_port)
            pooled, large_seconds = measure(server.target, rest_port, body, args.rounds)
    for phase in ("alone", "beside"):
        for client in ("REST", "gRPC"):
            values = pooled[phase][client]
            label = f"{client}, {'alone' if phase == 'alone' else 'beside the large predict'}"
            lines.append(f"| {label} | {len(values)} | {percentile(values, 0.5) * 1000:.1f} | "
                         f"{percentile(values, 0.99) * 1000:.1f} | {max(values) * 1000:.0f} |")
    lines += ["", f"The large predict itself: {statistics.median(large_seconds):.2f} s, median of {args.rounds} "
              f"({' '.join(f'{s:.2f}' for s in large_seconds)})."]
    publish("rest_stall", lines)


if __name__ == "__main__":
    sys.exit(main())
