"""tfrecord's framing and both CRC-32C implementations, against published check values and TensorFlow's own
TFRecord writer as the oracle."""

import io
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfsclient import tfrecord

# RFC 3720 (iSCSI), appendix B.4, and the "check" value of the CRC catalogue: CRC-32C of each input.
CHECK_VALUES = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize("implementation", [tfrecord.crc32c, tfrecord.table_crc32c], ids=["crc32c", "table"])
@pytest.mark.parametrize("data, crc", CHECK_VALUES, ids=[f"{len(d)}-bytes-{c:08x}" for d, c in CHECK_VALUES])
def test_crc32c_check_values(implementation, data, crc):
    assert implementation(data) == crc


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_the_table_fallback_agrees_with_google_crc32c(data):
    google_crc32c = pytest.importorskip("google_crc32c")
    assert tfrecord.table_crc32c(data) == google_crc32c.value(data)


def test_masked_crc_is_tensorflows_mask():
    """crc32c.h: rotate right by 15 bits, add 0xa282ead8."""
    assert tfrecord.masked_crc(b"123456789") == ((0xE3069283 >> 15 | 0xE3069283 << 17) + 0xA282EAD8) & 0xFFFFFFFF
    assert tfrecord.masked_crc(b"") == 0xA282EAD8


def tensorflow_file(tmp_path, records):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")  # the oracle only; tfrecord itself never imports it

    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


RECORDS = [b"", b"x", b"123456789" * 100, bytes(range(256)) * 5]


def test_frames_are_byte_for_byte_tensorflows(tmp_path):
    path = tensorflow_file(tmp_path, RECORDS)
    with open(path, "rb") as f:
        assert b"".join(tfrecord.frame(r) for r in RECORDS) == f.read()
    assert [data for _, data in tfrecord.read(path)] == RECORDS
    offsets = [offset for offset, _ in tfrecord.read(path)]
    assert offsets == [0, 16, 33, 949]


def test_without_google_crc32c_the_fallback_reads_and_writes_tensorflows_files(tmp_path):
    """The table is what runs where google-crc32c is not installed: a process that cannot import it reads
    TensorFlow's file and writes the same bytes."""
    path = tensorflow_file(tmp_path, RECORDS)
    program = (
        "import sys; sys.modules['google_crc32c'] = None  # as if not installed: importing it fails\n"
        "from tfsclient import tfrecord\n"
        "records = [data for _, data in tfrecord.read(sys.argv[1])]\n"
        "assert tfrecord.crc32c is not None and tfrecord.crc32c(b'123456789') == 0xE3069283\n"
        "sys.stdout.buffer.write(b''.join(tfrecord.frame(r) for r in records))\n"
    )
    python_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", program, path], cwd=python_dir, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    with open(path, "rb") as f:
        assert done.stdout == f.read()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:5], "truncated record header at offset 0"),
    (lambda b: b[:30], "truncated record header at offset 19"),
    (lambda b: b[:35], "truncated record at offset 19"),
    (lambda b: b[:8] + bytes([b[8] ^ 1]) + b[9:], "corrupt record length at offset 0 (CRC mismatch)"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "corrupt record data at offset 19 (CRC mismatch)"),
    (lambda b: b[:-2], "truncated record at offset 19"),  # the data whole, its CRC cut short
    (lambda b: b[:12] + bytes([b[12] ^ 1]) + b[13:], "corrupt record data at offset 0 (CRC mismatch)"),
])
def test_damage_is_named_with_its_offset(damage, message):
    whole = tfrecord.frame(b"abc") + tfrecord.frame(b"defghij")
    with pytest.raises(tfrecord.CorruptRecord) as caught:
        list(tfrecord.read(io.BytesIO(damage(whole))))
    assert str(caught.value) == message


