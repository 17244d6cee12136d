#!/usr/bin/env python3
"""End to end: `grpcRequest.py -m Toy -v 1` against a client that imports TensorFlow, in one run.

Starts the local server, then runs each command N times as a fresh process (as a user does from a
shell) and reports the median wall time and the median peak memory (max RSS) of each, and their
ratio to our CLI. Writes the table to benchmarks/results/cli.md.

    .venv/bin/python benchmarks/bench_cli.py [--repeat 11]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from testing.server import ServerProcess  # noqa: E402
from report import publish  # noqa: E402


def measure(command, cwd, env):
    """(wall seconds, peak RSS in MB) of one run of `command` as a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()}")
    process.stderr.close()
    return wall, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    python = sys.executable
    models = os.path.join(REPO, "models", "save")
    with ServerProcess(f"--model_config_file={models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models") as server:
        env = dict(os.environ, TFS_SERVER=server.target)
        cases = [
            ("python -c 'import grpc, numpy' (floor)", [python, "-c", "import grpc, numpy"], REPO),
            ("grpcRequest.py -m Toy -v 1 (ours)", [python, "grpcRequest.py", "-m", "Toy", "-v", "1"],
             os.path.join(REPO, "python")),
            ("guide-style client importing TensorFlow", [python, os.path.join(REPO, "benchmarks", "guide_client.py"),
                                                         server.target], REPO),
        ]
        results = []
        for name, command, cwd in cases:
            measure(command, cwd, env)  # warm the file cache
            runs = [measure(command, cwd, env) for _ in range(args.repeat)]
            results.append((name, statistics.median(w for w, _ in runs), statistics.median(m for _, m in runs)))
    ours = results[1]
    lines = [f"End-to-end CLI, median of {args.repeat} runs each (fresh process per run, local server, "
             f"{os.cpu_count()} CPUs)", "",
             "| command | wall time (s) | vs ours | peak memory (MB) | vs ours |",
             "|---|---:|---:|---:|---:|"]
    for name, wall, memory in results:
        lines.append(f"| {name} | {wall:.3f} | {wall / ours[1]:.2f}x | {memory:.0f} | {memory / ours[2]:.2f}x |")
    publish("cli", lines)


if __name__ == "__main__":
    main()
