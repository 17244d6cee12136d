"""Every file the server opens itself is a regular file: opened without blocking, then checked with fstat.

A FIFO, a device (a link to /dev/zero), a socket or a directory where a config file, a request log or a
warmup file should be is refused at once, by the same check, rather than blocking the server (a FIFO
opened for writing waits for a reader, for reading waits for a writer) or reading without end.
"""

import errno
import fcntl
import os
import stat

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


class NotRegularFile(OSError):
    """`path` is there, but is not a regular file; `kind` says what it is ("a FIFO")."""

    def __init__(self, path, kind):
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", path)
        self.kind = kind


def kind_of(mode):
    """What a file of st_mode `mode` is, in words ("a FIFO"); "a regular file" for one."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "another kind of file")


def open_regular(path, flags, mode=0o666):
    """os.open(path, flags) of a regular file (a link is followed), in blocking mode once opened; NotRegularFile
    for anything else, and OSError as os.open raises it."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO no one reads, opened for writing (or a device with no device)
            check_regular(path)
        raise
    try:
        found = os.fstat(fd).st_mode
        if not stat.S_ISREG(found):
            raise NotRegularFile(path, kind_of(found))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(path):
    """NotRegularFile unless `path` (a link is followed) is a regular file; OSError if it cannot be stat'ed.
    For files another library opens itself (TensorFlow reads the warmup file)."""
    found = os.stat(path).st_mode
    if not stat.S_ISREG(found):
        raise NotRegularFile(path, kind_of(found))
