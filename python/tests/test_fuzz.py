"""Fuzzing (issue 7): every parser returns a value or raises its one clear error, whatever the input.

The contract checked here, per parser:

* codec.make_ndarray / make_tensor_proto: an array / a TensorProto, or TypeError / ValueError with a
  one-line message (the codec's documented errors, as TF's functions); never OverflowError,
  RecursionError, MemoryError, and never gigabytes allocated for a few bytes of input.
* predict_inputs.py (-i, --dtype) and tf_examples.py (-e, --examples .json/.csv/.tfrecord): a value,
  or common.InputError with a one-line message (the scripts turn it into exit 2); never pickle.
* tfrecord.read: records, or tfrecord.CorruptRecord (or OSError for a file that cannot be opened).
* End to end: bad -i values through grpcRequest.py are exit 2 with one line on stderr.

Hypothesis runs a bounded number of examples (settings below); no example database is written.
"""

import io
import json
import math
import os
import pickle
import struct
import tracemalloc
import warnings
import zipfile
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from script_helpers import run_script

from tfsclient import common
from tfsclient import codec, dtypes, tfrecord
from tfsclient import predict_inputs as inputs
from tfsclient import protos as tfs_protos
from tfsclient import tf_examples as examples
from tfsclient.errors import InputError
from tfsclient.text import one_line as flattened
from google.protobuf.message import DecodeError  # noqa: E402

