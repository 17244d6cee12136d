"""Faults in-process for the server's tests: the files a process holds open, and a disk that fills."""

import errno
import io
import os


def open_files(pid, under):
    """The files under `under` that process `pid` holds open (from /proc/PID/fd)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(under)):
            found.append(target)
    return found



class FullDisk(io.RawIOBase):
    """An append-only file on a disk with `room` bytes: a write past it writes short, the next raises ENOSPC."""

    def __init__(self, room):
        self.data = bytearray()
        self.room = room

    def writable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        assert (offset, whence) == (0, io.SEEK_END)
        return len(self.data)

    def write(self, b):
        free = self.room - len(self.data)
        if free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        part = bytes(b)[:free]
        self.data += part
        return len(part)

    def truncate(self, size):
        del self.data[size:]
        return size
