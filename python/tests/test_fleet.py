"""--fleet's core (tfsclient/fleet.py): resolving a target to its replicas, asking them, the report and exit
status; grpcModelStatus --fleet (the rollout check, --wait) and --health --fleet against three real servers.

The resolver is the one thing mocked: in-process through resolve()'s getaddrinfo, and in the scripts through
tests/fake_dns (fleet_support.fake_dns)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import pytest
from certs import make_pki, ssl_config
from fleet_support import fake_dns
from script_helpers import PYTHON_DIR, run_script

from testing.server import ServerProcess, client_connected, wait_until
from tfsclient import fleet as fleetlib
from tfsclient.errors import InputError, ServerError


def fake_resolver(table):
    """getaddrinfo answering {name: [ip, ...]} as a headless Service's DNS does, and counting its calls."""
    calls = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        calls.append((host, port))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port, 0, 0) if ":" in ip else (ip, port)) for ip in table[host]]
    getaddrinfo.calls = calls
    return getaddrinfo


def addresses(target, table=None):
    return [r.address for r in fleetlib.resolve(target, fake_resolver(table or {}))]


# -- resolving --------------------------------------------------------------------------------------------------

def test_a_headless_service_name_resolves_to_every_address_in_a_stable_order():
    table = {"tfs-headless.ns.svc": ["10.0.0.12", "fd00::7", "10.0.0.3", "10.0.0.12"]}
    expected = ["10.0.0.3:8500", "10.0.0.12:8500", "[fd00::7]:8500"]  # IPv4 by value, then IPv6; no repeats
    assert addresses("dns:///tfs-headless.ns.svc:8500", table) == expected
    assert addresses("dns:tfs-headless.ns.svc:8500", table) == expected
    assert addresses("tfs-headless.ns.svc:8500", table) == expected
    replicas = fleetlib.resolve("tfs-headless.ns.svc:8500", fake_resolver(table))
    assert {r.host for r in replicas} == {"tfs-headless.ns.svc"}  # for TLS: the certificate names the Service


def test_address_lists_name_each_replica():
    table = {"a.test": ["10.1.0.1", "10.1.0.2"]}
    assert addresses("ipv4:10.0.0.1:8500,10.0.0.2:8501") == ["10.0.0.1:8500", "10.0.0.2:8501"]
    assert addresses("ipv6:[::1]:8500,[fd00::2]:9000,fd00::3") == ["[::1]:8500", "[fd00::2]:9000", "[fd00::3]:443"]
    assert addresses("a.test:8500, 10.0.0.9:8500,a.test:8500", table) == ["10.1.0.1:8500", "10.1.0.2:8500",
                                                                           "10.0.0.9:8500"]
    assert addresses("10.0.0.1") == ["10.0.0.1:443"]  # gRPC's default port, as for one server
    assert addresses("unix:///tmp/tfs.sock") == ["unix:///tmp/tfs.sock"]  # one server: a fleet of one


def test_ip_literals_are_not_looked_up():
    resolver = fake_resolver({})
    fleetlib.resolve("ipv4:10.0.0.1:1,10.0.0.2:2", resolver)
    fleetlib.resolve("10.0.0.1:1,[::1]:2", resolver)
    assert resolver.calls == []


@pytest.mark.parametrize("target, message", [
    ("dns://8.8.8.8/tfs.svc:8500", "a DNS server in the target (dns://8.8.8.8/) cannot be used: write dns:///tfs.svc:8500"),
    ("ipv4:10.0.0.1:8500,fd00::1", "'fd00::1' in 'ipv4:10.0.0.1:8500,fd00::1' is not an IPv4 address"),
    ("ipv6:10.0.0.1", "'10.0.0.1' in 'ipv6:10.0.0.1' is not an IPv6 address"),
    ("a.test:8500,,b.test:8500", "an empty address in"),
    ("a.test:http", "'a.test:http' in 'a.test:http' has no valid port"),
    ("a.test:70000", "has no valid port"),
    ("[::1:8500", "is not [IPV6]:PORT"),
    (":8500", "has no host"),
    ("xds:///tfs", "cannot list the servers behind a xds: target"),
    ("  ", "the server address is empty"),
])
def test_targets_that_name_no_fleet_are_bad_input(target, message):
    with pytest.raises(InputError) as caught:
        fleetlib.resolve(target, fake_resolver({"a.test": ["10.0.0.1"], "b.test": ["10.0.0.2"]}))
    assert message in str(caught.value)