# FUZZ_EXAMPLES=5000 for a longer session (the end-to-end test stays at 20: subprocesses are slow)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
FEW = settings(FUZZ, max_examples=max(EXAMPLES * 3 // 10, 1))
SMALL_BYTES = 1 << 24  # what decoding a small input may allocate at most, in the tracemalloc checks


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def one_line(error):
    """The error as the user sees it (common.run prints it flattened) is one non-empty line."""
    text = flattened(error) if isinstance(error, (common.InputError, common.ServerError)) else str(error)
    assert text and "\n" not in text and "\r" not in text, repr(text)
    return error


def expect(allowed, function, *args, **kwargs):
    """function's result, or the allowed error (checked to be one line); anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's casts of nan/inf: not errors
        try:
            return function(*args, **kwargs)
        except allowed as e:
            return one_line(e)


def write(directory, name, data):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# --------------------------------------------------------------------------- strategies

# Dimensions: small, negative, or so large that any fill is refused; never in between, where a
# successful decode would legitimately allocate hundreds of MB.
dims = st.one_of(st.integers(0, 4), st.integers(0, 4), st.integers(-2**63, -1),
                 st.integers(2**31, 2**63 - 1))
dtype_enums = st.one_of(st.sampled_from(sorted(dtypes.ENUM_NAME)),
                        st.sampled_from(sorted(dtypes.ENUM_NAME)).map(lambda e: e + 100),
                        st.integers(-2**31, 2**31 - 1))
int32s = st.integers(-2**31, 2**31 - 1)
VAL_FIELDS = {
    "float_val": st.floats(width=32), "double_val": st.floats(), "int_val": int32s,
    "string_val": st.binary(max_size=8), "scomplex_val": st.floats(width=32),
    "dcomplex_val": st.floats(), "bool_val": st.booleans(), "int64_val": st.integers(-2**63, 2**63 - 1),
    "half_val": int32s, "uint32_val": st.integers(0, 2**32 - 1), "uint64_val": st.integers(0, 2**64 - 1),
}


@st.composite
def tensor_protos(draw):
    proto = codec.TensorProto(dtype=draw(dtype_enums))
    for size in draw(st.lists(dims, max_size=5)):
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    if draw(st.booleans()):
        proto.tensor_content = draw(st.binary(max_size=64))
    for field in draw(st.lists(st.sampled_from(sorted(VAL_FIELDS)), max_size=3, unique=True)):
        getattr(proto, field).extend(draw(st.lists(VAL_FIELDS[field], max_size=8)))
    if draw(st.booleans()):
        proto.float8_val = draw(st.binary(max_size=8))
    return proto


class Deep(list):
    """[[[...leaf...]]] `depth` deep, with a short repr (hypothesis prints the examples it runs)."""

    def __init__(self, depth, leaf):
        inner = leaf
        for _ in range(depth - 1):
            inner = [inner]
        super().__init__([inner])
        self.depth, self.leaf = depth, leaf

    def __repr__(self):
        return f"Deep({self.depth}, {self.leaf!r})"


def deep_text(depth, leaf="1"):
    return "[" * depth + leaf + "]" * depth


def dumps(value):
    return json.dumps(value, allow_nan=True)  # lone surrogates become \\ud800 escapes


# JSON values as json.loads returns them: unbounded ints, nan/inf, any text (lone surrogates too),
# ragged lists, objects, null, and nesting beyond numpy's and Python's limits.
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10, 10),
                        st.integers(-2**64, 2**64),
                        st.floats(allow_nan=True, allow_infinity=True),
                        st.text(st.characters(exclude_categories=()), max_size=6))
json_values = st.recursive(json_leaves, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.text(max_size=3), children, max_size=3),
    st.integers(1, 4).flatmap(lambda n: st.lists(st.lists(children, min_size=n, max_size=n), max_size=3)),
), max_leaves=12)
json_texts = st.one_of(json_values.map(dumps),
                       st.tuples(st.integers(1, 3000), json_leaves.map(dumps)).map(lambda t: deep_text(*t)))

python_values = st.one_of(
    st.recursive(st.one_of(json_leaves, st.binary(max_size=6), st.complex_numbers(),
                           st.builds(object), st.sets(st.integers(), max_size=2)),
                 lambda children: st.one_of(st.lists(children, max_size=4),
                                            st.tuples(children, children),
                                            st.dictionaries(st.text(max_size=2), children, max_size=2)),
                 max_leaves=10),
    st.builds(Deep, st.integers(1, 3000), json_leaves),
    hnp.arrays(hnp.scalar_dtypes() | hnp.byte_string_dtypes() | hnp.unicode_string_dtypes(),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
)
dtype_args = st.one_of(
    st.none(), st.sampled_from(sorted(dtypes.NAME_ENUM)), st.integers(-5, 260),
    st.sampled_from([np.float16, np.int8, np.uint64, np.complex64, np.bool_, np.object_, str, bytes, float,
                     "float128", "datetime64", "nope", "", b"float32", 1.5, [1]]),
)
shape_args = st.one_of(st.none(), st.lists(dims, max_size=4),
                       st.lists(st.one_of(dims, st.floats(), st.text(max_size=2), st.none()), max_size=3),
                       st.text(max_size=3), st.integers())


# --------------------------------------------------------------------------- codec

@FUZZ
@given(tensor_protos())
@example(codec.TensorProto(dtype=1, float_val=[1.0], tensor_shape={"dim": [{"size": 2**40}]}))
@example(codec.TensorProto(dtype=7, string_val=[b"a"], tensor_shape={"dim": [{"size": 2**40}]}))
@example(codec.TensorProto(dtype=1, tensor_shape={"dim": [{"size": 2**62}, {"size": 2**62}]}))
def test_make_ndarray_any_tensor_proto(proto):
    result = expect((TypeError, ValueError), codec.make_ndarray, proto)
    if isinstance(result, np.ndarray):
        assert list(result.shape) == [d.size for d in proto.tensor_shape.dim]


@FUZZ
@given(st.binary(max_size=200))
@example(codec.TensorProto(dtype=1, float_val=[4.0], tensor_shape={"dim": [{"size": 2**40}]}).SerializeToString())
def test_make_ndarray_random_bytes(data):
    proto = codec.TensorProto()
    try:
        proto.ParseFromString(data)
    except DecodeError:
        return
    size = math.prod(d.size for d in proto.tensor_shape.dim)
    assume(not 2**20 < size < 2**31)  # a real big tensor: decoding it would just take the memory
    expect((TypeError, ValueError), codec.make_ndarray, proto)


def test_a_small_proto_with_a_huge_shape_allocates_nothing():
    proto = codec.TensorProto(dtype=1, float_val=[1.0], tensor_shape={"dim": [{"size": 2**30}]})  # 4 GB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="refusing to decode more than 2 GB"):
            codec.make_ndarray(proto)
        assert tracemalloc.get_traced_memory()[1] < SMALL_BYTES
    finally:
        tracemalloc.stop()


@FUZZ
@given(python_values, dtype_args, shape_args)
@example(Deep(5000, 1.0), "float32", None)  # was RecursionError
@example([10**30], "int32", None)  # was OverflowError
@example(1.0, None, [float("inf")])  # was OverflowError
def test_make_tensor_proto_any_value(values, dtype, shape):
    proto = expect((TypeError, ValueError), codec.make_tensor_proto, values, dtype=dtype, shape=shape)
    if not isinstance(proto, codec.TensorProto):
        return
    array = expect((TypeError, ValueError), codec.make_ndarray, proto)  # (e.g. a 2**40 shape filled)
    if (dtype is None and shape is None and isinstance(values, np.ndarray) and values.dtype.kind in "biufc"):
        assert array.dtype == values.dtype.newbyteorder("<") and array.shape == values.shape
        assert np.array_equal(array, values, equal_nan=values.dtype.kind in "fc")


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.text(max_size=12), st.floats(), st.binary(max_size=4),
                 st.sampled_from([np.float128 if hasattr(np, "float128") else np.longdouble, np.void, object,
                                  np.dtype("M8[s]"), np.dtype([("a", "i4")]), complex, int, bool, list]),
                 hnp.scalar_dtypes()))
def test_dtype_helpers_any_value(dtype):
    enum = expect(TypeError, codec.as_datatype_enum, dtype)
    if isinstance(enum, int):
        assert codec.dtype_name(enum)
        expect(TypeError, codec.numpy_dtype, enum)
    if isinstance(dtype, int):
        expect(TypeError, codec.dtype_name, dtype)
        expect(TypeError, codec.numpy_dtype, dtype)


# --------------------------------------------------------------------------- -i NAME=JSON

def parse(spec):
    return expect(InputError, inputs.parse_inputs, [spec])


def check_parsed(found, name):
    """A parsed input: an array that the codec can send as it is (the scripts do just that)."""
    array, _ = found[name]
    assert isinstance(array, np.ndarray)
    proto = codec.make_tensor_proto(array)
    decoded = codec.make_ndarray(proto)
    assert decoded.shape == array.shape
    if array.dtype.kind in "OSU":
        assert decoded.ravel().tolist() == [v.encode() if isinstance(v, str) else v for v in array.ravel().tolist()]
    else:
        assert decoded.tobytes() == np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


@FUZZ
@given(st.text())
@example("x")
@example("=[1]")
@example("x=" + "[" * 100000)  # was RecursionError
@example('x="\\ud800"')  # was UnicodeEncodeError
def test_input_spec_any_text(spec):
    found = parse(spec)
    if isinstance(found, dict):
        for name in found:
            check_parsed(found, name)


@FUZZ
@given(json_texts)
@example("[10000000000000000000]")  # was silently wrapped to -8446744073709551616
@example("[-9223372036854775808]")  # was silently wrapped to int32 0
@example('["a\\u0000"]')  # numpy dropped the trailing NUL
@example('["\\ud800"]')  # was UnicodeEncodeError
@example(deep_text(40))  # beyond numpy 1's 32 dimensions
@example("[" + "9" * 5000 + "]")  # was ValueError from json.loads (Python's 4300-digit limit)
def test_input_json_values(text):
    found = parse("x=" + text)
    if isinstance(found, dict):
        check_parsed(found, "x")
        array = found["x"][0]
        assert array.dtype in (np.float32, np.int32, np.int64, np.bool_, object)
        if array.dtype.kind in "iu":  # never a wrapped integer
            assert array.tolist() == np.array(json.loads(text)).tolist()
        if array.dtype == object:  # strings as given, NULs included
            assert all(isinstance(v, bytes) for v in array.ravel())


@FEW
@given(st.text(max_size=20))
@example("float128")  # parsed, but the codec cannot send it
@example("i4,(")  # was SyntaxError (numpy parses comma specs with Python's tokenizer)
@example("longdouble")
@example(">f4")
def test_dtype_specs(text):
    dtypes = expect(InputError, inputs.parse_dtypes, ["x=" + text])
    if isinstance(dtypes, dict):
        for value in ([[1.5, 2.0]], [["a"]], [True], [float("nan")], [1e300]):
            found = inputs.parse_inputs(["x=" + json.dumps(value)])
            converted = expect(InputError, inputs.apply_dtypes, found, dtypes)
            if isinstance(converted, dict):
                codec.make_tensor_proto(converted["x"][0])  # must be sendable


@FEW
@given(json_texts, st.sampled_from(["float32", "float64", "int8", "int32", "int64", "uint8", "uint64", "bool",
                                     "string", "float16", "bfloat16", "complex64"]))
@example('["99999999999999999999999"]', "int32")  # was OverflowError
@example("[NaN]", "int32")  # was a RuntimeWarning on stderr and garbage
@example("[1.5]", "string")  # was the codec's TypeError
def test_apply_dtypes(text, dtype):
    found = parse("x=" + text)
    assume(isinstance(found, dict))
    converted = expect(InputError, inputs.apply_dtypes, found, inputs.parse_dtypes([f"x={dtype}"]))
    if isinstance(converted, dict):
        codec.make_tensor_proto(converted["x"][0])


# --------------------------------------------------------------------------- -i NAME=@file.npy, @file.npz, @file.json

def npy_bytes(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


def npy_header(shape, descr="<f8"):
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


class Unpickled(BaseException):
    """Raised if anything tries to unpickle: not an Exception, so no parser can swallow it."""


def no_pickle(*args, **kwargs):
    raise Unpickled("pickle was used")


def parse_without_pickle(spec):
    with mock.patch.object(pickle, "load", no_pickle), mock.patch.object(pickle, "loads", no_pickle), \
            mock.patch.object(pickle, "Unpickler", no_pickle):
        return parse(spec)


sample_arrays = st.one_of(
    hnp.arrays(hnp.scalar_dtypes() | hnp.byte_string_dtypes() | hnp.unicode_string_dtypes(),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
    st.just(np.array([1, "a", None], dtype=object)),
    st.just(np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")])),
)


@st.composite
def damaged(draw, data):
    """data cut short, with bytes flipped, or bytes inserted."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["cut", "flip", "insert"]))
        at = draw(st.integers(0, len(data)))
        if how == "cut":
            del data[at:]
        elif how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@FUZZ
@given(st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b),
    sample_arrays.map(lambda a: npy_bytes(a, allow_pickle=True)).flatmap(damaged),
    st.tuples(st.lists(st.one_of(dims, st.integers(2**20, 2**40)), max_size=3).map(tuple),
              st.sampled_from(["<f8", "|b1", "<U0", "|O", "<M8[s]", "|V3", ">i2", "<c32", "garbage", "S0"]),
              st.binary(max_size=32)).map(lambda t: npy_header(t[0], t[1]) + t[2]),
))
@example(b"")  # was EOFError
@example(npy_header((2**32,)) + b"12345678")  # was a 32 GB allocation (MemoryError)
@example(npy_bytes(np.array([1, None], dtype=object), allow_pickle=True))
def test_npy_file_any_bytes(fuzz_dir, data):
    path = write(fuzz_dir, "input.npy", data)
    found = parse_without_pickle(f"x=@{path}")
    if isinstance(found, dict):
        array = found["x"][0]
        assert array.nbytes <= len(data)
        check_parsed(found, "x")


