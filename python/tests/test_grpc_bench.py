"""grpcBench.py: counts, JSON report, duration, open-loop rate, errors by code, bad flags.

Subprocesses against the real local server, loopback only, each run a few seconds at most.
No absolute performance number is asserted: only what the flags promise.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import pytest
from script_helpers import PYTHON_DIR, run_script

from testing.server import ServerProcess, client_connected

SCRIPT = "grpcBench.py"
LATENCY_KEYS = ["min", "p50", "p90", "p99", "p99.9", "max"]


def bench_json(run, *args):
    result = run(SCRIPT, "--format", "json", *args)
    assert len(result.out.splitlines()) == 1, result
    return result, json.loads(result.out)


def test_help():
    result = run_script(SCRIPT, "--help")
    assert (result.code, result.err) == (0, "")
    assert "example:\n  python3 grpcBench.py" in result.out
    for flag in ("--server", "--model", "--signature", "--input", "--dtype", "--requests", "--duration",
                 "--concurrency", "--rate", "--warmup", "--histogram", "--format"):
        assert flag in result.out


def test_counts_add_up_in_the_text_report(run):
    result = run(SCRIPT, "-v", "1", "--requests", "200", "--concurrency", "3")
    assert (result.code, result.err) == (0, ""), result
    assert "Predict Toy (version 1) at localhost:" in result.out
    assert "closed loop, concurrency 3, after 10 warmup requests" in result.out
    assert re.search(r"^requests     200: ok 200, errors 0$", result.out, re.M), result.out
    assert re.search(r"^throughput   [\d.]+ req/s", result.out, re.M)
    header = next(line for line in result.out.splitlines() if line.startswith("latency ms"))
    assert header.split()[2:] == LATENCY_KEYS
    assert "errors by code" not in result.out


def test_json_report(run):
    result, report = bench_json(run, "-l", "stable", "-n", "150", "-c", "2", "--warmup", "3",
                                "-i", "input_1=[[1.0, 2.0]]")  # -i: checked against the signature first
    assert (result.code, result.err) == (0, "")
    assert {k: report[k] for k in ("model", "version", "version_label", "signature", "loop", "concurrency",
                                   "rate", "duration", "warmup", "requests", "ok", "errors", "interrupted")} == {
        "model": "Toy", "version": None, "version_label": "stable", "signature": "serving_default",
        "loop": "closed", "concurrency": 2, "rate": None, "duration": None, "warmup": 3, "requests": 150,
        "ok": 150, "errors": {}, "interrupted": False}
    assert report["server"].startswith("localhost:")
    latency = report["latency_ms"]
    assert list(latency) == LATENCY_KEYS
    values = [latency[k] for k in LATENCY_KEYS]
    assert 0 < values[0] and values == sorted(values)
    assert report["elapsed_s"] > 0
    assert report["throughput_rps"] == pytest.approx(150 / report["elapsed_s"], rel=1e-3)
    assert report["ok_rps"] == report["throughput_rps"]
    assert report["offered_rps"] is None and report["schedule_lag_ms"] is None


def test_failures_are_counted_by_code_and_exit_1(run):
    result, report = bench_json(run, "-v", "9", "-n", "40", "-c", "2", "--warmup", "0")
    assert result.code == 1
    assert (report["requests"], report["ok"], report["errors"]) == (40, 0, {"NOT_FOUND": 40})
    assert report["latency_ms"] is None
    assert result.err == ("grpcBench.py: error: 40 of 40 requests failed, the first with: NOT_FOUND: "
                          "Servable not found for request: Specific(Toy, 9)\n")
    text = run(SCRIPT, "-v", "9", "-n", "5", "--warmup", "0")
    assert text.code == 1 and "latency ms   (no ok request)" in text.out
    assert re.search(r"^errors by code\n  NOT_FOUND +5$", text.out, re.M), text.out


def test_a_failing_warmup_stops_before_measuring(run):
    result = run(SCRIPT, "-v", "9", "-n", "5")
    assert (result.code, result.out) == (1, "")
    assert result.err == "grpcBench.py: error: NOT_FOUND: Servable not found for request: Specific(Toy, 9)\n"


def test_duration(run):
    result, report = bench_json(run, "--duration", "1", "--concurrency", "2", "--warmup", "2")
    assert result.code == 0, result
    assert report["duration"] == 1.0 and report["requests"] == report["ok"] > 0
    assert 1.0 <= report["elapsed_s"] < 5.0  # sends for 1 s, then waits for the last answers


def test_open_loop_keeps_its_rate(run):
    result, report = bench_json(run, "--rate", "50", "--duration", "2")
    assert result.code == 0, result
    assert report["loop"] == "open" and report["concurrency"] is None and report["rate"] == 50.0
    assert report["requests"] == report["ok"] == 100  # sends at t0 + i/50 for i/50 < 2 s
    assert report["throughput_rps"] == pytest.approx(50, rel=0.2)
    assert report["offered_rps"] == pytest.approx(50, rel=0.2)
    assert 0 <= report["schedule_lag_ms"] < 20  # kept the schedule: no send was a whole interval (20 ms) late
    behind, late = bench_json(run, "--rate", "1000000", "--requests", "300", "--warmup", "0")
    assert behind.code == 0, behind
    # 300 sends scheduled within 0.3 ms cannot all leave on time: the last ones are late by about the
    # time the sending took, and no send is later than the whole run
    sending_ms = 1000.0 * 299 / late["offered_rps"]
    assert 0.5 * sending_ms <= late["schedule_lag_ms"] <= 1000.0 * late["elapsed_s"], late
    text = run(SCRIPT, "--rate", "40", "--requests", "20", "--warmup", "0")
    assert text.code == 0 and re.search(r"^requests     20: ok 20, errors 0$", text.out, re.M), text
    assert "open loop, 40 req/s scheduled, after 0 warmup requests" in text.out
    assert re.search(r"^offered      [\d.]+ req/s, sends late by [\d.]+ ms at worst", text.out, re.M), text.out


def test_errors_by_code_when_the_server_stops_mid_run(toy_models):
    server = ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                           "--allow_version_labels_for_unavailable_models")
    with server:
        environment = {k: v for k, v in os.environ.items() if k != "TFS_SERVER"}
        bench = subprocess.Popen([sys.executable, SCRIPT, "-s", server.target, "--duration", "6", "--concurrency",
                                  "4", "--warmup", "0", "--format", "json"], cwd=PYTHON_DIR, env=environment,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The bench is sending once it holds a connection (no warmup: its first request is measured).
            deadline = time.monotonic() + 20
            while not client_connected(server.port) and time.monotonic() < deadline:
                assert bench.poll() is None, bench.communicate()
                time.sleep(0.02)
            assert bench.poll() is None
            server.stop()
            out, err = bench.communicate(timeout=60)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
    report = json.loads(out)
    assert bench.returncode == 1, (out, err)
    assert report["errors"].get("UNAVAILABLE", 0) > 0, report
    assert report["ok"] + sum(report["errors"].values()) == report["requests"]
    assert err.startswith(f"grpcBench.py: error: {report['requests'] - report['ok']} of {report['requests']} "
                          "requests failed, the first with: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("--requests", "0"), "argument -n/--requests: must be >= 1, not 0"),
    (("--concurrency", "x"), "argument -c/--concurrency: not a whole number: 'x'"),
    (("--rate", "-5"), "argument -r/--rate: the rate must be between 0.001 and 1000000 requests/s, not -5"),
    (("--duration", "nan"), "argument -d/--duration: the duration must be between 0.001 and 1000000000 seconds, "
                            "not nan"),
    (("--warmup", "-1"), "argument --warmup: must be >= 0, not -1"),
    (("-n", "5", "-d", "1"), "argument -d/--duration: not allowed with argument -n/--requests"),
    (("-c", "2", "-r", "10"), "argument -r/--rate: not allowed with argument -c/--concurrency"),
])
def test_bad_flags_exit_2(args, message):
    result = run_script(SCRIPT, "-s", "localhost:1", *args)  # nothing is sent: no server needed
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == f"grpcBench.py: error: {message}"
    assert result.err.startswith("usage: grpcBench.py")  # the suite's two-line usage error
    assert len(result.err.splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (("-i", "input_1=[[1.0,"), "-i input_1: not valid JSON"),
    (("--dtype", "input_1=float32"), "--dtype applies to inputs given with -i"),
])
def test_bad_inputs_exit_2_in_one_line(args, message):
    result = run_script(SCRIPT, "-s", "localhost:1", *args)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"grpcBench.py: error: {message}") and len(result.err.splitlines()) == 1


def test_histogram(run, tmp_path):
    bad_dir = run_script(SCRIPT, "-s", "localhost:1", "--histogram", str(tmp_path / "no" / "h.png"))
    assert (bad_dir.code, bad_dir.out) == (2, "")
    assert bad_dir.err == (f"grpcBench.py: error: --histogram: cannot write {tmp_path}/no/h.png: the folder "
                           f"{tmp_path}/no does not exist\n")
    path = tmp_path / "latency.png"
    result = run(SCRIPT, "-n", "100", "--histogram", str(path))
    if importlib.util.find_spec("matplotlib") is None:  # not a requirement: a clear error, nothing sent
        assert (result.code, result.out) == (2, "")
        assert result.err == ("grpcBench.py: error: --histogram needs matplotlib, which is not installed "
                              "(pip install matplotlib)\n")
        assert not path.exists()
    else:
        assert (result.code, result.err) == (0, ""), result
        assert path.read_bytes().startswith(b"\x89PNG")


def test_the_bench_does_not_start_tensorflow():
    result = run_script("-c", "import sys, grpcBench; print('tensorflow.python' in sys.modules, "
                              "'matplotlib' in sys.modules)")
    assert (result.code, result.out) == (0, "False False\n"), result


def test_percentiles_are_nearest_rank():
    code = ("from tfsclient import loadgen; p = loadgen.percentiles([i / 1000 for i in range(1, N + 1)]); "
            "print([round(v) for v in p.values()])")
    for n, expected in ((1, [1] * 6), (100, [1, 50, 90, 99, 100, 100]), (1000, [1, 500, 900, 990, 999, 1000])):
        result = run_script("-c", code.replace("N", str(n)))
        assert (result.code, result.out) == (0, f"{expected}\n"), result


CLOSED_LOOP_RACE = '''
import threading, time, types
import grpc
from tfsclient import loadgen

class Future:
    """A call's future: answered at once (its callback runs inside add_done_callback) or after `delay`."""
    def __init__(self, delay):
        self.delay, self.callbacks, self.done = delay, [], False
        if delay:
            threading.Timer(delay, self.finish).start()
    def finish(self):
        self.done = True
        for callback in self.callbacks:
            callback(self)
    def add_done_callback(self, callback):
        if self.done or not self.delay:
            self.done = True
            callback(self)
        else:
            self.callbacks.append(callback)
    def code(self): return grpc.StatusCode.OK
    def result(self): return b""  # an empty PredictResponse
    def exception(self): return None
    def cancel(self): pass

