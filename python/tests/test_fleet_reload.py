"""grpcReloadModel.py --fleet [--rollback OLD] against three servers of its own (reloads change what they serve).

Every server starts on OLD (Toy version 1); NEW adds version 2; MISSING asks for version 7, which is not on
disk (TF Serving takes it and then serves no Toy). Each test starts with every server back on OLD.
"""

import json
import os
import re
import signal
import socket

import pytest
from fleet_support import fake_dns
from script_helpers import run_script

from testing.server import ServerProcess, wait_until
from tfsclient import protos

PROGRAM = "grpcReloadModel.py"


def toy_config(toy_models, *versions):
    listed = " ".join(f"versions: {v}" for v in versions)
    return ('model_config_list { config { name: "Toy" base_path: "%s/Toy" model_platform: "tensorflow" '
            'model_version_policy { specific { %s } } } }\n' % (toy_models, listed))


class Configs:
    def __init__(self, folder, toy_models):
        self.old, self.new, self.missing = (str(folder / name) for name in ("old.config", "new.config",
                                                                             "missing.config"))
        self.broken = str(folder / "broken.config")
        for path, versions in ((self.old, (1,)), (self.new, (1, 2)), (self.missing, (7,))):
            with open(path, "w") as f:
                f.write(toy_config(toy_models, *versions))
        with open(self.broken, "w") as f:
            f.write("model_config_list { config { nme: \"Toy\" } }\n")


@pytest.fixture(scope="module")
def configs(toy_models, tmp_path_factory):
    return Configs(tmp_path_factory.mktemp("fleet_reload"), toy_models)


class Replicas:
    """Three servers (a, b, c) and an address where nothing listens (down)."""

    def __init__(self, servers, down_port):
        self.a, self.b, self.c = self.servers = servers
        self.down = f"127.0.0.1:{down_port}"

    @staticmethod
    def address(server):
        return f"127.0.0.1:{server.port}"

    def target(self, *members):
        return ",".join(self.down if m == "down" else self.address(getattr(self, m)) for m in members)


@pytest.fixture(scope="module")
def replicas(configs):
    servers = [ServerProcess(f"--model_config_file={configs.old}", "--max_num_load_retries=0") for _ in range(3)]
    with socket.socket() as down:  # bound, never listening: connections are refused
        down.bind(("127.0.0.1", 0))
        try:
            for server in servers:  # all boot at once
                server.start(expect_ready=False)
            for server in servers:
                server.wait_ready()
            yield Replicas(servers, down.getsockname()[1])
        finally:
            for server in servers:
                server.__exit__(None, None, None)


def statuses(server):
    """{version: state name} of Toy on one server ({} if it has no Toy)."""
    import grpc

    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "Toy"
    states = protos.get_model_status_pb2.ModelVersionStatus.State
    with server.channel() as channel:
        stub = protos.model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            response = stub.GetModelStatus(request, timeout=10)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise
    return {v.version: states.Name(v.state) for v in response.model_version_status}


def serving(server):
    return sorted(v for v, state in statuses(server).items() if state == "AVAILABLE")


def wait_serving(server, versions):
    wait_until(lambda: serving(server) == versions, timeout=30,
               what=f"{server.target} serving Toy {versions} (it serves {statuses(server)})")


def reload_directly(server, path):
    """Put one server on the config in `path` with a plain gRPC call (not the script under test)."""
    from google.protobuf import text_format

    request = protos.model_management_pb2.ReloadConfigRequest()
    with open(path) as f:
        text_format.Parse(f.read(), request.config)
    with server.channel() as channel:
        response = protos.model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request,
                                                                                                     timeout=30)
    assert not response.status.error_code, response


@pytest.fixture
def servers(replicas, configs):
    """The three servers, each on OLD and serving Toy 1 only."""
    for server in replicas.servers:
        reload_directly(server, configs.old)
    for server in replicas.servers:
        wait_serving(server, [1])
    return replicas


