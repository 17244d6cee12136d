"""grpcBench.py --fleet: the load spread over every replica, a row per replica and a total that adds up, a
replica that is down, one that answers errors, one that is slow, JSON keyed by address, a name that resolves
to several addresses, and the flags that make no sense over a fleet.

Real servers only (the session's `fleet` and one batching server started here); the resolver is the one
thing mocked (tests/fake_dns). No absolute performance number is asserted.
"""

import json
import re

import pytest
from fleet_support import fake_dns
from script_helpers import run_script

from testing.server import ServerProcess

SCRIPT = "grpcBench.py"
LATENCY_KEYS = ["min", "p50", "p90", "p99", "p99.9", "max"]


def bench(target, *args, env=None):
    """grpcBench.py --fleet --format json: (the result, the document)."""
    result = run_script(SCRIPT, "--fleet", "--format", "json", "-m", "Toy", *args, server=target, env=env)
    assert len(result.out.splitlines()) == 1 and "Traceback" not in result.err, result
    return result, json.loads(result.out)


def test_each_replica_gets_its_share_and_the_total_adds_up(fleet):
    target = fleet.target("full", "health", "one")
    result, doc = bench(target, "-v", "1", "-c", "5", "-n", "50", "--warmup", "2")
    assert (result.code, result.err) == (0, ""), result
    addresses = target.split(",")
    assert list(doc["replicas"]) == addresses
    rows = [doc["replicas"][a] for a in addresses]
    assert [r["server"] for r in rows] == addresses
    assert [r["concurrency"] for r in rows] == [2, 2, 1]  # -c 5 round-robin over 3
    assert [r["requests"] for r in rows] == [17, 17, 16]  # -n 50 likewise
    assert all(r["error"] is None and r["ok"] == r["requests"] and r["errors"] == {} for r in rows)
    total = doc["total"]
    assert (doc["concurrency"], total["concurrency"], total["requests"], total["ok"]) == (5, 5, 50, 50)
    assert total["server"] == target and (doc["failed"], doc["with_errors"]) == ([], [])
    assert total["elapsed_s"] >= max(r["elapsed_s"] for r in rows)
    assert total["ok_rps"] == pytest.approx(50 / total["elapsed_s"], rel=1e-3)
    assert list(total["latency_ms"]) == LATENCY_KEYS
    assert total["latency_ms"]["min"] == min(r["latency_ms"]["min"] for r in rows)
    assert total["latency_ms"]["max"] == max(r["latency_ms"]["max"] for r in rows)


def test_the_text_report_is_a_table_of_replicas_and_a_total(fleet):
    target = fleet.target("full", "one")
    result = run_script(SCRIPT, "--fleet", "-m", "Toy", "-v", "1", "-n", "30", "--warmup", "1", server=target)
    assert (result.code, result.err) == (0, ""), result
    lines = result.out.splitlines()
    assert lines[0] == f"target       Predict Toy (version 1) at {target}: 2 replicas"
    assert lines[1] == ("load         closed loop, concurrency 2 in total, 30 requests in total, spread over "
                        "2 replicas, after 1 warmup requests each")  # default -c: one per replica
    assert lines[2].split() == ["replica", "load", "requests", "errors", "elapsed", "s", "ok", "req/s",
                                "p50", "ms", "p90", "ms", "p99", "ms", "max", "ms"]
    rows = [line.split() for line in lines[3:6]]
    assert [row[0] for row in rows] == [fleet.address(fleet.full), fleet.address(fleet.one), "total"]
    assert [row[1:5] for row in rows] == [["c", "1", "15", "0"], ["c", "1", "15", "0"], ["c", "2", "30", "0"]]
    assert lines[6:] == [f"fleet {target}: 2 replicas, all measured without error"]


def test_a_replica_that_is_down_is_reported_and_the_others_share_the_load(fleet):
    target = fleet.target("full", "down", "one")
    result, doc = bench(target, "-v", "1", "-c", "4", "-n", "20", "--warmup", "1")
    assert result.code == 1, result
    assert doc["failed"] == [fleet.down]
    assert doc["replicas"][fleet.down]["error"].startswith(f"warmup: cannot reach TF Serving at {fleet.down}")
    measured = [doc["replicas"][fleet.address(s)] for s in (fleet.full, fleet.one)]
    assert [(r["concurrency"], r["requests"], r["ok"]) for r in measured] == [(2, 10, 10), (2, 10, 10)]
    assert (doc["total"]["requests"], doc["total"]["concurrency"]) == (20, 4)
    assert result.err.startswith(f"grpcBench.py: error: 1 of 3 replicas failed or had errors: {fleet.down} "
                                 f"(warmup: cannot reach TF Serving at {fleet.down}")
    assert result.err.count("\n") == 1

    text = run_script(SCRIPT, "--fleet", "-m", "Toy", "-v", "1", "-n", "4", "--warmup", "1", server=target)
    assert text.code == 1
    assert re.search(rf"^{re.escape(fleet.down)} +FAILED: warmup: cannot reach TF Serving", text.out, re.M), text
    assert text.out.endswith(f"fleet {target}: 3 replicas: 2 without error, 1 failed ({fleet.down})\n")