class Call:
    delays = [0.0, 0.3]  # the first answer comes before the second request is even sent
    def future(self, payload, timeout=None):
        return Future(self.delays.pop(0))

args = types.SimpleNamespace(timeout=5.0, duration=None, requests=2, concurrency=2, rate=None)
load = loadgen.LoadRun(Call(), b"", args)
load.run(None)
print(load.tally.completed, "of", load.issued)
'''


SLOW_SENDS = r'''
import time, types
from tfsclient import loadgen

class Future:  # never answered here: the run is only begun
    def add_done_callback(self, callback): pass

class Call:
    def future(self, payload, timeout=None):
        time.sleep(0.001)  # a send's own cost (gRPC's, ~0.4 ms; -c 100000 took 40 s)
        return Future()

args = types.SimpleNamespace(timeout=5.0, duration=0.2, requests=None, concurrency=5000, rate=None)
load = loadgen.LoadRun(Call(), b"", args)
load.begin()
print(load.issued < 1000)  # about 200 in the 0.2 s
'''


def test_the_duration_bounds_the_first_burst_of_sends():
    # -d 0.2 with -c 5000 sends of 1 ms each: the first burst stops at 0.2 s. Before, all 5000 were sent first (5 s).
    result = run_script("-c", SLOW_SENDS)
    assert (result.code, result.out, result.err) == (0, "True\n", ""), result


LAST_ANSWER_AT_THE_DEADLINE = r'''
import itertools, types
import grpc
from tfsclient import loadgen