def reload(*args, **kwargs):
    return run_script(PROGRAM, *args, **kwargs)


def lines(result):
    return result.out.splitlines()


def test_every_replica_takes_the_new_config(servers, configs):
    target = servers.target("a", "b", "c")
    result = reload("--fleet", "-s", target, "-c", configs.new)
    assert (result.code, result.err) == (0, ""), result
    assert lines(result) == [f"{servers.address(s)}  reloaded: serving Toy" for s in servers.servers] + [
        f"fleet {target}: 3 replicas, all reloaded and serving"]
    for server in servers.servers:
        wait_serving(server, [1, 2])
    status = run_script("grpcModelStatus.py", "--fleet", "-s", target, "-m", "Toy")
    assert status.code == 0 and status.out.count("version 2 AVAILABLE") == 3, status


def test_a_replica_that_is_down_without_rollback(servers, configs):
    target = servers.target("a", "down", "b")
    result = reload("--fleet", "-s", target, "-c", configs.new)
    assert result.code == 1, result
    assert lines(result) == [
        f"{servers.address(servers.a)}  reloaded: serving Toy",
        f"{servers.down}  FAILED: cannot reach TF Serving at {servers.down} (connection refused): is the server "
        "running? (it kept its config)",
        f"{servers.address(servers.b)}  reloaded: serving Toy",
        f"fleet {target}: 3 replicas: 2 reloaded, 1 failed ({servers.down})"]
    took = servers.target("a", "b")
    command = f"python3 {PROGRAM} --fleet -s {took} -c OLD_CONFIG"
    assert result.err == (
        f"{PROGRAM}: error: the new config did not land on every replica: 1 of 3 failed ({servers.down}: cannot "
        f"reach TF Serving at {servers.down} (connection refused): is the server running?); it landed on "
        f"{servers.address(servers.a)}, {servers.address(servers.b)}; to put them back, run: {command} (or give "
        "--rollback OLD_CONFIG with the reload)\n")
    for server in (servers.a, servers.b):
        wait_serving(server, [1, 2])
    assert serving(servers.c) == [1]  # not in the target
    # the command offered does put them back
    back = reload(*command.replace("OLD_CONFIG", configs.old).split()[2:])
    assert back.code == 0, back
    for server in (servers.a, servers.b):
        wait_serving(server, [1])


def test_a_replica_that_is_down_with_rollback(servers, configs):
    target = servers.target("a", "b", "down")
    result = reload("--fleet", "-s", target, "-c", configs.new, "--rollback", configs.old)
    assert result.code == 1, result
    a, b = servers.address(servers.a), servers.address(servers.b)
    assert lines(result)[3:] == [
        f"fleet {target}: 3 replicas: 2 reloaded, 1 failed ({servers.down})",
        f"rollback to {configs.old} on the replicas that took the new config or may have:",
        f"{a}  rolled back: serving Toy",
        f"{b}  rolled back: serving Toy",  # and none to the replica that is down
        f"fleet {target}: rollback: 2 replicas, all rolled back and serving"]
    assert len(result.err.splitlines()) == 1
    assert result.err.endswith(f"; it landed on {a}, {b}; all rolled back to {configs.old}: {a}, {b}\n")
    for server in (servers.a, servers.b):  # back on version 1 only
        wait_serving(server, [1])
        assert statuses(server).get(2) == "END"  # version 2 was loaded, then unloaded


