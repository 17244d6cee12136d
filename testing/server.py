"""Run the real server as a subprocess for tests and benchmarks: a free port, readiness by polling."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import weakref

from .paths import REPO

EXECUTABLE = os.path.join(REPO, "server", "tensorflow_model_server")
_STARTED = weakref.WeakSet()  # every ServerProcess started, for stop_every_server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`tensorflow_model_server` with the given flags; `start()` returns once it answers gRPC."""

    def __init__(self, *flags, cwd=None, credentials=None, server_name=None, env=None):
        """credentials (grpc.ChannelCredentials) and server_name: how to reach a TLS server when polling it;
        env: variables added to the server's environment."""
        self.flags = list(flags)
        self.env = dict(os.environ, **env) if env else None
        self.cwd = cwd or REPO
        self.credentials, self.server_name = credentials, server_name
        self.port = None
        self.process = None
        self._log = tempfile.NamedTemporaryFile(prefix="tfs-server-", suffix=".log", delete=False)

    @property
    def target(self):
        return f"localhost:{self.port}"

    def start(self, timeout=90.0, expect_ready=True):
        port_flags = [f for f in self.flags if f.startswith("--port")]
        self.port = int(port_flags[0].split("=")[1]) if port_flags else free_port()
        flags = self.flags if port_flags else [f"--port={self.port}"] + self.flags
        self.process = subprocess.Popen([EXECUTABLE, "--rest_api_port=0", *flags], cwd=self.cwd, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        _STARTED.add(self)
        if expect_ready:
            try:
                self.wait_ready(timeout)
            except BaseException:  # not ready, or the test's time limit: a `with` block never gets to stop it
                self._end()
                raise
        return self

    def wait_ready(self, timeout=90.0):
        """Poll until the gRPC port accepts connections (it opens only after the models loaded)."""
        import grpc

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with self.channel() as channel:
                try:
                    grpc.channel_ready_future(channel).result(timeout=0.25)
                    return
                except grpc.FutureTimeoutError:
                    pass
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def channel(self):
        """A channel to the server, over TLS when it was given credentials."""
        import grpc

        if self.credentials is None:
            return grpc.insecure_channel(self.target)
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return grpc.secure_channel(self.target, self.credentials, options=options)

    def log(self):
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_for_log(self, pattern, timeout=30.0, count=1):
        """Poll the server's log until `pattern` (a regex) has appeared `count` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log())) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not in the server log:\n{self.log()}")

    def stop(self, timeout=30.0):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode if self.process else None

    def _end(self):
        """Kill the server now (a test that failed or ran out of time), without waiting on a clean stop."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        os.unlink(self._log.name)


def stop_every_server():
    """Kill every server the tests started that still runs (testing.watchdog calls it as the run ends)."""
    for server in list(_STARTED):
        server._end()


def wait_until(check, timeout=30.0, what="condition", interval=0.05):
    """Poll `check()` every `interval` seconds until it is true; AssertionError after `timeout` seconds.
    Every polling loop of the tests goes through here (or has a deadline of its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def connection_refused(port):
    """Whether a TCP connect to `port` on 127.0.0.1 is refused: nothing listens there any more.
    A reset is not yet a refusal: the listener closed with this connection in its backlog, so poll again."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except (ConnectionResetError, socket.timeout):
        return False


def client_connected(port):
    """Whether some client holds an established TCP connection to `port` (Linux /proc)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # remote port, ESTABLISHED
                return True
    return False
