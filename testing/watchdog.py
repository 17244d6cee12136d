"""The nets under pytest-timeout's per-test limit (pyproject.toml), so that no hang costs a whole CI run.

pytest-timeout interrupts a test with SIGALRM. That ends a hang in Python code or in a wait the signal
interrupts, but two kinds of hang escape it:
- a test blocked in C code that retries its call after the signal (os.system, a blocking TensorFlow op):
  once such a test has run GRACE_SECONDS past its limit, the run stops, with the test's name and every
  thread's stack on stderr, exit 3;
- threads a failed test left running (it never told them to stop): pytest would wait for them forever
  after its summary; the run ends instead, naming them, with pytest's own exit status.
Either way, every server the tests started (testing.server.ServerProcess) and still running is stopped.
Loaded by the root conftest.py.
"""

import faulthandler
import os
import signal
import sys
import threading

import pytest

from testing.server import stop_every_server

GRACE_SECONDS = 60.0
_EXIT = pytest.StashKey[int]()  # pytest's exit status, for a run ended with os._exit


def _limit(item):
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    given = item.config.getoption("timeout", None)
    return float(given if given is not None else item.config.getini("timeout") or 0)


def _descendants(pid):
    """The processes below `pid` (Linux /proc), children first."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop_the_run(config, nodeid, limit):
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:  # what the test printed is captured: the terminal's own stderr, for this
        capture.suspend_global_capture(in_=True)
    sys.stderr.write(f"\n{nodeid} is still running {GRACE_SECONDS:g} s past its {limit:g} s limit: a hang in "
                     "C code the limit's signal cannot interrupt. Stopping the run; every thread's stack:\n")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    stop_every_server()
    for pid in _descendants(os.getpid()):  # whatever else the test started (the hung os.system's child)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    limit = _limit(item)
    timer = None
    if limit > 0:
        timer = threading.Timer(limit + GRACE_SECONDS, _stop_the_run, (item.config, item.nodeid, limit))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def pytest_sessionfinish(session, exitstatus):
    stop_every_server()
    session.config.stash[_EXIT] = int(exitstatus)


def pytest_unconfigure(config):
    """After the summary: end the process now if tests left threads that would keep it alive."""
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not left or "MUTANT_UNDER_TEST" in os.environ:  # (mutmut runs pytest in its own process: not ours to end)
        return
    names = ", ".join(sorted(t.name for t in left))
    sys.stderr.write(f"{len(left)} thread(s) that tests started are still running ({names}): not waiting "
                     "for them\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash.get(_EXIT, 1))
