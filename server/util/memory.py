"""Giving memory back after a large request.

glibc keeps what a request freed in its arenas; after a tensor of hundreds of MB the server would
stay that much larger for good. `after_large_request()` asks glibc (malloc_trim) to return the free
pages, once the request's answer has had time to be sent (a debounced timer: a burst of large
requests costs one trim). `use_one_arena()`, at start-up, lets that trim reach all of it.
`collection_paused()` keeps the cyclic collector from walking a large parse's new objects over and over.
"""

import contextlib
import ctypes
import ctypes.util
import gc
import os
import threading

LARGE_BYTES = 16 * 2**20  # a decoded request tensor this large schedules a trim
DELAY_SECONDS = 1.0
_M_ARENA_MAX = -8  # glibc's malloc.h

_lock = threading.Lock()
_timer = None


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
_trim = getattr(_LIBC, "malloc_trim", None)  # None: not glibc, nothing to trim with


def use_one_arena():
    """Have every thread allocate from glibc's main arena (mallopt(3), M_ARENA_MAX 1); call it before the
    server starts its threads. Left to the user where MALLOC_ARENA_MAX (glibc's own setting) is set.

    glibc gives threads arenas of their own, and raises its mmap threshold with each large block freed,
    so after one large request blocks of up to 32 MB come from those arenas. What a thread's arena frees
    at its top stays there: malloc_trim gives back the main arena's top and free blocks, not the others'
    tops. In one arena the trim gives it all back, at no cost in speed (figures: README.md, "The local
    server")."""
    if _LIBC is None or "MALLOC_ARENA_MAX" in os.environ or not hasattr(_LIBC, "mallopt"):
        return
    _LIBC.mallopt(_M_ARENA_MAX, 1)


def after_large_request():
    """Schedule one malloc_trim(0) DELAY_SECONDS from now (later calls before it runs share it)."""
    global _timer
    if _trim is None:
        return
    with _lock:
        if _timer is not None:
            return
        _timer = threading.Timer(DELAY_SECONDS, _run)
        _timer.daemon = True
        _timer.start()


def _run():
    global _timer
    with _lock:
        _timer = None
    _trim(0)


_pauses = 0  # how many callers are inside collection_paused()
_pauses_lock = threading.Lock()


@contextlib.contextmanager
def collection_paused():
    """Python's cyclic garbage collector off while the block runs (and on again after the last such block
    ends, in any thread). A parse that makes millions of lists would otherwise have the collector walk all
    of them again and again: 2.8x the parse's time for a 51 MB JSON body. What the block makes is
    collected after it as usual; reference counting frees the rest meanwhile."""
    global _pauses
    with _pauses_lock:
        _pauses += 1
        if _pauses == 1:
            gc.disable()
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0:
                gc.enable()
