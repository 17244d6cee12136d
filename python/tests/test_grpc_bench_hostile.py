"""grpcBench.py under hostile conditions: SIGTERM mid-run, --plot (and --histogram) paths that cannot take the
image, absurd numbers for the rate, the duration and the counts. Subprocesses against the session's real server.
"""

import contextlib
import importlib.util
import os
import pty
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from script_helpers import PYTHON_DIR, run_script

from testing.server import client_connected, wait_until

SCRIPT = "grpcBench.py"
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed (the scripts do not require it)")


def one_line(result, code, line):
    """Exit `code`, nothing on stdout, exactly `line` on stderr."""
    assert (result.code, result.out, result.err) == (code, "", f"grpcBench.py: error: {line}\n"), result


# -- SIGTERM ---------------------------------------------------------------------------------------

def _bench_with_a_terminal(args):
    """grpcBench started with stderr on a pseudo-terminal, so that it draws its progress line: the line is drawn
    only while requests are measured, so it says when the run is under way. (process, the terminal's fd)"""
    environment = {k: v for k, v in os.environ.items() if k != "TFS_SERVER"}
    terminal, child_side = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, SCRIPT, *args], cwd=PYTHON_DIR, env=environment,
                                   stdout=subprocess.PIPE, stderr=child_side, stdin=subprocess.DEVNULL, text=True)
    except BaseException:
        os.close(terminal)
        raise
    finally:
        os.close(child_side)
    return process, terminal


