#!/usr/bin/env python3
"""REST against gRPC Predict on one local server: Toy version 1, the guide's two-row input, keep-alive and not.

One server (Toy, version 1, from models/save/Toy) is started once with both ports; on it, each run measures

- REST `POST /v1/models/Toy/versions/1:predict` with `{"instances": [[1.0, 2.0], [1.0, 3.0]]}`:
  wrk (HTTP/1.1 keep-alive) at concurrency 1 (-t1 -c1) and 8 (-t2 -c8); ab at concurrency 1 with a new
  connection per request (no -k), and ab -k (HTTP/1.0 keep-alive) at concurrency 1;
- gRPC Predict of the same input with python/grpcBench.py at concurrency 1 and 8.

Every REST response must be a 200 (wrk's Lua script counts status codes; ab's "Non-2xx responses" and
"Failed requests"), and every gRPC call OK; anything else stops the run with the count. The runs are
repeated (--repeats, 3) with the cells interleaved, and the table quotes the median of each figure,
since client and server share this machine's cores. It ends with the two targets: REST p50 at c=1 on a
kept-alive connection (aim < 2 ms) and REST/gRPC throughput at c=8 (aim >= 0.7x). The clients differ:
wrk and ab are C, grpcBench.py is Python, so on a busy machine the gRPC side pays more for its client;
the server's own CPU time per request (from /proc) is the figure the clients do not blur.

Needs wrk and ab (ApacheBench) on the PATH: `sudo apt-get install wrk apache2-utils`.

    .venv/bin/python benchmarks/bench_rest.py [--seconds 3] [--repeats 3]

wrk and ab take whole seconds, so --seconds is rounded (at least 1). About 80 s with the defaults.
Writes benchmarks/results/rest.md.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from testing.server import ServerProcess, free_port  # noqa: E402
from proc import cpu_seconds  # noqa: E402
from report import publish  # noqa: E402

TOY = os.path.join(REPO, "models", "save", "Toy")
INPUT = [[1.0, 2.0], [1.0, 3.0]]
BODY = json.dumps({"instances": INPUT})
PATH = "/v1/models/Toy/versions/1:predict"
# ab's wait for one answer, in seconds (its default is 30): ab -k reads a kept-alive HTTP/1.0 answer only when
# it says "Connection: keep-alive"; one that keeps the connection open without saying so never ends for ab.
AB_TIMEOUT = 5

# wrk's script: the POST, a count of every status code seen (per thread, summed in done()), and one
# machine-readable line with the totals and percentiles in microseconds (no parsing of wrk's units).
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local parts = {}
  local counts = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do counts[code] = (counts[code] or 0) + n end
  end
  for code, n in pairs(counts) do table.insert(parts, string.format('"%%d": %%d', code, n)) end
  io.write(string.format('BENCH_REST {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, "statuses": {%%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, table.concat(parts, ", ")))
end
"""

# (key, transport, client, connection, concurrency)
CELLS = (
    ("wrk1", "REST", "wrk -t1 -c1", "keep-alive, HTTP/1.1", 1),
    ("wrk8", "REST", "wrk -t2 -c8", "keep-alive, HTTP/1.1", 8),
    ("ab1", "REST", "ab", "new connection per request, HTTP/1.0", 1),
    ("abk1", "REST", "ab -k", "keep-alive, HTTP/1.0", 1),
    ("grpc1", "gRPC", "grpcBench.py", "one channel", 1),
    ("grpc8", "gRPC", "grpcBench.py", "one channel", 8),
)


class BenchError(Exception):
    """A run that cannot be trusted: a non-200, a failed call, a client that failed."""


class Unmeasured(Exception):
    """A cell the server cannot serve as asked (ab waited in vain for an answer): its row says why, the
    other cells are measured as usual."""


def run(command, what):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 and "timeout specified has expired" in result.stderr:  # ab -s
        raise Unmeasured(f"{what} got no answer within {AB_TIMEOUT} s ({result.stderr.strip()})")
    if result.returncode != 0:
        raise BenchError(f"{what} exited with {result.returncode}: {(result.stderr or result.stdout).strip()[-2000:]}")
    return result.stdout