@FEW
@given(sample_arrays)
def test_npy_files_round_trip(fuzz_dir, array):
    path = write(fuzz_dir, "whole.npy", npy_bytes(array, allow_pickle=True))
    found = parse_without_pickle(f"x=@{path}")
    if array.dtype.hasobject or array.dtype.names or array.dtype.kind not in "biufcSU" or \
            array.dtype.itemsize == 0 or array.dtype == np.longdouble or array.dtype == np.clongdouble:
        if isinstance(found, dict):  # only a dtype the codec takes may load
            codec.make_tensor_proto(found["x"][0])
        return
    if array.dtype.kind == "U" and any(0xD800 <= ord(c) <= 0xDFFF for c in "".join(array.ravel().tolist())):
        assert "holds text that is not valid Unicode" in str(found), found  # no TensorProto can carry it
        return
    assert isinstance(found, dict), found
    np.testing.assert_array_equal(found["x"][0], array)


def test_a_pickle_in_an_npy_file_is_never_run(fuzz_dir):
    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(fuzz_dir / "pwned"),))

    array = np.empty(1, dtype=object)
    array[0] = Payload()
    for name, data in (("evil.npy", npy_bytes(array, allow_pickle=True)),):
        path = write(fuzz_dir, name, data)
        with pytest.raises(InputError, match="holds Python objects, which only pickle could load"):
            inputs.parse_inputs([f"x=@{path}"])
    buffer = io.BytesIO()
    np.savez(buffer, x=array, allow_pickle=True)
    path = write(fuzz_dir, "evil.npz", buffer.getvalue())
    with pytest.raises(InputError, match="holds Python objects"):
        inputs.parse_inputs([f"@{path}"])
    assert not (fuzz_dir / "pwned").exists()


