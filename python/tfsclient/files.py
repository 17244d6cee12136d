"""The files the scripts read: regular files only, each with a size limit that fits its kind.

A link to /dev/zero, a FIFO or a directory is one line, not a read that never ends. Input data (JSON, CSV,
.npy, .npz, TFRecord) may be large on purpose: --max-file-size (or $TFS_MAX_FILE_SIZE) raises its limit;
certificates and model configs have fixed ones.
"""

import json
import os
import stat

from .errors import InputError

MiB = 1 << 20
LIMITS = {  # kind: (default limit in bytes, what the file is, raisable with --max-file-size)
    "json": (64 * MiB, "JSON file", True),
    "csv": (64 * MiB, "CSV file", True),
    "npy": (256 * MiB, ".npy file", True),
    "npz": (256 * MiB, ".npz file", True),  # what it unpacks to
    "tfrecord": (256 * MiB, "TFRecord file", True),
    "pem": (1 * MiB, "PEM file", False),
    "config": (64 * MiB, "model config", False),  # the server's own limit for its config files
}
RAISE = "raise it with --max-file-size or $TFS_MAX_FILE_SIZE"

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind_name(mode):
    """What a file that is not a regular one is, by its st_mode."""
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def limit_of(kind, max_size=None):
    """The size limit for a file of this kind: max_size (--max-file-size) if given and the kind allows it."""
    default, _, raisable = LIMITS[kind]
    return max_size if (max_size and raisable) else default


def too_large(kind, size, limit, where, unpacked=False):
    """The one line for a file (or what it unpacks to) over its limit."""
    _, name, raisable = LIMITS[kind]
    how = RAISE if raisable else "the limit for a " + name
    if unpacked:
        return InputError(f"{where} unpacks to {size} bytes, more than the {limit} a {name} may unpack to ({how})")
    return InputError(f"{where} is {size} bytes, more than the {limit} a {name} may be ({how})")


def open_input(path, what, kind, max_size=None, noun=""):
    """The regular file at path, opened for reading in binary, checked against its kind's size limit.

    what: the flag, to start error lines with (none if empty); noun: said before the path in "cannot read".
    Opened without blocking (a FIFO with no writer would hang open()), then checked with fstat.
    """
    where = f"{what}: " if what else ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{where}cannot read {noun}{path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{where}{noun}{path} is not a regular file ({_kind_name(info.st_mode)})")
        limit = limit_of(kind, max_size)
        if info.st_size > limit:
            raise too_large(kind, info.st_size, limit, f"{where}{noun}{path}")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    f.limit = limit  # (a regular file may still grow while it is read: readers stop at the limit)
    return f


def check_output_file(path, what):
    """The file a script will write (append to, or replace), checked before anything is sent: a regular file if it
    exists (a FIFO would block the write for good, -t or not; /dev/zero or a folder would take it nowhere), in a
    folder that exists. InputError otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise InputError(f"{what}: cannot write {path}: the folder {folder} does not exist") from None
        return
    except OSError as e:
        raise InputError(f"{what}: cannot write {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what}: {path} is not a regular file ({_kind_name(info.st_mode)})")


def read_at_most(f, length, first=None, chunk=1 << 20):
    """f.read(length), but memory grows only with the bytes that come: f.read(n) reserves n bytes up front, so
    a limit of 1T (--max-file-size) or a corrupt TFRecord header saying 2**60 bytes would ask for them before
    reading one. `first`: the size expected (a regular file's at open), read at once; then `chunk` at a time
    (pipes have no size, and a file may grow while it is read)."""
    parts = []
    step = min(length, first if first is not None else chunk)
    while length > 0:
        part = f.read(min(length, step))
        if not part:
            break
        parts.append(part)
        length -= len(part)
        step = chunk
    return b"".join(parts)


def read_input(path, what, kind, max_size=None, noun=""):
    """The whole content of the regular file at path, at most its kind's limit."""
    where = f"{what}: " if what else ""
    with open_input(path, what, kind, max_size, noun) as f:
        try:
            data = read_at_most(f, f.limit + 1, first=os.fstat(f.fileno()).st_size + 1)
        except OSError as e:
            raise InputError(f"{where}cannot read {noun}{path}: {e.strerror or e}") from None
        if len(data) > f.limit:
            raise too_large(kind, len(data), f.limit, f"{where}{noun}{path}")
    return data


def read_text(path, what, kind, max_size=None, noun=""):
    """read_input decoded as UTF-8; a byte-order mark at the start (Excel writes one) is dropped."""
    data = read_input(path, what, kind, max_size, noun)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        where = f"{what}: " if what else ""
        raise InputError(f"{where}cannot read {noun}{path}: not UTF-8 "
                         f"(byte {e.start} is {data[e.start]:#04x})") from None


class DuplicateKey(ValueError):
    """A JSON object that names a key twice (json.loads keeps the last silently); args[0] is the key."""


def load_json(text):
    """json.loads(text), refusing an object that names a key twice (DuplicateKey): the input files' JSON."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def _unique_keys(pairs):
    found = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found
