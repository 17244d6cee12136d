"""Fixtures for the script tests. python/ is on sys.path through the root pyproject.toml's pytest settings,
as for the scripts, so tests import `tfsclient` and `common`."""

import os
import socket

import pytest
from script_helpers import run_script

from testing.server import ServerProcess


@pytest.fixture
def run(toy_server):
    """run(script, *args) against the session's toy server."""
    def runner(script, *args, **kwargs):
        kwargs.setdefault("server", toy_server.target)
        return run_script(script, *args, **kwargs)
    return runner


FAKE_DNS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_dns")


class Fleet:
    """Three real servers that disagree, and an address where none listens (a replica that is down).

    full: the toy server (toy_labels.config: Toy 1 and 2, labels, Toy_double, MultiTask);
    health: the same config with the gRPC health service on;
    one: Toy version 1 only, and no other model (a rollout that has not reached it).
    """

    def __init__(self, full, health, one, down_port):
        self.full, self.health, self.one = full, health, one
        self.down = f"127.0.0.1:{down_port}"

    def address(self, server):
        return f"127.0.0.1:{server.port}"

    def target(self, *names):
        """A comma list of 127.0.0.1:PORT for the named members ('full', 'health', 'one', 'down')."""
        return ",".join(self.down if name == "down" else self.address(getattr(self, name)) for name in names)


def fake_dns(table):
    """The environment that makes a script's resolver answer `table` ({name: [ip, ...]}) and nothing else
    differently (tests/fake_dns/sitecustomize.py)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [FAKE_DNS_DIR, os.environ.get("PYTHONPATH")])),
            "TFS_TEST_FAKE_DNS": ";".join(f"{name}={','.join(ips)}" for name, ips in table.items())}


@pytest.fixture(scope="session")
def fleet(toy_models, toy_server, tmp_path_factory):
    """The session's fleet (see Fleet). Tests must not change what its servers serve (reload tests start
    their own)."""
    config = tmp_path_factory.mktemp("fleet") / "toy1.config"
    config.write_text('model_config_list { config { name: "Toy" base_path: "%s/Toy" model_platform: "tensorflow" '
                      'model_version_policy { specific { versions: 1 } } } }\n' % toy_models)
    health = ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                           "--allow_version_labels_for_unavailable_models", "--enable_grpc_healthcheck_service")
    one = ServerProcess(f"--model_config_file={config}", "--enable_grpc_healthcheck_service")
    servers = [health, one]
    for server in servers:  # both start at once
        server.start(expect_ready=False)
    with socket.socket() as down:  # bound, never listening: connections to it are refused, and no server
        down.bind(("127.0.0.1", 0))  # started later can take the port
        try:
            for server in servers:
                server.wait_ready()
            yield Fleet(toy_server, health, one, down.getsockname()[1])
        finally:
            for server in servers:
                server.__exit__(None, None, None)
