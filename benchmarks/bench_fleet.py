#!/usr/bin/env python3
"""--fleet on local replicas: the status check over 3 and 12 replicas against a shell loop of single-server
runs and against one single-server run, and grpcBench.py's total throughput over 3 replicas against one.

Starts 12 toy servers on free ports at once (toy_labels.config, as the README runs it). (a) Each command is
run --repeat times as a fresh process, as from a shell, and its median wall time quoted: one
`grpcModelStatus.py -m Toy` against one replica; the same in a shell loop once per replica (what a user does
without --fleet); `grpcModelStatus.py --fleet -m Toy` over the replicas (the issue's aim: 12 within 1.5x of
one single-server run). (b) grpcBench.py with the same total concurrency, on one replica and with --fleet
over 3, for --seconds each, alternated --rounds times; the median ok req/s. Client and servers share this
machine's CPUs: the ratio shows the client's cost of the fleet, not what 3 pods on their own machines give.
Writes benchmarks/results/fleet.md.

    .venv/bin/python benchmarks/bench_fleet.py [--repeat 7] [--rounds 3] [--seconds 3] [--concurrency 6]
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from testing.server import ServerProcess  # noqa: E402
from report import publish  # noqa: E402

PYTHON_DIR = os.path.join(REPO, "python")
MODELS = os.path.join(REPO, "models", "save")


def wall(command):
    """Seconds one run of `command` (a list, or a shell line) takes as a fresh process; it must exit 0."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=PYTHON_DIR, shell=isinstance(command, str), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds


def median_wall(command, repeat):
    wall(command)  # warm the file cache
    return statistics.median(wall(command) for _ in range(repeat))


def start_servers(count):
    servers = [ServerProcess(f"--model_config_file={MODELS}/toy_labels.config",
                             "--allow_version_labels_for_unavailable_models") for _ in range(count)]
    for server in servers:  # all at once: they load their models in parallel
        server.start(expect_ready=False)
    try:
        for server in servers:
            server.wait_ready(timeout=180)
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers):
    for server in servers:
        if server.process is not None:
            server.__exit__(None, None, None)


def status_rows(addresses, repeat):
    python = shlex.quote(sys.executable)
    single = [sys.executable, "grpcModelStatus.py", "-m", "Toy", "-s", addresses[0]]
    one = median_wall(single, repeat)
    rows = [("grpcModelStatus.py -m Toy, one replica", 1, one)]
    for n in (3, 12):
        chosen = addresses[:n]
        loop = (f"for s in {' '.join(chosen)}; do {python} grpcModelStatus.py -m Toy -s $s >/dev/null || exit 1; "
                "done")
        rows.append(("shell loop, once per replica", n, median_wall(loop, repeat)))
        rows.append(("grpcModelStatus.py --fleet -m Toy", n,
                     median_wall([sys.executable, "grpcModelStatus.py", "--fleet", "-m", "Toy", "-s",
                                  ",".join(chosen)], repeat)))
    return one, rows


def bench(target, fleet, args):
    command = [sys.executable, "grpcBench.py", "-s", target, "-m", "Toy", "-v", "1", "-c", str(args.concurrency),
               "-d", str(args.seconds), "--format", "json"] + (["--fleet"] if fleet else [])
    done = subprocess.run(command, cwd=PYTHON_DIR, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads(done.stdout)
    if not fleet:
        return report["ok_rps"], report["latency_ms"]["p50"], None
    total = report["total"]
    return total["ok_rps"], total["latency_ms"]["p50"], [r["ok_rps"] for r in report["replicas"].values()]


def bench_rows(addresses, args):
    """One replica, --fleet over 3, and --fleet over 3 addresses of that one server (127.0.0.1-3 at its port:
    the client's own cost of spreading, with the server side unchanged)."""
    port = addresses[0].rsplit(":", 1)[1]
    one_server = ",".join(f"127.0.0.{i}:{port}" for i in (1, 2, 3))
    single, spread, same = [], [], []
    for _ in range(args.rounds):  # alternated, so a noisy moment hits all
        single.append(bench(addresses[0], False, args))
        spread.append(bench(",".join(addresses[:3]), True, args))
        same.append(bench(one_server, True, args))
    median = lambda runs, i: statistics.median(r[i] for r in runs)  # noqa: E731
    per_replica = [statistics.median(r[2][k] for r in spread) for k in range(3)]
    return ((median(single, 0), median(single, 1)), (median(spread, 0), median(spread, 1)), per_replica,
            (median(same, 0), median(same, 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each status command (median)")
    parser.add_argument("--rounds", type=int, default=3, help="grpcBench rounds of each kind (median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="each grpcBench round's -d")
    parser.add_argument("--concurrency", type=int, default=6, help="grpcBench's -c, in total")
    args = parser.parse_args()
    started = time.perf_counter()
    servers = start_servers(12)
    ready = time.perf_counter() - started
    try:
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        one, status = status_rows(addresses, args.repeat)
        single, spread, per_replica, same = bench_rows(addresses, args)
    finally:
        stop_servers(servers)
    fleet12 = next(seconds for name, n, seconds in status if n == 12 and "--fleet" in name)
    lines = [f"Fleet mode on local replicas ({os.cpu_count()} CPUs shared by the client and every server; "
             f"12 toy servers started at once, ready in {ready:.1f} s)", "",
             f"Status check, median wall time of {args.repeat} runs (fresh process per run)", "",
             "| command | replicas | wall time (s) | vs one single-server run |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {n} | {seconds:.3f} | {seconds / one:.2f}x |" for name, n, seconds in status]
    lines += ["", f"The fleet run over 12 replicas takes {fleet12 / one:.2f}x one single-server run "
                  f"(aim: within 1.5x); the shell loop over 12 takes "
                  f"{next(s for name, n, s in status if n == 12 and 'loop' in name) / fleet12:.1f}x the fleet run.",
              "",
              f"grpcBench.py -m Toy -v 1 -c {args.concurrency} (in total) -d {args.seconds:g}, median of "
              f"{args.rounds} rounds each, alternated", "",
              "| run | ok req/s | p50 ms | vs one replica |", "|---|---:|---:|---:|",
              f"| one replica | {single[0]:.0f} | {single[1]:.3f} | 1.00x |",
              f"| --fleet over 3 replicas (total) | {spread[0]:.0f} | {spread[1]:.3f} | {spread[0] / single[0]:.2f}x |",
              f"| ... each replica | {' / '.join(f'{r:.0f}' for r in per_replica)} | | |",
              f"| --fleet over 3 addresses of the one replica | {same[0]:.0f} | {same[1]:.3f} | "
              f"{same[0] / single[0]:.2f}x |",
              "",
              f"With {os.cpu_count()} CPUs for the client and all servers, three replicas cannot give three times "
              "one: the ratio shows what --fleet costs or gains on one machine (more server processes to share "
              "the CPUs, one channel each), not what three pods on their own machines would serve. The last row "
              "sends to one server through three addresses: what spreading costs the client itself."]
    publish("fleet", lines)


if __name__ == "__main__":
    main()