def test_a_length_of_2_to_the_60_reads_what_is_there_and_says_truncated(tmp_path):
    """From a real file: a read of the length in one go would ask for 2**60 bytes (MemoryError)."""
    import struct

    length = struct.pack("<Q", 2**60)
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(length + struct.pack("<I", tfrecord.masked_crc(length)) + b"only this")
    with pytest.raises(tfrecord.CorruptRecord, match="truncated record at offset 0"):
        list(tfrecord.read(str(path)))


def test_append_adds_whole_records_after_what_is_there(tmp_path):
    path = str(tmp_path / "log.tfrecord")
    tfrecord.append(path, [b"one", b"two"])
    tfrecord.append(path, [])
    tfrecord.append(path, [b"three"])
    assert [data for _, data in tfrecord.read(path)] == [b"one", b"two", b"three"]
    with open(path, "rb") as f:
        assert f.read() == b"".join(tfrecord.frame(r) for r in (b"one", b"two", b"three"))


def test_append_that_fails_leaves_the_file_as_it_was(tmp_path):
    import resource

    path = tmp_path / "log.tfrecord"
    tfrecord.append(str(path), [b"kept"])
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    import signal
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, hard))
    try:
        with pytest.raises(OSError):
            tfrecord.append(str(path), [b"x" * 1000])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert path.read_bytes() == before
    with pytest.raises(FileNotFoundError):
        tfrecord.append(str(tmp_path / "missing" / "log.tfrecord"), [b"x"])


def test_replace_writes_the_whole_file_through_a_link_and_keeps_its_mode(tmp_path):
    target = tmp_path / "warmup"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to(target)
    tfrecord.replace(str(link), b"new content")
    assert target.read_bytes() == b"new content" and link.is_symlink()
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "warmup"]  # no temporary file left
    tfrecord.replace(str(tmp_path / "fresh"), b"x")
    assert (tmp_path / "fresh").read_bytes() == b"x"


def test_read_file_names_the_file_and_its_flag(tmp_path):
    from tfsclient.errors import InputError

    path = tmp_path / "bad.tfrecord"
    path.write_bytes(tfrecord.frame(b"fine") + b"\x01\x02")
    records = tfrecord.read_file(str(path), "--read")
    assert next(records) == (0, b"fine")
    with pytest.raises(InputError, match=rf"^{path}: truncated record header at offset 20$"):
        next(records)


def test_records_larger_than_a_read_chunk_come_back_whole(tmp_path):
    """Records over 1 MiB are read in chunks (a corrupt length must not allocate up front)."""
    records = [bytes(range(256)) * 4096 + b"tail", b"\xff" * (1 << 20), b"small"]  # 1 MiB + 4, 1 MiB, 5
    path = tmp_path / "big.tfrecord"
    path.write_bytes(b"".join(tfrecord.frame(r) for r in records))
    assert [data for _, data in tfrecord.read(path)] == records  # a pathlib.Path, as well as a str
    assert [offset for offset, _ in tfrecord.read(str(path))] == [
        0, 16 + len(records[0]), 32 + len(records[0]) + (1 << 20)]


def test_a_length_past_int63_is_truncated_not_negative():
    import struct

    length = struct.pack("<Q", 2**64 - 1)  # read as signed, it would be -1: "read everything"
    data = length + struct.pack("<I", tfrecord.masked_crc(length)) + tfrecord.frame(b"next")
    with pytest.raises(tfrecord.CorruptRecord, match="^truncated record at offset 0$"):
        list(tfrecord.read(io.BytesIO(data)))


def test_append_creates_the_file_with_the_usual_mode(tmp_path):
    """0o666 less the umask, as open() makes files; the descriptor is not inherited by child processes."""
    import os

    mask = os.umask(0o022)
    try:
        tfrecord.append(str(tmp_path / "new.tfrecord"), [b"x"])
        tfrecord.replace(str(tmp_path / "replaced"), b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "new.tfrecord").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "replaced").stat().st_mode & 0o777 == 0o644
