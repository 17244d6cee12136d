"""Fixtures for the script tests. python/ is on sys.path through the root pyproject.toml's pytest settings,
as for the scripts, so tests import `tfsclient` and `common`."""

import pytest
from script_helpers import run_script


@pytest.fixture
def run(toy_server):
    """run(script, *args) against the session's toy server."""
    def runner(script, *args, **kwargs):
        kwargs.setdefault("server", toy_server.target)
        return run_script(script, *args, **kwargs)
    return runner