def test_a_huge_npy_header_allocates_nothing(fuzz_dir):
    path = write(fuzz_dir, "huge.npy", npy_header((2**29,)) + b"12345678")  # says 4 GB, holds 8 bytes
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="is at most 2 GB"):
            inputs.parse_inputs([f"x=@{path}"])
        path = write(fuzz_dir, "big.npy", npy_header((2**25,)) + b"12345678")  # says 256 MB
        with pytest.raises(InputError, match="is truncated: its header says"):
            inputs.parse_inputs([f"x=@{path}"])
        assert tracemalloc.get_traced_memory()[1] < SMALL_BYTES
    finally:
        tracemalloc.stop()


def zip_bytes(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


zip_members = st.lists(
    st.tuples(st.sampled_from(["x.npy", "y.npy", "x", "a/b.npy", ".npy"]),
              st.one_of(st.binary(max_size=40),
                        sample_arrays.map(lambda a: npy_bytes(a, allow_pickle=True)).flatmap(damaged))),
    max_size=3, unique_by=lambda member: member[0])
zip_files = st.builds(zip_bytes, zip_members, st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))


@FUZZ
@given(st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b),
    zip_files.flatmap(damaged),
))
@example(b"PK\x03\x04")  # was zipfile.BadZipFile
@example(zip_bytes([("x.npy", npy_header((2**32,)) + b"12345678")]))  # was a 32 GB allocation
@example(zip_bytes([("x.npy", b"junk")]))  # was b"junk" passed on as if it were an array
@example(npy_bytes(np.arange(3)))  # an .npy named .npz: was TypeError
def test_npz_file_any_bytes(fuzz_dir, data):
    path = write(fuzz_dir, "inputs.npz", data)
    found = parse_without_pickle(f"@{path}")
    if isinstance(found, dict):
        for name in found:
            check_parsed(found, name)