class Future:  # answered at once: its callback runs inside add_done_callback
    def add_done_callback(self, callback): callback(self)
    def code(self): return grpc.StatusCode.OK
    def result(self): return b""
    def exception(self): return None

class Call:
    def future(self, payload, timeout=None): return Future()

ends = []
for i in range(3, 40):  # deadlines between the clock's readings, wherever the loop reads it
    ticks = itertools.count()
    loadgen.time = types.SimpleNamespace(perf_counter=lambda: next(ticks) / 1000)  # 1 ms more at every reading
    args = types.SimpleNamespace(timeout=5.0, duration=0.0005 + i / 1000, requests=None, concurrency=1, rate=None)
    load = loadgen.LoadRun(Call(), b"", args)
    load.begin()
    ends.append(load.tally.last_completion - load.start >= args.duration)
print(all(ends))
'''


def test_a_duration_run_ends_with_an_answer_at_or_past_the_deadline():
    """-d 0.5 reported elapsed_s 0.499989: the answer was timed, then the clock read again to decide on another."""
    result = run_script("-c", LAST_ANSWER_AT_THE_DEADLINE)
    assert (result.code, result.out, result.err) == (0, "True\n", ""), result


def test_the_closed_loop_reports_after_every_answer():
    """-n close to -c: an answer that comes before the next request is sent must not end the run."""
    result = run_script("-c", CLOSED_LOOP_RACE)
    assert (result.code, result.out, result.err) == (0, "2 of 2\n", ""), result
