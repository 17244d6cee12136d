#!/usr/bin/env python3
"""The client's install and start-up, before and after the bundled protos (issue 30), in one run.

For each of two commits, `pip install ./python` into a fresh venv (after one untimed install into another, so
pip's cache is warm for both), then reports the install's time, the size of site-packages and whether TensorFlow
came along; and, against one local server, `grpcRequest.py -m Toy -v 1`'s start-up: the median wall time of 10
runs interleaved with `python -c "import grpc, numpy"` in the same venv (the floor), their ratio, and the
script's median peak RSS. Writes benchmarks/results/client_install.md.

    .venv/bin/python benchmarks/bench_client_install.py [--before a1ef759~1] [--after HEAD] [--pairs 10]

Needs network or a pip index for the installs; the "before" install brings TensorFlow (~2 GB).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from testing.server import ServerProcess  # noqa: E402
from report import publish  # noqa: E402


def export(commit, where):
    """python/ as it was at `commit`, in where/python."""
    archive = subprocess.run(["git", "-C", REPO, "archive", commit, "python"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", where], input=archive, check=True)
    return os.path.join(where, "python")


def install(source, venv):
    """Seconds `pip install source` took in the fresh venv `venv`."""
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)  # on the base interpreter, without packages
    started = time.perf_counter()
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check", source],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def site_packages_mb(venv):
    total = 0
    for root, _, files in os.walk(os.path.join(venv, "lib")):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total / 2**20


def has(venv, module):
    python = os.path.join(venv, "bin", "python")
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code]).returncode == 0


def run(command, cwd, env):
    """(wall seconds, peak RSS in MB) of one run as a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()}")
    process.stderr.close()
    return wall, usage.ru_maxrss / 1024


def start_up(venv, scripts, target, pairs):
    python = os.path.join(venv, "bin", "python")
    env = dict(os.environ, TFS_SERVER=target)
    script, floor = [python, "grpcRequest.py", "-m", "Toy", "-v", "1"], [python, "-c", "import grpc, numpy"]
    run(script, scripts, env), run(floor, scripts, env)  # warm the file cache
    script_runs, floor_runs = [], []
    for _ in range(pairs):
        script_runs.append(run(script, scripts, env))
        floor_runs.append(run(floor, scripts, env))
    wall = statistics.median(w for w, _ in script_runs)
    base = statistics.median(w for w, _ in floor_runs)
    return wall, base, statistics.median(m for _, m in script_runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="a1ef759~1", help="the last commit whose client needs TensorFlow")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-install-")
    rows = []
    try:
        models = os.path.join(REPO, "models", "save")
        with ServerProcess(f"--model_config_file={models}/toy_labels.config",
                           "--allow_version_labels_for_unavailable_models") as server:
            for label, commit in (("before", args.before), ("after", args.after)):
                tree = os.path.join(work, label)
                os.makedirs(tree)
                scripts = export(commit, tree)
                install(scripts, os.path.join(work, f"{label}-warm"))  # pip's cache, warm for the measured one
                shutil.rmtree(os.path.join(work, f"{label}-warm"))
                venv = os.path.join(work, f"{label}-venv")
                seconds = install(scripts, venv)
                wall, base, rss = start_up(venv, scripts, server.target, args.pairs)
                rows.append((label, commit, seconds, site_packages_mb(venv), has(venv, "tensorflow"),
                             has(venv, "tensorflow_serving"), wall, base, rss))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"`pip install ./python` in a fresh venv (pip's cache warm), and `grpcRequest.py -m Toy -v 1` against the "
             f"local server: median of {args.pairs} runs interleaved with `python -c \"import grpc, numpy\"` in the "
             f"same venv ({os.cpu_count()} CPUs)", "",
             "| client | install | site-packages | tensorflow / tensorflow_serving | start-up | import grpc, numpy "
             "| ratio | peak RSS |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for label, commit, seconds, size, tf, tfs, wall, base, rss in rows:
        lines.append(f"| {label} ({commit}) | {seconds:.1f} s | {size:,.0f} MB | {'yes' if tf else 'no'} / "
                     f"{'yes' if tfs else 'no'} | {wall * 1e3:.0f} ms | {base * 1e3:.0f} ms | {wall / base:.2f}x "
                     f"| {rss:.0f} MB |")
    publish("client_install", lines)


if __name__ == "__main__":
    main()
