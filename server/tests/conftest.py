"""Fixtures shared by the server's tests, in every folder under server/tests/ (the repo's conftest.py has the
toy models and the toy server)."""

import pytest

from testing.slow_model import build_slow_model


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    build_slow_model(root / "Slow" / "1")
    return root / "Slow"  # a model that sleeps as long as asked (testing/slow_model.py), served as "Slow"