def test_a_config_that_is_not_served_after_the_reload(servers, configs):
    target = servers.target("a", "b")
    result = reload("--fleet", "-s", target, "-c", configs.missing)
    assert result.code == 1, result
    first = lines(result)[0]  # (version 2 shows END too after an earlier test loaded it)
    # version 1 is END, or still UNLOADING on a busy machine: TF Serving answers the reload before unloads end
    assert re.match(re.escape(f"{servers.address(servers.a)}  NOT SERVED: model Toy is not served after the reload: "
                              "version 7 is not on disk; the status shows versions 1 ") + "(END|UNLOADING)",
                    first), result
    assert first.endswith(" (it took the config)")
    assert lines(result)[-1] == (f"fleet {target}: 2 replicas: 0 reloaded, 2 not served ({servers.address(servers.a)}, "
                                 f"{servers.address(servers.b)})")
    assert "2 of 2 do not serve it after the reload" in result.err
    assert f"to put them back, run: python3 {PROGRAM} --fleet -s {target} -c OLD_CONFIG" in result.err
    assert serving(servers.a) == serving(servers.b) == []
    again = reload("--fleet", "-s", target, "-c", configs.missing, "--rollback", configs.old)
    assert again.code == 1, again
    assert lines(again)[-3:] == [f"{servers.address(s)}  rolled back: serving Toy" for s in (servers.a, servers.b)] + [
        f"fleet {target}: rollback: 2 replicas, all rolled back and serving"]
    for server in (servers.a, servers.b):
        wait_serving(server, [1])


def test_a_slow_replica_is_unknown_and_rolled_back_too(servers, configs):
    target = servers.target("a", "b", "c")
    c = servers.address(servers.c)
    os.kill(servers.c.process.pid, signal.SIGSTOP)
    try:
        result = reload("--fleet", "-s", target, "-c", configs.new, "-t", "1.5", "--rollback", configs.old)
    finally:
        os.kill(servers.c.process.pid, signal.SIGCONT)
    assert result.code == 1, result
    unknown = f"no answer from TF Serving at {c} within 1.5s (raise it with --timeout)"
    assert lines(result) == [
        f"{servers.address(servers.a)}  reloaded: serving Toy",
        f"{servers.address(servers.b)}  reloaded: serving Toy",
        f"{c}  UNKNOWN: {unknown} (it may have taken the config)",
        f"fleet {target}: 3 replicas: 2 reloaded, 1 unknown ({c})",
        f"rollback to {configs.old} on the replicas that took the new config or may have:",
        f"{servers.address(servers.a)}  rolled back: serving Toy",
        f"{servers.address(servers.b)}  rolled back: serving Toy",
        f"{c}  rollback UNKNOWN: {unknown} (it may have taken the old config)",
        f"fleet {target}: rollback: 3 replicas: 2 rolled back, 1 unknown ({c})"]
    assert f"(and maybe on {c})" in result.err
    assert result.err.endswith(f"the rollback did not land on {c} ({c}: {unknown}): run python3 {PROGRAM} "
                               f"--fleet -s {c} -c {configs.old}\n")
    for server in (servers.a, servers.b):
        wait_serving(server, [1])
    wait_until(lambda: statuses(servers.c), what="the resumed server answering")


def test_without_rollback_a_slow_replica_is_named_in_the_way_back(servers, configs):
    target = servers.target("c", "a")
    os.kill(servers.c.process.pid, signal.SIGSTOP)
    try:
        result = reload("--fleet", "-s", target, "-c", configs.new, "-t", "1")
    finally:
        os.kill(servers.c.process.pid, signal.SIGCONT)
    assert result.code == 1, result
    assert lines(result)[-1] == f"fleet {target}: 2 replicas: 1 reloaded, 1 unknown ({servers.address(servers.c)})"
    assert f"to put them back, run: python3 {PROGRAM} --fleet -s {servers.target('a', 'c')} -c OLD_CONFIG" in result.err
    wait_until(lambda: statuses(servers.c), what="the resumed server answering")


