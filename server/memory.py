"""Giving memory back after a large request.

glibc keeps what a request freed in its per-thread arenas; after a tensor of hundreds of MB the
server would stay that much larger for good. `after_large_request()` asks glibc (malloc_trim) to
return the free pages, once the request's answer has had time to be sent (a debounced timer: a
burst of large requests costs one trim).
"""

import ctypes
import ctypes.util
import threading

LARGE_BYTES = 16 * 2**20  # a decoded request tensor this large schedules a trim
DELAY_SECONDS = 1.0

_lock = threading.Lock()
_timer = None


def _libc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None


_trim = _libc_trim()


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
