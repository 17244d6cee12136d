"""Where things are: this checkout, its toy models, and ../shared (the guide, TF Serving's test models)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "models", "save")
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
TESTDATA = os.path.join(SHARED, "tfs-testdata")
GUIDE = os.path.join(SHARED, "seeds", "000_5ee4f1086baee63c.txt")
# The interpreter with TensorFlow (the server's, and the model builder's): the repo's .venv. The script tests also
# run in .venv-light, which has no TensorFlow.
FULL_PYTHON = os.path.join(REPO, ".venv", "bin", "python")


def need_shared(path):
    """`path` (under ../shared) if it exists; else skip the test with one clear reason."""
    if not os.path.exists(path):
        import pytest

        pytest.skip(f"{path} is missing: these tests need ../shared beside the checkout (the guide and "
                    "TF Serving's test models)")
    return path