@FEW
@given(st.one_of(st.binary(max_size=200), json_texts.map(str.encode),
                 st.dictionaries(st.text(max_size=4), json_values, max_size=3).map(lambda v: dumps(v).encode())),
       st.booleans())
@example(b"[" * 100000, True)  # was RecursionError
@example(b'{"x": [1e999]}', True)
@example(b'{"x": [' + b"9" * 5000 + b"]}", True)
def test_json_file_any_bytes(fuzz_dir, data, several):
    path = write(fuzz_dir, "inputs.json", data)
    found = parse(f"@{path}" if several else f"x=@{path}")
    if isinstance(found, dict):
        for name in found:
            check_parsed(found, name)


def test_file_specs_that_are_not_files(fuzz_dir):
    os.makedirs(fuzz_dir / "dir.npy", exist_ok=True)
    os.makedirs(fuzz_dir / "dir.npz", exist_ok=True)
    for spec in (f"x=@{fuzz_dir}/dir.npy", f"@{fuzz_dir}/dir.npz", f"x=@{fuzz_dir}", "x=@", "@", "x=@a\x00b",
                 f"@{write(fuzz_dir, 'one.npy', npy_bytes(np.arange(3)))}"):
        with pytest.raises(InputError) as error:
            inputs.parse_inputs([spec])
        one_line(error.value)


