"""Fixtures shared by every test: the toy models, built once, and the real server on a free port.

The repo and python/ are on sys.path through pyproject.toml's pytest settings; test support is in testing/.
"""

import os
import subprocess
import sys

import pytest

from testing.paths import FULL_PYTHON, MODELS, REPO, SHARED, need_shared
from testing.server import ServerProcess

pytest_plugins = ["testing.watchdog"]  # the nets under each test's time limit


@pytest.fixture(scope="session")
def toy_models():
    """models/save with the guide's toy models and configs (built if missing; fast when present)."""
    need_shared(os.path.join(SHARED, "toy_models.json"))
    builder = FULL_PYTHON if os.path.exists(FULL_PYTHON) else sys.executable  # it needs TensorFlow
    subprocess.run([builder, os.path.join(REPO, "models", "build_toy_models.py")],
                   check=True, stdout=subprocess.DEVNULL)
    return MODELS


@pytest.fixture(scope="session")
def toy_server(toy_models):
    """The server as the README runs it: toy_labels.config (Toy 1 and 2, stable/canary, Toy_double)."""
    server = ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                           "--allow_version_labels_for_unavailable_models")
    with server:
        yield server
