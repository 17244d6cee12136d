#!/usr/bin/env python3
"""Local server Predict throughput: Toy and half_plus_two, concurrency 1, 8, 32, with and without batching,
against the ceiling (the same SavedModel signature called in-process in a loop). One run, one table.

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

from server.testing import ServerProcess  # noqa: E402

TESTDATA = os.path.abspath(os.path.join(REPO, "..", "shared", "tfs-testdata"))
MODELS = {
    "Toy": (os.path.join(REPO, "models", "save", "Toy"), ["-v", "1"], "input_1", [[1.0, 2.0], [1.0, 3.0]], "output_1"),
    "half_plus_two": (os.path.join(TESTDATA, "saved_model_half_plus_two_cpu"), ["-i", "x=[[1.0], [2.0]]"], "x",
                      [[1.0], [2.0]], "y"),
}
BATCHING = "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500 }\nmax_enqueued_batches { value: 1000 }\n" \
           "num_batch_threads { value: 2 }\n"


def ceiling(seconds):
    """Calls/s of the signature in-process, one thread: the server's upper bound for one request stream."""
    import numpy as np

    from server.quiet_tf import import_tensorflow
    import_tensorflow()
    from server.servable import SavedModelServable
    from server.source import version_folders
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    ceilings = ceiling(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
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
                    for concurrency in (1, 8, 32):
                        rps, p50 = bench(server.target, model, request_args, concurrency, args.seconds)
                        rows.append((model, label, concurrency, rps, p50))
    lines = [f"Local server Predict, {args.seconds:g} s per cell, {os.cpu_count()} CPUs shared by client and server; "
             "ceiling = the signature called in-process, one thread", "",
             "| model | batching | concurrency | req/s | p50 ms | vs no batching | vs ceiling |",
             "|---|---|---:|---:|---:|---:|---:|"]
    base = {(m, c): r for m, b, c, r, _ in rows if b == "off"}
    for model, label, concurrency, rps, p50 in rows:
        lines.append(f"| {model} | {label} | {concurrency} | {rps:.0f} | {p50:.2f} | "
                     f"{rps / base[(model, concurrency)]:.2f}x | {rps / ceilings[model]:.2f}x |")
    lines += ["", "| model | ceiling calls/s |", "|---|---:|"]
    lines += [f"| {m} | {c:.0f} |" for m, c in ceilings.items()]
    table = "\n".join(lines) + "\n"
    print(table)
    os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(REPO, "benchmarks", "results", "server.md"), "w") as f:
        f.write(table)


if __name__ == "__main__":
    main()