def wrk(url, script, threads, connections, seconds):
    out = run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
              f"wrk -t{threads} -c{connections}")
    line = re.search(r"^BENCH_REST (\{.*\})$", out, re.M)
    if not line:
        raise BenchError(f"wrk printed no BENCH_REST line:\n{out}")
    r = json.loads(line.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    statuses = {int(code): n for code, n in r["statuses"].items()}
    bad = {code: n for code, n in statuses.items() if code != 200}
    errors = {k: n for k, n in r["errors"].items() if n}
    if bad or errors or non2xx or sum(statuses.values()) != r["requests"] or not r["requests"]:
        raise BenchError(f"wrk -c{connections}: {r['requests']} responses, status codes {statuses}, errors {errors}"
                         + (f", {non2xx.group(1)} non-2xx or 3xx" if non2xx else "") + f":\n{out}")
    return r["requests"] / (r["duration_us"] / 1e6), r["p50_us"] / 1000, r["p99_us"] / 1000, "", r["requests"]


def ab(url, body_file, keep_alive, seconds, csv):
    command = ["ab", *(["-k"] if keep_alive else []), "-q", "-s", str(AB_TIMEOUT), "-t", str(seconds),
               "-n", "100000000", "-c", "1", "-p", body_file, "-T", "application/json", "-e", csv, url]
    what = "ab -k" if keep_alive else "ab"
    try:
        out = run(command, what)
    except Unmeasured as e:
        raise Unmeasured(f"{e}; {http10_keep_alive_answer(url)}" if keep_alive else str(e)) from None

    def field(name, default=None):
        m = re.search(rf"^{name}:\s*([\d.]+)", out, re.M)
        if m is None and default is None:
            raise BenchError(f"{what} printed no '{name}':\n{out}")
        return float(m.group(1)) if m else default

    complete, failed, non2xx = int(field("Complete requests")), int(field("Failed requests")), \
        int(field("Non-2xx responses", 0))
    if failed or non2xx or not complete:
        raise BenchError(f"{what}: {complete} complete, {failed} failed, {non2xx} non-2xx:\n{out}")
    with open(csv) as f:  # "Percentage served,Time in ms" then "N,ms" for N = 0..100
        percentiles = {int(p): float(ms) for p, ms in (row.split(",") for row in f.read().split("\n")[1:] if row)}
    note = ""
    if keep_alive:
        kept = int(field("Keep-Alive requests", 0))
        if kept < complete:
            note = f"ab -k: only {kept} of {complete} requests were answered keep-alive"
    return field("Requests per second"), percentiles[50], percentiles[99], note, complete


def http10_keep_alive_answer(url):
    """What the server answers an HTTP/1.0 keep-alive POST, as ab -k sends it: its status line and Connection
    header (ab -k keeps reading until the connection closes unless that header says keep-alive)."""
    parsed = urllib.parse.urlsplit(url)
    request = (f"POST {parsed.path} HTTP/1.0\r\nHost: {parsed.netloc}\r\nConnection: Keep-Alive\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}").encode()
    head = b""
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=AB_TIMEOUT) as s:
            s.sendall(request)
            while b"\r\n\r\n" not in head:
                chunk = s.recv(65536)
                if not chunk:
                    break
                head += chunk
    except OSError as e:
        return f"an HTTP/1.0 keep-alive POST of our own got no answer either ({e})"
    if not head:
        return "an HTTP/1.0 keep-alive POST of our own got no answer either (connection closed)"
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    connection = [line for line in lines[1:] if line.lower().startswith("connection:")]
    return (f"to an HTTP/1.0 keep-alive POST the server answers `{lines[0]}` with "
            f"{'`' + connection[0] + '`' if connection else 'no Connection header'}")


