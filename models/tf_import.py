"""Import TensorFlow once, lazily and quietly (the server's quiet import), so a run that only skips never loads it."""

import sys

from model_paths import REPO_DIR

_tf = None


def import_tf(verbose: bool = False):
    """Import TensorFlow quietly (the server's own quiet import) and return the module."""
    global _tf
    if _tf is None:
        if str(REPO_DIR) not in sys.path:
            sys.path.insert(0, str(REPO_DIR))
        from server.util.quiet_tf import import_tensorflow

        _tf = import_tensorflow(verbose)
    return _tf