def _read_terminal(terminal, until=None, timeout=30.0):
    """What the process wrote on the terminal: until `until` appears (AssertionError past the deadline), or, with
    until=None, until the process closed it (the deadline bounds that too)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until is None or until not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {timeout}s waiting for {until!r} on the terminal; saw {seen!r}"
        ready, _, _ = select.select([terminal], [], [], min(left, 0.5))
        if ready:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: every writer closed it
                chunk = b""
            if not chunk:
                assert until is None, f"the terminal closed before {until!r}: {seen!r}"
                break
            seen += chunk
    return seen.decode("utf-8", "replace")


@pytest.mark.parametrize("mode, args", [
    ("single", ["-c", "2"]),
    ("sweep", ["-c", "1,2"]),
    ("fleet", ["--fleet", "-c", "2"]),
])
def test_sigterm_prints_the_report_so_far_and_exits_143(toy_server, mode, args):
    """SIGTERM (kill, docker stop, a CI job's timeout) ends the run as Ctrl-C does: the report of what came back,
    marked interrupted, then exit 143 (128 + SIGTERM, as Ctrl-C's is 128 + SIGINT). Before: killed at once, no
    report."""
    process, terminal = _bench_with_a_terminal(["-s", toy_server.target, "-d", "60", "--warmup", "2", *args])
    try:
        _read_terminal(terminal, until=b" done, ")  # the progress line: requests are being measured
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        err = _read_terminal(terminal)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(terminal)
    assert process.returncode == 143, (process.returncode, out, err)
    assert re.sub(r"\r|\x1b\[K|grpcBench\.py: [^\r]*req/s", "", err) == "", err  # only the progress line
    if mode == "sweep":
        assert re.search(r"^load         closed loop, for 60 s per concurrency, .* \(interrupted\)$", out, re.M), out
        assert re.search(r"^ +1 +[1-9]\d* +0 +.*  \(interrupted\)$", out, re.M), out
    elif mode == "fleet":
        assert re.search(r"^load         closed loop, .* \(interrupted\)$", out, re.M), out
        assert re.search(r"^total +c 2 +[1-9]\d* +0 ", out, re.M), out
    else:
        assert re.search(r"^load         closed loop, concurrency 2, for 60 s, .* \(interrupted\)$", out, re.M), out
        assert re.search(r"^requests     ([1-9]\d*): ok \1, errors 0$", out, re.M), out


def test_sigterm_before_the_run_exits_143_quietly():
    """SIGTERM while the bench waits for an unreachable server's warmup: nothing measured, nothing printed."""
    with socket_that_never_answers() as port:
        process = subprocess.Popen([sys.executable, SCRIPT, "-s", f"127.0.0.1:{port}", "-t", "60"], cwd=PYTHON_DIR,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # its warmup's connection: it is past start-up
            wait_until(lambda: client_connected(port) or process.poll() is not None, what="the bench to connect")
            assert process.poll() is None, process.communicate()
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert (process.returncode, out, err) == (143, "", "")


@contextlib.contextmanager
def socket_that_never_answers():
    """A listening port that accepts connections (the kernel does, from its backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


# -- --plot and --histogram: where the image goes ------------------------------------------------------

@pytest.mark.parametrize("flag", ["--plot", "--histogram"])
def test_an_image_path_that_is_not_a_regular_file_is_refused_before_the_run(run, tmp_path, flag):
    """Before: --plot /dev/full drew into /dev/full.png (matplotlib adds .png to a name without an extension)
    and exited 0; a FIFO named knee.png blocked the end of the run for good; a folder was "unexpected"."""
    fifo = tmp_path / "knee.png"
    os.mkfifo(fifo)
    (tmp_path / "folder.png").mkdir()
    cases = (("/dev/full", "a character device"), (str(fifo), "a FIFO"), (str(tmp_path / "folder.png"),
                                                                          "a directory"))
    for path, kind in cases:
        result = run(SCRIPT, "-n", "5", flag, path, timeout=20)
        one_line(result, 2, f"{flag}: {path} is not a regular file ({kind})")


@pytest.mark.parametrize("flag", ["--plot", "--histogram"])
def test_an_image_path_in_a_missing_folder(tmp_path, flag):
    result = run_script(SCRIPT, "-s", "localhost:1", flag, str(tmp_path / "no" / "k.png"))
    one_line(result, 2, f"{flag}: cannot write {tmp_path}/no/k.png: the folder {tmp_path}/no does not exist")


@contextlib.contextmanager
def read_only_folder():
    """A folder the bench cannot write in (mode 555), and the command to start the bench with: root writes in it
    anyway, so as root the bench starts without that right (CAP_DAC_OVERRIDE, dropped by util-linux's setpriv)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root writes in a read-only folder, and setpriv, which drops that right, is not installed")
        prefix = ["setpriv", "--bounding-set=-dac_override", "--"]
    folder = tempfile.mkdtemp(prefix="bench-read-only-")
    os.chmod(folder, 0o555)
    try:
        yield folder, prefix
    finally:
        os.chmod(folder, 0o700)
        shutil.rmtree(folder)


@pytest.mark.parametrize("flag", ["--plot", "--histogram"])
def test_an_image_path_in_a_read_only_folder_is_refused_before_the_run(toy_server, flag):
    """Before: the run, its report, then "unexpected PermissionError" (exit 1)."""
    with read_only_folder() as (folder, prefix):
        path = os.path.join(folder, "k.png")
        environment = {k: v for k, v in os.environ.items() if k != "TFS_SERVER"}
        completed = subprocess.run([*prefix, sys.executable, SCRIPT, "-s", toy_server.target, "-n", "5", flag, path],
                                   cwd=PYTHON_DIR, env=environment, capture_output=True, text=True, timeout=60)
        assert not os.listdir(folder)
    assert (completed.returncode, completed.stdout) == (2, ""), completed
    assert completed.stderr == (f"grpcBench.py: error: {flag}: cannot write {path}: Permission denied in the folder "
                                f"{folder} (give a path in a folder you can write)\n")


def _file_size_limit(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@needs_matplotlib
@pytest.mark.parametrize("flag", ["--plot", "--histogram"])
def test_an_image_that_cannot_be_written_at_the_end_is_one_line(toy_server, tmp_path, flag):
    """The disk fills (here: a file size limit) as the image is written, after the run: the report, then one line,
    exit 1, and an existing file is left as it was. Before: "unexpected OSError" and a cut image."""
    assert run_script("-c", "import matplotlib.pyplot").code == 0  # its font cache, built without the limit
    path = tmp_path / "k.png"
    path.write_bytes(b"the old image")
    environment = {k: v for k, v in os.environ.items() if k != "TFS_SERVER"}
    completed = subprocess.run([sys.executable, SCRIPT, "-s", toy_server.target, "-n", "20", flag, str(path)],
                               cwd=PYTHON_DIR, env=environment, capture_output=True, text=True, timeout=60,
                               preexec_fn=_file_size_limit(2048))  # a PNG of the plot is ~20 KB
    assert completed.returncode == 1, completed
    assert re.search(r"^requests     20: ok 20, errors 0$", completed.stdout, re.M), completed
    assert completed.stderr == (f"grpcBench.py: error: {flag}: cannot write {path}: File too large "
                                "(the file is unchanged)\n")
    assert path.read_bytes() == b"the old image"
    assert sorted(os.listdir(tmp_path)) == ["k.png"]  # no temporary file left


@needs_matplotlib
def test_an_image_path_is_written_as_given(run, tmp_path):
    """Before: --plot knee wrote knee.png (matplotlib's default format adds its extension), not the path checked."""
    result = run(SCRIPT, "-n", "10", "-c", "1,2", "--plot", str(tmp_path / "knee"))
    assert result.code == 0, result
    assert os.listdir(tmp_path) == ["knee"]
    assert (tmp_path / "knee").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    svg = run(SCRIPT, "-n", "10", "--histogram", str(tmp_path / "h.svg"))
    assert svg.code == 0 and b"<svg" in (tmp_path / "h.svg").read_bytes()[:1000], svg


@needs_matplotlib
def test_an_image_format_matplotlib_cannot_write_is_refused_before_the_run(run, tmp_path):
    """Before: the run, its report, then "unexpected ValueError: Format 'txt' is not supported"."""
    result = run(SCRIPT, "-n", "5", "--plot", str(tmp_path / "k.txt"))
    one_line(result, 2, f"--plot {tmp_path}/k.txt: matplotlib cannot write .txt files: name it .png "
                        "(or .svg, .pdf)")


# -- absurd numbers ----------------------------------------------------------------------------------

RATE = "argument -r/--rate: the rate must be between 0.001 and 1000000 requests/s"
DURATION = "argument -d/--duration: the duration must be between 0.001 and 1000000000 seconds"


@pytest.mark.parametrize("args, message", [
    (("-r", "1e-300"), f"{RATE}, not 1e-300"),  # before: unexpected OverflowError
    (("-r", "1e-5"), f"{RATE}, not 1e-5"),  # before: waited 28 hours between two requests
    (("-r", "1e300", "-d", "1"), f"{RATE}, not 1e300"),  # before: sent for ever (t0 + i/R never passed t0 + 1)
    (("-r", "inf"), f"{RATE}, not inf"),
    (("-r", "nan"), f"{RATE}, not nan"),
    (("-r", "0"), f"{RATE}, not 0"),
    (("-r", "x"), "argument -r/--rate: not a number: 'x'"),
    (("-d", "1e-300"), f"{DURATION}, not 1e-300"),  # before: 0 requests, exit 0
    (("-d", "1e300"), f"{DURATION}, not 1e300"),
    (("-d", "inf"), f"{DURATION}, not inf"),
    (("-d", "nan"), f"{DURATION}, not nan"),
    (("-d", "-1"), f"{DURATION}, not -1"),
    (("-c", "1e300"), "argument -c/--concurrency: not a whole number: '1e300'"),
    (("-c", "nan"), "argument -c/--concurrency: not a whole number: 'nan'"),
    (("-c", "1,inf"), "argument -c/--concurrency: not a whole number: 'inf' in the list: '1,inf'"),
    (("-n", "inf"), "argument -n/--requests: not a whole number: 'inf'"),
    (("-n", "1e-300"), "argument -n/--requests: not a whole number: '1e-300'"),
    (("--warmup", "1e300"), "argument --warmup: not a whole number: '1e300'"),
    (("--warmup", "nan"), "argument --warmup: not a whole number: 'nan'"),
])
def test_absurd_numbers_are_one_line_and_exit_2(args, message):
    result = run_script(SCRIPT, "-s", "localhost:1", *args)  # nothing is sent: no server needed
    assert (result.code, result.out) == (2, ""), result
    assert result.err.splitlines() == ["usage: grpcBench.py [options] (see grpcBench.py --help)",
                                       f"grpcBench.py: error: {message}"], result


def test_the_bounds_of_the_rate_and_the_duration_are_accepted(run):
    slow = run(SCRIPT, "-r", "0.001", "-d", "0.001", "--warmup", "0", "--format", "json")  # one request, at t0
    assert slow.code == 0 and '"requests": 1, "ok": 1' in slow.out, slow
    fast = run(SCRIPT, "-r", "1000000", "-n", "50", "--warmup", "0")
    assert fast.code == 0 and "requests     50: ok 50, errors 0" in fast.out, fast
