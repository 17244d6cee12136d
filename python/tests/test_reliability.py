"""The README's reliability table for the scripts, row by row: each input gets exactly that one line."""

import struct

import numpy as np
import pytest

from tfsclient.tfrecord import masked_crc


def _npy(path, header, data):
    """A .npy file with this header dict text and these data bytes (whatever the header promises)."""
    text = header.encode("latin1")
    text += b" " * (63 - len(text) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data)


def _files(tmp_path):
    _npy(tmp_path / "huge.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }", b"\0" * 8)
    _npy(tmp_path / "short.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1000,), }", b"\0" * 8)
    np.save(tmp_path / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "full.npz", input_1=np.zeros((1, 2), np.float32))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:40])
    length = struct.pack("<Q", 2**40)  # with a valid CRC: the reader must not believe it and allocate 1 TB
    (tmp_path / "huge.tfrecord").write_bytes(length + struct.pack("<I", masked_crc(length)) + b"\0" * 8)


ROWS = [
    ("grpcRequest.py", ["-i", "input_1=[10000000000000000000]"],
     "input 'input_1': 10000000000000000000 does not fit in int64 (write it with a decimal point to send it as a "
     "float)"),
    ("grpcRequest.py", ["-i", "input_1=[[1], [1, 2]]"],
     "input 'input_1': the JSON is not a rectangular array (rows of different lengths?)"),
    ("grpcRequest.py", ["-i", "input_1=[1, null]"],
     "input 'input_1': JSON values must be numbers, strings or booleans in nested lists, not null"),
    ("grpcRequest.py", ["-i", "input_1=" + "[" * 5000], "-i input_1: the JSON is nested too deeply"),
    ("grpcRequest.py", ["-i", "input_1=@huge.npy"],
     "-i input_1: huge.npy holds 8796093022208 bytes: a request tensor is at most 2 GB"),
    ("grpcRequest.py", ["-i", "input_1=@short.npy"],
     "-i input_1: short.npy is truncated: its header says (1000,) float64 (8000 bytes), but 8 bytes follow"),
    ("grpcRequest.py", ["-i", "input_1=@pickle.npy"],
     "-i input_1: pickle.npy holds Python objects, which only pickle could load: not loaded (save strings as a "
     "numpy string array instead)"),
    ("grpcRequest.py", ["-i", "@cut.npz"],
     "-i @cut.npz: cannot read cut.npz: not an .npz file (not a zip archive, or cut short)"),
    ("grpcRequest.py", ["-i", "input_1=[1.0, 2.0]", "--dtype", "input_1=i4,("],
     "unknown dtype 'i4,(': use e.g. float32, float64, int32, int64, bool, string"),
    ("grpcRequest.py", ["-i", "input_1=[NaN]", "--dtype", "input_1=int32"],
     "input 'input_1': cannot convert to int32: invalid value encountered in cast"),
    ("grpcMultiTask.py", ["--task", "regress:regress", "-m", "MultiTask", "-e", "age=99999999999999999999"],
     "feature 'age': 99999999999999999999 does not fit in an int64 feature (force another type with "
     "--feature-type age=float or age=bytes)"),
    ("grpcMultiTask.py", ["--task", "regress:regress", "-m", "MultiTask", "--examples", "huge.tfrecord"],
     "huge.tfrecord: truncated record at offset 0"),
]


@pytest.mark.parametrize("script, args, message", ROWS, ids=[" ".join(a)[:40] for _, a, _ in ROWS])
def test_readme_reliability_row(run, tmp_path, script, args, message):
    _files(tmp_path)
    args = [a.replace("@", f"@{tmp_path}/") if "@" in a else a for a in args]
    args = [str(tmp_path / a) if a.endswith(".tfrecord") else a for a in args]
    result = run(script, *args)
    assert (result.code, result.out) == (2, ""), result
    assert result.err.replace(f"{tmp_path}/", "") == f"{script}: error: {message}\n", result