def test_a_name_that_does_not_resolve_is_a_server_error():
    with pytest.raises(ServerError, match=r"cannot resolve gone\.test \(Name or service not known\)"):
        fleetlib.resolve("gone.test:8500", fake_resolver({}))


# -- asking every replica -----------------------------------------------------------------------------------------

def namespace(**values):
    defaults = dict(server="x", format="text", debug=False, fleet_parallel=16, tls=False, ca_cert=None,
                    client_cert=None, server_name=None, timeout=5.0)
    return types.SimpleNamespace(**{**defaults, **values})


def test_each_asks_every_replica_on_its_own_args_at_most_parallel_at_once():
    replicas = [fleetlib.Replica(f"10.0.0.{i}:8500") for i in range(10)]
    lock, running, peak = threading.Lock(), [0], [0]

    def call(args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        if args.server.endswith(".3:8500"):
            raise ServerError("no")
        return args.server

    outcomes = fleetlib.each(replicas, call, namespace(fleet_parallel=3))
    assert [o.address for o in outcomes] == [r.address for r in replicas]
    assert [o.value for o in outcomes if o.ok] == [r.address for r in replicas if not r.address.endswith(".3:8500")]
    assert [o.error for o in outcomes if not o.ok] == ["no"]
    assert peak[0] == 3


def test_tls_to_a_resolved_address_checks_the_certificate_against_the_name():
    args = namespace(tls=True)
    named = fleetlib.replica_args(args, fleetlib.Replica("10.0.0.1:8500", "tfs.ns.svc"))
    assert (named.server, named.server_name) == ("10.0.0.1:8500", "tfs.ns.svc")
    assert fleetlib.replica_args(namespace(), fleetlib.Replica("10.0.0.1:8500", "tfs.ns.svc")).server_name is None
    given = fleetlib.replica_args(namespace(tls=True, server_name="other"), fleetlib.Replica("10.0.0.1:8500", "tfs"))
    assert given.server_name == "other"
    assert args.server == "x"  # the command's own args are not changed


def test_the_reference_is_the_answer_most_replicas_agree_with():
    outcomes = [fleetlib.Outcome(fleetlib.Replica(f"r{i}"), None, value=v) for i, v in enumerate("abb")]
    reference = fleetlib.compare(outcomes, fleetlib.View())
    assert reference.address == "r1"
    assert [o.differences is None for o in outcomes] == [False, True, True]


# -- grpcModelStatus --fleet against three real servers -------------------------------------------------------------

def test_status_of_a_fleet_that_agrees(fleet):
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", server=fleet.target("full", "health"))
    full, health = fleet.target("full"), fleet.target("health")
    assert result.code == 0, result
    assert result.err == ""
    assert result.out == (f"{full}  version 2 AVAILABLE, version 1 AVAILABLE\n"
                          f"{health}  version 2 AVAILABLE, version 1 AVAILABLE\n"
                          f"fleet {fleet.target('full', 'health')}: 2 replicas, all answered and agree\n")


def test_status_names_the_replica_that_differs_and_the_one_that_is_down(fleet):
    target = fleet.target("full", "one", "health", "down")
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", server=target)
    full, one, down = fleet.target("full"), fleet.target("one"), fleet.down
    width = max(len(a) for a in target.split(","))
    assert result.code == 1, result
    lines = result.out.splitlines()
    assert lines[1] == f"{one:<{width}}  version 1 AVAILABLE"
    assert lines[2] == f"{'':<{width}}  DIFFERS from {full}: no version 2"
    assert lines[4].startswith(f"{down:<{width}}  FAILED: cannot reach TF Serving at {down} (connection refused)")
    assert lines[5] == f"fleet {target}: 4 replicas: 2 agree, 1 differ ({one}), 1 failed ({down})"
    assert result.err.splitlines() == [
        f"grpcModelStatus.py: error: 1 of 4 replicas failed ({down}), the first with: cannot reach TF Serving at "
        f"{down} (connection refused): is the server running?; 1 of 4 differs from {full} ({one})"]


def test_status_json_is_one_document_keyed_by_address(fleet):
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", "--format", "json",
                        server=fleet.target("full", "one", "down"))
    assert result.code == 1, result
    document = json.loads(result.out)
    full, one, down = fleet.target("full"), fleet.target("one"), fleet.down
    assert list(document["replicas"]) == [full, one, down]
    assert document["replicas"][full]["result"]["model_version_status"][0]["state"] == "AVAILABLE"
    assert document["replicas"][one] == {"ok": True, "agrees": False, "differences": "no version 2", "result": {
        "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {}}]}}
    assert document["replicas"][down]["ok"] is False and "connection refused" in document["replicas"][down]["error"]
    assert document["summary"] == {"replicas": 3, "reference": full, "agree": [full], "differ": [one],
                                   "failed": [down]}
    assert len(result.err.splitlines()) == 1


def test_wait_is_a_rollout_check_that_names_the_laggard(fleet):
    started = time.monotonic()
    result = run_script("grpcModelStatus.py", "-m", "Toy", "-v", "2", "--wait", "1.5", "--fleet",
                        server=fleet.target("full", "one", "health"))
    took = time.monotonic() - started
    one = fleet.target("one")
    assert result.code == 1, result
    assert f"{one}  FAILED: model Toy not AVAILABLE after 1.5s; last seen: NOT_FOUND: Could not find version 2" \
        in result.out
    assert result.out.splitlines()[-1].endswith(f"3 replicas: 2 agree, 1 failed ({one})")
    assert took < 1.5 * 2 + 3  # the replicas wait at once, not one after another
    ready = run_script("grpcModelStatus.py", "-m", "Toy", "-v", "1", "--wait", "5", "--fleet",
                       server=fleet.target("full", "one", "health"))
    assert ready.code == 0 and ready.out.splitlines()[-1].endswith("3 replicas, all answered and agree"), ready


def test_a_slow_replica_fails_at_the_deadline_and_the_others_answer(fleet):
    os.kill(fleet.one.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = run_script("grpcModelStatus.py", "-m", "Toy", "-t", "2", "--fleet",
                            server=fleet.target("full", "one"))
        took = time.monotonic() - started
    finally:
        os.kill(fleet.one.process.pid, signal.SIGCONT)
    assert result.code == 1, result
    one = fleet.target("one")
    assert f"{one}  FAILED: no answer from TF Serving at {one} within 2s (raise it with --timeout)" in result.out
    assert f"{fleet.target('full')}  version 2 AVAILABLE, version 1 AVAILABLE" in result.out
    assert took < 2 + 3


def test_a_name_that_resolves_to_several_addresses(fleet):
    port = fleet.full.port  # every 127/8 address is this machine, and the server listens on all of them
    env = fake_dns({"tfs-headless.test": ["127.0.0.3", "127.0.0.1", "127.0.0.2"]})
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", server=f"dns:///tfs-headless.test:{port}",
                        env=env)
    assert result.code == 0, result
    assert [line.split()[0] for line in result.out.splitlines()[:3]] == [f"127.0.0.{i}:{port}" for i in (1, 2, 3)]
    assert result.out.splitlines()[-1] == f"fleet dns:///tfs-headless.test:{port}: 3 replicas, all answered and agree"
    gone = run_script("grpcModelStatus.py", "--fleet", server="gone.test:8500", env=fake_dns({"gone.test": []}))
    assert (gone.code, gone.out) == (1, ""), gone
    assert gone.err == ("grpcModelStatus.py: error: cannot resolve gone.test (Name or service not known): check the "
                        "name, or list the addresses (HOST:PORT,HOST:PORT)\n")


def test_health_on_every_replica(fleet):
    both = run_script("grpcModelStatus.py", "--health", "--fleet", server=fleet.target("health", "one"))
    assert both.code == 0, both
    assert both.out.splitlines()[:2] == [f"{fleet.target('health')}  SERVING", f"{fleet.target('one')}  SERVING"]
    without = run_script("grpcModelStatus.py", "--health", "--fleet", server=fleet.target("health", "full"))
    assert without.code == 1, without
    assert (f"{fleet.target('full')}  FAILED: the server at {fleet.target('full')} has no health service"
            in without.out)


def test_bad_fleet_targets_are_usage_errors_with_nothing_sent(fleet):
    result = run_script("grpcModelStatus.py", "--fleet", server="ipv4:localhost:8500")
    assert (result.code, result.out) == (2, ""), result
    assert result.err == ("grpcModelStatus.py: error: --fleet: 'localhost:8500' in 'ipv4:localhost:8500' is not "
                          "an IPv4 address\n")
    bad = run_script("grpcModelStatus.py", "--fleet", "--fleet-parallel", "0", server=fleet.target("full"))
    assert bad.code == 2 and "--fleet-parallel" in bad.err and bad.out == "", bad


@pytest.fixture(scope="module")
def tls_fleet(tmp_path_factory, toy_models):
    """A TLS server whose certificate names only tfs.fleet.test (as a Service's certificate would)."""
    directory = tmp_path_factory.mktemp("fleet-pki")
    pki = make_pki(str(directory), server_names=("tfs.fleet.test",))
    config = directory / "tls.config"
    config.write_text(ssl_config(pki))
    import grpc
    with open(pki["ca.pem"], "rb") as f:
        credentials = grpc.ssl_channel_credentials(f.read())
    with ServerProcess("--model_name=Toy", f"--model_base_path={toy_models}/Toy", f"--ssl_config_file={config}",
                       credentials=credentials, server_name="tfs.fleet.test") as server:
        yield server, pki


def test_tls_replicas_are_checked_against_the_name_they_were_resolved_from(tls_fleet):
    server, pki = tls_fleet
    env = fake_dns({"tfs.fleet.test": ["127.0.0.1", "127.0.0.2"]})
    result = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", "--ca-cert", pki["ca.pem"],
                        server=f"dns:///tfs.fleet.test:{server.port}", env=env)
    assert result.code == 0, result
    assert result.out.splitlines()[-1].endswith("2 replicas, all answered and agree")
    by_ip = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", "--ca-cert", pki["ca.pem"],
                       server=f"127.0.0.1:{server.port}")  # an address: no name to check the certificate against
    assert by_ip.code == 1 and "its certificate is not for that name (give the name it has with --server-name)" \
        in by_ip.out, by_ip


