"""Run a script as a user would: a subprocess started from python/, pointed at a server."""

import os
import subprocess
import sys

from testing.paths import GUIDE  # noqa: F401  (the guide's path, for the tests that read it)

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Result:
    def __init__(self, completed):
        self.code = completed.returncode
        self.out = completed.stdout
        self.err = completed.stderr

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def run_script(script, *args, server=None, env=None, timeout=60, stdin=None):
    """Run python/<script> as a subprocess from python/, the way the guide does."""
    environment = dict(os.environ)
    environment.pop("TFS_SERVER", None)
    if server is not None:
        environment["TFS_SERVER"] = server
    environment.update(env or {})
    completed = subprocess.run([sys.executable, script, *args], cwd=PYTHON_DIR, env=environment,
                               capture_output=True, text=True, timeout=timeout, input=stdin)
    return Result(completed)