# --------------------------------------------------------------------------- examples: -e, .json, .csv, .tfrecord

feature_types = st.dictionaries(st.sampled_from(["a", "b", "age", ""]), st.sampled_from(["int", "float", "bytes"]),
                                max_size=2)


@FUZZ
@given(st.text(), feature_types)
@example("a=99999999999999999999", {})  # was ValueError from protobuf (Value out of range)
@example("a=" + "9" * 5000, {})  # was inf, silently, as a float
@example("a=inf", {"a": "int"})
@example("\ud800=1", {})  # was UnicodeEncodeError
def test_example_flag_any_text(text, forced):
    def build():
        return examples.make_example(examples.parse_pairs(text, "-e"), forced, "-e")
    expect(InputError, build)


def from_file(path, forced=None):
    return expect(InputError, examples.from_file, path, forced or {})


@FUZZ
@given(st.text(), feature_types)
@example("a\n99999999999999999999\n", {})  # was ValueError (Value out of range)
@example("a\n" + "x" * 200000 + "\n", {})
@example('a\n"unterminated\n', {})
def test_examples_csv_any_text(fuzz_dir, text, forced):
    path = write(fuzz_dir, "examples.csv", text.encode("utf-8", "surrogatepass"))
    from_file(path, forced)


@FUZZ
@given(st.one_of(json_texts, st.lists(st.dictionaries(st.text(st.characters(exclude_categories=()), max_size=3),
                                                       json_values, max_size=3), max_size=3).map(dumps)),
       feature_types)
@example('[{"a": 100000000000000000000}]', {})  # was ValueError (Value out of range)
@example('[{"a": Infinity}]', {"a": "int"})  # was OverflowError
@example('[{"\\ud800": 1}]', {})  # was UnicodeEncodeError
@example(deep_text(5000), {})  # was RecursionError
@example('[{"a": ' + "9" * 5000 + "}]", {})  # was ValueError (Python's 4300-digit limit)
def test_examples_json_any_value(fuzz_dir, text, forced):
    path = write(fuzz_dir, "examples.json", text.encode())
    from_file(path, forced)


def record_bytes(length, data=b""):
    """A record header saying `length` bytes, with a valid CRC, followed by data."""
    header = struct.pack("<Q", length)
    return header + struct.pack("<I", tfrecord.masked_crc(header)) + data


example_bytes = st.builds(lambda n: examples.make_example({"a": n}, {}, "x").SerializeToString(), st.integers(-9, 9))


