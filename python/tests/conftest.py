"""Fixtures for the script tests; python/ on sys.path, as for the scripts, so tests import `tfsclient` and
`common` (the one place that says where the library is: a test module does not patch sys.path itself)."""

import os
import sys

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

from script_helpers import run_script  # noqa: E402


@pytest.fixture
def run(toy_server):
    """run(script, *args) against the session's toy server."""
    def runner(script, *args, **kwargs):
        kwargs.setdefault("server", toy_server.target)
        return run_script(script, *args, **kwargs)
    return runner
