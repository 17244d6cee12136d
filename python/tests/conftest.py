"""Fixtures for the script tests. python/ is on sys.path through the root pyproject.toml's pytest settings,
as for the scripts, so tests import `tfsclient` and the scripts."""

import socket

import pytest
from fleet_support import Fleet
from script_helpers import run_script

from testing.server import ServerProcess


@pytest.fixture
def run(toy_server):
    """run(script, *args) against the session's toy server."""
    def runner(script, *args, **kwargs):
        kwargs.setdefault("server", toy_server.target)
        return run_script(script, *args, **kwargs)
    return runner



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