@FUZZ
@given(st.one_of(
    st.binary(max_size=100),
    st.lists(st.one_of(example_bytes, st.binary(max_size=20)), max_size=3).map(
        lambda records: b"".join(tfrecord.frame(r) for r in records)).flatmap(damaged),
    st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=20)).map(lambda t: record_bytes(*t)),
))
@example(record_bytes(2**40, b"12345678"))  # was MemoryError
@example(record_bytes(2**64 - 1, b"12345678"))  # was OverflowError
def test_tfrecord_any_bytes(fuzz_dir, data):
    path = write(fuzz_dir, "examples.tfrecord", data)
    found = from_file(path)
    try:
        records = list(tfrecord.read(path))
    except tfrecord.CorruptRecord as e:
        one_line(e)
        assert isinstance(found, InputError)
    else:
        assert isinstance(found, InputError) or len(found) == len(records)


def test_a_huge_record_length_allocates_nothing(fuzz_dir):
    for length in (2**33, 2**40, 2**63):  # 8 GB, 1 TB, ...: a 20-byte file
        path = write(fuzz_dir, "huge.tfrecord", record_bytes(length, b"12345678"))
        tracemalloc.start()
        try:
            with pytest.raises(tfrecord.CorruptRecord, match="truncated record at offset 0"):
                list(tfrecord.read(path))
            assert tracemalloc.get_traced_memory()[1] < SMALL_BYTES
        finally:
            tracemalloc.stop()


def test_example_files_that_are_not_files(fuzz_dir):
    for suffix in (".tfrecord", ".json", ".csv"):
        os.makedirs(fuzz_dir / f"dir{suffix}", exist_ok=True)
        with pytest.raises(InputError) as error:
            examples.from_file(str(fuzz_dir / f"dir{suffix}"), {})
        one_line(error.value)
    args = SimpleNamespace(feature_type=[], example=[], examples=[write(fuzz_dir, "a\nb.csv", b"a\n1,2\n")],
                           context=None)
    with pytest.raises(InputError) as error:  # a file name with a newline: still one line
        examples.build_input(args, tfs_protos.input_pb2.Input())
    one_line(error.value)


# --------------------------------------------------------------------------- end to end

def bad_json(text):
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


argv_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
bad_input_values = st.one_of(
    argv_text.filter(bad_json),
    st.sampled_from(["null", "[1, null]", '{"a": 1}', "[[1], [1, 2]]", "[10000000000000000000]",
                     '["\\ud800"]', "[" * 5000 + "]" * 5000, "[" * 40 + "1" + "]" * 40]),
    st.lists(st.integers(min_value=2**63), min_size=1, max_size=3).map(json.dumps),
    st.integers(33, 3000).map(lambda n: "[" * n + "1" + "]" * n),
)


@settings(FUZZ, max_examples=20)
@given(st.one_of(
    bad_input_values.map(lambda v: ("input_1=" + v,)),
    argv_text.filter(lambda t: "=" not in t and not t.startswith(("@", "-"))).map(lambda t: (t,)),
    st.sampled_from([("input_1=@/nonexistent.npy",), ("@/nonexistent.npz",),
                     ("input_1=@{dir}/bad.npy",), ("@{dir}/bad.npz",), ("input_1=@{dir}/huge.npy",)]),
))
def test_bad_inputs_end_to_end(toy_server, fuzz_dir, spec):
    write(fuzz_dir, "bad.npy", b"\x93NUMPY\x01\x00garbage")
    write(fuzz_dir, "bad.npz", b"PK\x03\x04garbage")
    write(fuzz_dir, "huge.npy", npy_header((2**40,)) + b"12345678")
    spec = tuple(s.replace("{dir}", str(fuzz_dir)) for s in spec)
    result = run_script("grpcRequest.py", "-i", *spec, server=toy_server.target)
    assert result.code == 2, result
    assert result.out == ""
    assert result.err.startswith("grpcRequest.py: error: ") and result.err.count("\n") == 1, result
    assert "Traceback" not in result.err
