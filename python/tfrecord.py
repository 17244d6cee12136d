"""TFRecord files without TensorFlow: the framing of tf_serving_warmup_requests and request logs.

Each record: uint64 length (little-endian), uint32 masked CRC32C of the length, the data,
uint32 masked CRC32C of the data. Files are only ever appended to.
"""

import struct

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
    """Append whole records to `path` in one write, flushed to disk."""
    import os

    payload = b"".join(frame(r) for r in records)
    with open(path, "ab") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


class CorruptRecord(ValueError):
    pass


def _read_at_most(f, length, chunk=1 << 20):
    """f.read(length) in chunks: a corrupt header saying 2**60 bytes must not allocate them up front.

    (Chunks rather than a check against the file size: pipes have none, and a log may grow meanwhile.)
    """
    if length <= chunk:
        return f.read(length)
    parts = []
    while length > 0:
        part = f.read(min(length, chunk))
        if not part:
            break
        parts.append(part)
        length -= len(part)
    return b"".join(parts)


def read(path):
    """Yield (offset, data) for each record; CorruptRecord names the offset of a bad one."""
    with open(path, "rb") as f:
        offset = 0
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
            data = _read_at_most(f, length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise CorruptRecord(f"truncated record at offset {offset}")
            if masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise CorruptRecord(f"corrupt record data at offset {offset} (CRC mismatch)")
            yield offset, data
            offset += 16 + length
