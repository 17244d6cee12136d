"""server.memory in real processes: glibc's arenas, read with malloc_info(3) after threads allocate."""

import os
import subprocess
import sys
import threading

import pytest

from testing.paths import REPO

# In a fresh process: the server's start-up call, then four threads that each allocate, then glibc's own count
# of its arenas (malloc_info prints one <heap nr="N"> element for each).
PROGRAM = r"""
import ctypes, re, sys, tempfile, threading
from server.util import memory
memory.use_one_arena()
blocks = []
def allocate():
    blocks.extend(bytearray(1000) for _ in range(2000))
threads = [threading.Thread(target=allocate) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile("r") as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(len(re.findall(r'<heap nr="\d+">', out.read())))
"""


def arenas(env):
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0 and "malloc_info" in done.stderr:
        pytest.skip(f"no glibc malloc_info here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_threads_share_one_arena_unless_malloc_arena_max_is_set():
    """README: the server's threads share glibc's main arena (MALLOC_ARENA_MAX=1), unless that is set."""
    assert arenas({}) == 1
    assert arenas({"MALLOC_ARENA_MAX": "8"}) > 1  # left to glibc: threads got arenas of their own
    assert arenas({"MALLOC_ARENA_MAX": "1"}) == 1


def test_collection_paused_nests_across_threads_and_resumes_after_the_last():
    import gc

    from server.util import memory

    inside, leave = threading.Event(), threading.Event()

    def other():
        with memory.collection_paused():
            inside.set()
            leave.wait(10)

    assert gc.isenabled()
    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with memory.collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread is still inside
    leave.set()
    thread.join(10)
    assert gc.isenabled()
    try:
        with memory.collection_paused():
            raise ValueError("a parse error")
    except ValueError:
        pass
    assert gc.isenabled()