def test_a_resolver_that_does_not_answer_is_bounded_by_the_deadline(fleet):
    env = {**fake_dns({"slow.test": ["127.0.0.1"]}), "TFS_TEST_FAKE_DNS_DELAY": "60"}
    started = time.monotonic()
    result = run_script("grpcModelStatus.py", "--fleet", "-t", "1", server="slow.test:8500", env=env)
    assert time.monotonic() - started < 1 + 5
    assert (result.code, result.out) == (1, ""), result
    assert result.err == ("grpcModelStatus.py: error: resolving slow.test:8500 took longer than 1s (raise it with "
                          "--timeout, or list the addresses)\n")


def test_ctrl_c_while_a_replica_hangs_exits_130_at_once(fleet):
    os.kill(fleet.one.process.pid, signal.SIGSTOP)
    try:
        process = subprocess.Popen([sys.executable, "grpcModelStatus.py", "-m", "Toy", "--fleet", "-s",
                                    fleet.target("full", "one")], cwd=PYTHON_DIR, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        wait_until(lambda: client_connected(fleet.one.port), what="the script to connect to the stopped replica")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        os.kill(fleet.one.process.pid, signal.SIGCONT)
    assert (process.returncode, out, err) == (130, "", "")


def test_a_full_disk_on_stdout_is_one_line(fleet):
    with open("/dev/full", "w") as full:
        completed = subprocess.run([sys.executable, "grpcModelStatus.py", "-m", "Toy", "--fleet", "-s",
                                    fleet.target("full", "health")], cwd=PYTHON_DIR, stdout=full,
                                   stderr=subprocess.PIPE, text=True, timeout=60)
    assert completed.returncode == 1
    assert completed.stderr == "grpcModelStatus.py: error: cannot write the output: No space left on device\n"


def test_fleet_min_fails_before_asking_when_replicas_are_missing(fleet):
    port = fleet.full.port
    env = fake_dns({"tfs-headless.test": ["127.0.0.1", "127.0.0.2"]})  # the third pod is not ready
    short = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", "--fleet-min", "3",
                       server=f"dns:///tfs-headless.test:{port}", env=env)
    assert (short.code, short.out) == (1, ""), short
    assert short.err == (f"grpcModelStatus.py: error: dns:///tfs-headless.test:{port} resolves to 2 replicas "
                         f"(127.0.0.1:{port}, 127.0.0.2:{port}), fewer than --fleet-min 3 (a headless Service "
                         "lists only the pods that are ready)\n")
    enough = run_script("grpcModelStatus.py", "-m", "Toy", "--fleet", server=f"dns:///tfs-headless.test:{port}",
                        env={**env, "TFS_FLEET_MIN": "2"})
    assert enough.code == 0, enough
