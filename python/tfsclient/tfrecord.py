"""TFRecord files without TensorFlow: the framing of tf_serving_warmup_requests and request logs.

Each record: uint64 length (little-endian), uint32 masked CRC32C of the length, the data,
uint32 masked CRC32C of the data. A file is appended to whole records at a time (append), or replaced
whole (replace).
"""

import struct

from . import files
from .errors import InputError

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


try:  # the C implementation when installed (it is in requirements.txt); the table below otherwise
    from google_crc32c import value as _fast_crc32c
except ImportError:
    _fast_crc32c = None


def crc32c(data: bytes) -> int:
    if _fast_crc32c is not None:
        return _fast_crc32c(bytes(data))
    return table_crc32c(data)


def table_crc32c(data: bytes) -> int:
    """CRC-32C in pure Python, byte by byte with a table: the fallback where google-crc32c is missing."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def append(path, records):
    """Append whole records to `path`, flushed to disk; the file only ever gains whole records.

    The file is locked (flock) while it grows, so two writers cannot interleave; a write that fails part
    way (a full disk, a file size limit, Ctrl-C) is cut back to the size the file had, under the lock.
    OSError if the append failed; the file is then as it was.
    """
    import fcntl
    import os

    import errno
    import stat

    payload = b"".join(frame(r) for r in records)
    # Without blocking: a FIFO with no reader would hang open() (and a write with one, for good).
    flags = os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    readable = True
    try:  # read too: the framing is checked before the file grows
        fd = os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:  # a file this user may write but not read: appended unchecked
        fd, readable = os.open(path, os.O_WRONLY | flags, 0o666), False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if readable:
            check_framing(fd, size)  # records after a cut or foreign byte could never be read back
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # and the lock with it


def replace(path, payload):
    """Make payload the whole content of path, atomically: written to a temporary file in the same folder,
    flushed to disk, then renamed over path (over the file a link points to). If anything fails, path is as
    it was and the temporary file is gone. An existing file's permissions are kept."""
    import os
    import stat

    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
            except FileNotFoundError:
                pass
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:  # the rename itself on disk
        folder = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


class CorruptRecord(ValueError):
    pass


def check_framing(fd, size):
    """CorruptRecord unless the first `size` bytes of the file at fd are whole records: each header's length CRC
    holds and the last record ends at `size` (a log cut short, or a file that is no TFRecord, fails here). Reads
    only the 12-byte headers (one pread per record), not the data."""
    import os

    offset = 0
    while offset < size:
        header = os.pread(fd, 12, offset)
        if len(header) < 12:
            raise CorruptRecord(f"truncated record header at offset {offset}")
        if masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
            raise CorruptRecord(f"corrupt record length at offset {offset} (CRC mismatch)")
        end = offset + 16 + struct.unpack("<Q", header[:8])[0]
        if end > size:
            raise CorruptRecord(f"truncated record at offset {offset}")
        offset = end


def check_whole(path):
    """CorruptRecord unless the file at path (a regular file, if it exists) holds whole records (check_framing)."""
    import os

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    try:
        check_framing(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


class PastLimit(ValueError):
    """The records go on past the byte limit read() was given (a file that grew while it was read)."""

    def __init__(self, size):
        super().__init__(f"the records go on past {size} bytes")
        self.size = size


def read(source, limit=None):
    """Yield (offset, data) for each record of a path or a binary file; CorruptRecord names the offset of a bad one.
    limit: the bytes the records may take in all; PastLimit (before reading it) for a record that would end past it."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        with open(source, "rb") as f:
            yield from read(f, limit)
        return
    f, offset = source, 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise CorruptRecord(f"truncated record header at offset {offset}")
        length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
        if masked_crc(length_bytes) != length_crc:
            raise CorruptRecord(f"corrupt record length at offset {offset} (CRC mismatch)")
        (length,) = struct.unpack("<Q", length_bytes)
        if limit is not None and offset + 16 + length > limit:
            # The record would end past the limit: read up to one byte past it to tell a file that goes on (one
            # growing while it is read) from a header that says more than the file holds.
            data = files.read_at_most(f, max(0, limit - offset - 16) + 1)
            if offset + 16 + len(data) > limit:
                raise PastLimit(offset + 16 + len(data))
            raise CorruptRecord(f"truncated record at offset {offset}")
        data = files.read_at_most(f, length)  # a corrupt header saying 2**60 bytes allocates nothing up front
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise CorruptRecord(f"truncated record at offset {offset}")
        if masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise CorruptRecord(f"corrupt record data at offset {offset} (CRC mismatch)")
        yield offset, data
        offset += 16 + length


def read_file(path, what, max_size=None):
    """(offset, data) for each record of the TFRecord file at path; its read errors and corrupt records as
    InputError. What the caller does with a record is not caught here (a closed pipe on stdout is not a
    failure to read the file)."""
    where = f"{what}: " if what else ""
    with files.open_input(path, what, "tfrecord", max_size) as f:
        records = read(f, f.limit)  # the limit holds while the file grows (a log being written)
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except PastLimit as e:
                raise files.too_large("tfrecord", f"at least {e.size}", f.limit, f"{where}{path}") from None
            except CorruptRecord as e:
                raise InputError(f"{path}: {e}") from None
            except OSError as e:
                raise InputError(f"{where}cannot read {path}: {e.strerror or e}") from None
            yield record