def test_a_name_that_resolves_to_several_addresses(servers, configs):
    # every 127/8 address reaches the servers (they listen on 0.0.0.0): two addresses of one server
    port = servers.a.port
    env = fake_dns({"tfs-headless.test": ["127.0.0.2", "127.0.0.1"], "tfs-down.test": ["127.0.0.1", "127.0.0.3"]})
    target = f"dns:///tfs-headless.test:{port}"
    result = reload("--fleet", "-s", target, "-c", configs.new, env=env)
    assert (result.code, result.err) == (0, ""), result
    assert lines(result) == [f"127.0.0.1:{port}  reloaded: serving Toy", f"127.0.0.2:{port}  reloaded: serving Toy",
                             f"fleet {target}: 2 replicas, all reloaded and serving"]
    wait_serving(servers.a, [1, 2])
    down_port = servers.down.rsplit(":", 1)[1]
    result = reload("--fleet", "-s", f"tfs-down.test:{down_port}", "-c", configs.new, env=env)
    assert result.code == 1, result
    assert [line.split("  ")[0] for line in lines(result)[:2]] == [f"127.0.0.1:{down_port}", f"127.0.0.3:{down_port}"]
    assert result.err.endswith("; no replica took it, so the fleet is as it was\n")


def test_json_is_keyed_by_address(servers, configs):
    target = servers.target("a", "down")
    a = servers.address(servers.a)
    result = reload("--fleet", "-s", target, "-c", configs.new, "--rollback", configs.old, "--format", "json")
    assert result.code == 1 and len(result.err.splitlines()) == 1, result
    document = json.loads(result.out)
    assert document["target"] == target and document["config"] == ["Toy"]
    assert document["replicas"][a] == {"ok": True, "outcome": "reloaded", "reloaded": ["Toy"],
                                       "rollback": {"ok": True, "outcome": "rolled_back"}}
    down = document["replicas"][servers.down]
    assert (down["ok"], down["outcome"], "rollback" in down) == (False, "failed", False)
    assert "connection refused" in down["error"]
    assert document["summary"] == {"replicas": 2, "reloaded": [a], "not_served": [], "failed": [servers.down],
                                   "unknown": [], "rollback": {"config": configs.old, "rolled_back": [a],
                                                               "failed": []}}
    wait_serving(servers.a, [1])
    ok = reload("--fleet", "-s", servers.target("a", "b"), "-c", configs.new, "--format", "json")
    assert ok.code == 0 and json.loads(ok.out)["summary"]["reloaded"] == [a, servers.address(servers.b)], ok


def test_one_model_with_versions(servers, toy_models):
    target = servers.target("a", "b")
    result = reload("--fleet", "-s", target, "-m", "Toy", "--versions", "1,2", "--base-path", f"{toy_models}/Toy")
    assert result.code == 0, result
    assert result.err == (f"{PROGRAM}: warning: TF Serving will serve only model Toy now on every replica; every "
                          "other model is unloaded (use -c FILE to keep several)\n")
    for server in (servers.a, servers.b):
        wait_serving(server, [1, 2])


@pytest.mark.parametrize("args, message", [
    (("-c", "{new}", "--rollback", "{old}"), "--rollback goes with --fleet"),
    (("--fleet", "-m", "Toy"), "with --fleet, -m needs --versions or --latest"),
    (("--fleet", "-c", "{new}", "--rollback", "{broken}"), "--rollback: {broken}:1:"),
    (("--fleet", "-c", "{new}", "--rollback", "{broken}.nope"), "--rollback: "),
    (("--fleet", "-c", "{broken}", "--rollback", "{old}"), "{broken}:1:"),
    (("--fleet", "-c", "{new}", "-s", "dns://8.8.8.8/tfs:8500"), "--fleet resolves names with the system resolver"),
])
def test_usage_errors_send_nothing(servers, configs, args, message):
    before = [statuses(server) for server in servers.servers]
    names = {"new": configs.new, "old": configs.old, "broken": configs.broken}
    args = [arg.format(**names) for arg in args]
    if "-s" not in args:
        args += ["-s", servers.target("a", "b", "c")]
    result = reload(*args)
    assert (result.code, result.out, len(result.err.splitlines())) == (2, "", 1), result
    assert result.err.startswith(f"{PROGRAM}: error: {message.format(**names)}")
    assert [statuses(server) for server in servers.servers] == before  # nothing was sent
