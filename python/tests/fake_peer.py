"""Start tests/fake_server.py as a subprocess: its target once it has printed the port it listens on."""

import os
import subprocess
import sys
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))


@contextmanager
def fake_server(mode, *args):
    process = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_server.py"), mode, *map(str, args)],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # blocks until it listens (or it died: then empty)
        if not line.strip():
            raise RuntimeError(f"fake server ({mode}) did not start: exit {process.wait()}")
        yield f"localhost:{int(line)}", process
    finally:
        process.kill()
        process.wait()