def test_a_replica_answering_errors_shows_them_in_its_row(fleet):
    """Without warmup, the replica that lacks Toy 2 is loaded and fails every request; the other does not."""
    target = fleet.target("full", "one")
    full, one = fleet.address(fleet.full), fleet.address(fleet.one)
    result, doc = bench(target, "-v", "2", "-c", "2", "-n", "20", "--warmup", "0")
    assert result.code == 1
    assert {a: (r["requests"], r["ok"], r["errors"]) for a, r in doc["replicas"].items()} == {
        full: (10, 10, {}), one: (10, 0, {"NOT_FOUND": 10})}
    assert (doc["total"]["requests"], doc["total"]["ok"], doc["total"]["errors"]) == (20, 10, {"NOT_FOUND": 10})
    assert (doc["failed"], doc["with_errors"]) == ([], [one])
    assert result.err == (f"grpcBench.py: error: 1 of 2 replicas failed or had errors: {one} (10 of 10 requests "
                          "failed, the first with: NOT_FOUND: Servable not found for request: Specific(Toy, 2))\n")

    text = run_script(SCRIPT, "--fleet", "-m", "Toy", "-v", "2", "-n", "4", "--warmup", "0", server=target)
    assert text.code == 1
    assert f"errors by replica and code\n  {one}: NOT_FOUND 2\n" in text.out, text


@pytest.fixture(scope="module")
def slow(toy_models, tmp_path_factory):
    """A toy server whose every request waits 200 ms for its batch to fill (one request never fills it)."""
    parameters = tmp_path_factory.mktemp("slow") / "batching.config"
    parameters.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 200000 }\n"
                          "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n")
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models", "--enable_batching",
                       f"--batching_parameters_file={parameters}") as server:
        yield f"127.0.0.1:{server.port}"


def test_a_slow_replica_shows_a_higher_latency_than_the_others(fleet, slow):
    target = f"{fleet.target('full', 'health')},{slow}"
    result, doc = bench(target, "-v", "1", "-c", "3", "-n", "9", "--warmup", "1")
    assert (result.code, result.err) == (0, ""), result
    slow_row = doc["replicas"][slow]
    fast_rows = [r for a, r in doc["replicas"].items() if a != slow]
    assert slow_row["latency_ms"]["min"] >= 190, slow_row  # the batch timeout, at least
    assert all(r["latency_ms"]["p50"] < slow_row["latency_ms"]["min"] for r in fast_rows), doc
    assert all(r["ok_rps"] > slow_row["ok_rps"] for r in fast_rows), doc
    assert doc["total"]["latency_ms"]["max"] == slow_row["latency_ms"]["max"]


def test_open_loop_splits_the_rate(fleet):
    target = fleet.target("full", "health")
    result, doc = bench(target, "-v", "1", "-r", "40", "-n", "8", "--warmup", "0")
    assert (result.code, result.err) == (0, ""), result
    assert [(r["loop"], r["rate"], r["requests"]) for r in doc["replicas"].values()] == [("open", 20.0, 4)] * 2
    assert (doc["total"]["rate"], doc["total"]["concurrency"], doc["total"]["requests"]) == (40.0, None, 8)


def test_a_name_that_resolves_to_several_addresses(fleet):
    port = fleet.full.port  # every 127/8 address is this machine: three addresses, one server behind them
    env = fake_dns({"tfs-bench.test": ["127.0.0.3", "127.0.0.1", "127.0.0.2"]})
    result, doc = bench(f"dns:///tfs-bench.test:{port}", "-v", "1", "-n", "12", "--warmup", "1", env=env)
    assert (result.code, result.err) == (0, ""), result
    assert list(doc["replicas"]) == [f"127.0.0.{i}:{port}" for i in (1, 2, 3)]  # in a stable order
    assert [r["requests"] for r in doc["replicas"].values()] == [4, 4, 4]
    assert doc["target"] == f"dns:///tfs-bench.test:{port}"


@pytest.mark.parametrize("args, message", [
    (["-c", "1,2"], "--fleet measures one round: give one concurrency (-c 4, the total over the replicas), "
                    "not a list"),
    (["-c", "1"], "--fleet: -c 1 is fewer than the 2 replicas of {target} (at least one each: -c 2)"),
    (["-n", "1"], "--fleet: -n 1 is fewer than the 2 replicas of {target} (at least one each: -n 2)"),
    (["--plot", "x.png"], "--plot draws a sweep of concurrencies, which --fleet does not run"),
    (["--metrics", "http://localhost:1/metrics"], "--metrics reads one server's page: not with --fleet"),
])
def test_flags_that_make_no_sense_over_a_fleet_are_usage_errors(fleet, args, message):
    target = fleet.target("full", "one")
    result = run_script(SCRIPT, "--fleet", "-m", "Toy", *args, server=target)
    assert (result.code, result.out) == (2, "")
    assert result.err == f"grpcBench.py: error: {message.format(target=target)}\n"


def test_the_histogram_draws_every_replica_s_latencies(fleet, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "fleet.png"
    result = run_script(SCRIPT, "--fleet", "-m", "Toy", "-v", "1", "-n", "6", "--warmup", "0", "--histogram",
                        str(path), server=fleet.target("full", "one"))
    assert (result.code, result.err) == (0, ""), result
    assert path.read_bytes().startswith(b"\x89PNG")