def grpc(target, concurrency, seconds):
    out = run([sys.executable, os.path.join(REPO, "python", "grpcBench.py"), "-s", target, "-m", "Toy", "-v", "1",
               "-i", f"input_1={json.dumps(INPUT)}", "-c", str(concurrency), "-d", str(seconds), "--warmup", "50",
               "--format", "json"], f"grpcBench.py -c {concurrency}")
    r = json.loads(out)
    if r["errors"] or r["ok"] != r["requests"] or not r["ok"]:
        raise BenchError(f"grpcBench.py -c {concurrency}: {r['ok']} of {r['requests']} ok, errors {r['errors']}")
    return r["ok_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], "", r["ok"] + 50  # and its warmup


def wait_rest(server, url, timeout=60.0):
    """Poll the REST port until Toy version 1 is AVAILABLE there (it opens after the gRPC port); the
    transport's Server header, to name it in the table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if '"AVAILABLE"' in response.read().decode():
                    return response.headers.get("Server", "?")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise BenchError(f"REST API not ready at {url} after {timeout:g} s:\n{server.log()}")


def check_predict(url, count=50):
    """The request the clients will send answers 200 with two predictions; and a warmup."""
    for _ in range(count):
        request = urllib.request.Request(url, BODY.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            document = json.loads(response.read())
            if response.status != 200 or len(document.get("predictions", ())) != len(INPUT):
                raise BenchError(f"POST {url}: {response.status} {document}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell, rounded to whole seconds (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every cell; medians quoted (default 3)")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "ab") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench_rest.py needs {' and '.join(missing)} on the PATH: sudo apt-get install wrk apache2-utils")
    if not os.path.isdir(os.path.join(TOY, "1")):
        sys.exit(f"bench_rest.py needs {TOY}/1: run .venv/bin/python models/build_toy_models.py")
    seconds = max(1, round(args.seconds))
    runs = {key: [] for key, *_ in CELLS}
    unmeasured = {}  # key -> why
    notes = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = os.path.join(tmp, "models.config")
            with open(config, "w") as f:
                f.write(f"model_config_list {{ config {{ name: 'Toy' base_path: '{TOY}' model_platform: 'tensorflow' "
                        "model_version_policy { specific { versions: 1 } } } }\n")
            script = os.path.join(tmp, "post.lua")
            with open(script, "w") as f:
                f.write(WRK_SCRIPT % json.dumps(BODY))
            body = os.path.join(tmp, "body.json")
            with open(body, "w") as f:
                f.write(BODY)
            csv = os.path.join(tmp, "ab.csv")
            rest_port = free_port()
            # ServerProcess passes --rest_api_port=0 first; this later one wins.
            with ServerProcess(f"--model_config_file={config}", f"--rest_api_port={rest_port}") as server:
                base = f"http://127.0.0.1:{rest_port}"
                url = base + PATH
                transport = wait_rest(server, base + "/v1/models/Toy/versions/1")
                check_predict(url)
                cells = {
                    "wrk1": lambda: wrk(url, script, 1, 1, seconds),
                    "wrk8": lambda: wrk(url, script, 2, 8, seconds),
                    "ab1": lambda: ab(url, body, False, seconds, csv),
                    "abk1": lambda: ab(url, body, True, seconds, csv),
                    "grpc1": lambda: grpc(server.target, 1, seconds),
                    "grpc8": lambda: grpc(server.target, 8, seconds),
                }
                for repeat in range(args.repeats):
                    for key, *_ in CELLS:
                        if key in unmeasured:
                            continue
                        try:
                            cpu_before = cpu_seconds(server.process.pid)
                            rps, p50, p99, note, requests = cells[key]()
                            cpu_us = (cpu_seconds(server.process.pid) - cpu_before) / requests * 1e6
                        except Unmeasured as e:
                            unmeasured[key] = str(e)
                            print(f"  run {repeat + 1}/{args.repeats} {key}: {e}", file=sys.stderr, flush=True)
                            continue
                        runs[key].append((rps, p50, p99, cpu_us))
                        if note and note not in notes:
                            notes.append(note)
                        print(f"  run {repeat + 1}/{args.repeats} {key}: {rps:.0f} req/s, p50 {p50:.3f} ms, "
                              f"p99 {p99:.3f} ms, server CPU {cpu_us:.0f} us/request", file=sys.stderr, flush=True)
    except BenchError as e:
        sys.exit(f"bench_rest.py: {e}")

    median = {key: tuple(statistics.median(r[i] for r in rs) for i in range(4)) for key, rs in runs.items() if rs}
    lines = [f"REST against gRPC Predict on one local server (REST transport: `{transport}`): Toy version 1, "
             f"`{BODY}`, {seconds} s per cell, median of {args.repeats} runs, {os.cpu_count()} CPUs shared by "
             "client and server", "",
             "| transport | client | connection | concurrency | req/s | p50 ms | p99 ms | req/s, min to max "
             "| server CPU µs/request |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, kind, client, connection, concurrency in CELLS:
        if key in unmeasured:
            lines.append(f"| {kind} | {client} | {connection} | {concurrency} | not measured, see the note | | | | |")
            notes.append(f"{client} at c={concurrency}: {unmeasured[key]}")
            continue
        rps, p50, p99, cpu_us = median[key]
        low, high = min(r[0] for r in runs[key]), max(r[0] for r in runs[key])
        lines.append(f"| {kind} | {client} | {connection} | {concurrency} | {rps:.0f} | {p50:.2f} | {p99:.2f} | "
                     f"{low:.0f} to {high:.0f} | {cpu_us:.0f} |")
    p50 = median["wrk1"][1]
    ratio8, ratio1 = median["wrk8"][0] / median["grpc8"][0], median["wrk1"][0] / median["grpc1"][0]
    lines += ["", "| target | measured | aim | met |", "|---|---:|---:|---|",
              f"| REST p50 at c=1, keep-alive (wrk) | {p50:.2f} ms | < 2 ms | {'yes' if p50 < 2 else 'no'} |",
              f"| REST / gRPC req/s at c=8 | {ratio8:.2f}x | >= 0.7x | {'yes' if ratio8 >= 0.7 else 'no'} |",
              f"| REST / gRPC req/s at c=1 (for reference) | {ratio1:.2f}x | | |",
              f"| server CPU per request, REST / gRPC at c=8 (the clients' own CPU left out) | "
              f"{median['wrk8'][3] / median['grpc8'][3]:.2f}x | | |"]
    lines += ([""] + [f"Note: {note}" for note in notes]) if notes else []
    publish("rest", lines)


if __name__ == "__main__":
    sys.exit(main())
