"""codec.make_tensor_proto / make_ndarray against TensorFlow's own functions as the oracle."""

import os
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfsclient import codec
from tfsclient import protos as tfs_protos

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")  # noqa: E402  (the oracle; the codec itself never imports it)
from google.protobuf import text_format  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMERIC = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
           "uint32", "uint64", "bool", "complex64", "complex128"]
ML = {"bfloat16": ml_dtypes.bfloat16, "float8_e5m2": ml_dtypes.float8_e5m2,
      "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "int4": ml_dtypes.int4, "uint4": ml_dtypes.uint4}
STRINGS = ["unicode", "bytes", "object"]
ALL = NUMERIC + list(ML) + STRINGS

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def arrays(draw, kinds=ALL, shape=None, finite=False):
    """A numpy array of one of the kinds, any shape (0-d and empty included)."""
    kind = draw(st.sampled_from(kinds))
    shape = draw(shapes) if shape is None else shape
    if kind in NUMERIC:
        elements = None
        if finite and kind.startswith(("float", "complex")):
            width = {"float16": 16, "float32": 32, "complex64": 32}.get(kind, 64)
            part = st.floats(-1e4, 1e4, width=width if width != 16 else 16)
            elements = st.complex_numbers(max_magnitude=1e4, width=width * 2) if kind.startswith(
                "complex") else part
        return draw(hnp.arrays(np.dtype(kind), shape, elements=elements))
    if kind in ("int4", "uint4"):
        low, high = (-8, 7) if kind == "int4" else (0, 15)
        return draw(hnp.arrays(np.int8, shape, elements=st.integers(low, high))).astype(ML[kind])
    if kind in ML:
        floats = st.floats(-400, 400, width=32) if finite else st.floats(width=32)
        return draw(hnp.arrays(np.float32, shape, elements=floats)).astype(ML[kind])
    if kind == "unicode":
        # (numpy drops trailing NULs of its fixed-width strings: no such elements)
        return draw(hnp.arrays("U6", shape, elements=st.text(max_size=6).map(
            lambda s: s.rstrip("\x00"))))
    if kind == "bytes":
        return draw(hnp.arrays("S6", shape, elements=st.binary(max_size=6).map(
            lambda b: b.rstrip(b"\x00"))))
    return draw(hnp.arrays(object, shape,
                           elements=st.one_of(st.binary(max_size=6), st.text(max_size=6))))


def dump(proto):
    return text_format.MessageToString(proto, as_one_line=True)[:2000]


def outcome(fn, *args, **kwargs):
    """('ok', serialized proto) or ('error', exception class) for fn(*args, **kwargs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # casts of nan/inf to ints
        try:
            proto = fn(*args, **kwargs)
        except (TypeError, ValueError) as e:
            return "error", type(e)
    return "ok", proto


def assert_same_proto(args, kwargs=None):
    kwargs = kwargs or {}
    expected = outcome(tf.make_tensor_proto, *args, **kwargs)
    got = outcome(codec.make_tensor_proto, *args, **kwargs)
    if expected[0] == "error":
        assert got[0] == "error", f"TF raised {expected[1]}, codec made {dump(got[1])}"
        return None
    assert got[0] == "ok", f"codec raised {got[1]}, TF made {dump(expected[1])}"
    assert type(got[1]) is tfs_protos.tensor_pb2.TensorProto
    assert got[1].SerializeToString() == expected[1].SerializeToString(), (
        f"\nTF:    {dump(expected[1])}\ncodec: {dump(got[1])}")
    return got[1]


def assert_same_array(got, expected):
    assert type(got) is np.ndarray
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if got.dtype == object:
        assert got.tolist() == expected.tolist()
        assert all(type(v) is bytes for v in got.ravel())
    else:
        assert got.tobytes() == expected.tobytes()  # bitwise, so NaNs compare too
    assert got.flags.writeable


# --------------------------------------------------------------------------- make_tensor_proto

@SETTINGS
@given(arrays())
def test_arrays_like_tf(a):
    assert_same_proto((a,))


@SETTINGS
@given(arrays(kinds=NUMERIC + list(ML), finite=True),
       st.sampled_from(NUMERIC + list(ML)),
       st.sampled_from(["name", "numpy", "enum", "tf"]))
def test_explicit_dtype_like_tf(a, target, form):
    tf_dtype = tf.as_dtype(ML.get(target, target))
    spec = {"name": target, "numpy": np.dtype(ML.get(target, target)),
            "enum": tf_dtype.as_datatype_enum, "tf": tf_dtype}[form]
    expected = outcome(tf.make_tensor_proto, a, dtype=tf_dtype)
    got = outcome(codec.make_tensor_proto, a, dtype=spec)
    if expected[0] == "ok":
        assert got[0] == "ok", got
        assert got[1].SerializeToString() == expected[1].SerializeToString(), (
            f"\nTF:    {dump(expected[1])}\ncodec: {dump(got[1])}")
    else:
        assert got[0] == "error"


@SETTINGS
@given(st.one_of(
    arrays(kinds=["int64", "uint64", "float64", "bool", "complex128", "unicode", "bytes"]),
    hnp.arrays(np.int64, shapes, elements=st.integers(-2 ** 31, 2 ** 31 - 1)),
).map(lambda a: a.tolist()))
def test_python_values_like_tf(values):
    """Scalars and nested lists: dtype inference (float32, int32 when lossless) and layout."""
    assert_same_proto((values,))


@SETTINGS
@given(st.data())
def test_python_values_with_dtype_like_tf(data):
    values = data.draw(st.one_of(
        hnp.arrays(np.int64, shapes, elements=st.integers(-300, 300)),
        hnp.arrays(np.float64, shapes, elements=st.floats(-1e3, 1e3)),
        hnp.arrays(np.bool_, shapes),
        hnp.arrays("U4", shapes, elements=st.text(max_size=4).map(lambda s: s.rstrip("\x00"))),
    ).map(lambda a: a.tolist()))
    target = data.draw(st.sampled_from(NUMERIC + ["bfloat16", "string"]))
    assert_same_proto((values,), {"dtype": tf.as_dtype(target)})


@SETTINGS
@given(st.data())
def test_shape_like_tf(data):
    """Reshape when the sizes match; fewer values are written as they are (filled on decode)."""
    shape = data.draw(shapes)
    size = int(np.prod(shape))
    count = data.draw(st.integers(0, size + 2))
    a = data.draw(arrays(shape=(count,)))
    if data.draw(st.booleans()):
        values = a
    else:
        values = a.tolist() if a.size != 1 else a.tolist()[0]
    if count == 1 and data.draw(st.booleans()):
        values = a.reshape(())
    proto = assert_same_proto((values,), {"shape": shape})
    if proto is not None and count and size:
        assert_same_array(codec.make_ndarray(proto), tf.make_ndarray(proto))


def test_examples_like_tf():
    for args, kwargs in [
        ((1.5,), {}), ((7,), {}), ((2 ** 40,), {}), ((2 ** 63,), {}), ((True,), {}), ((1 + 2j,), {}),
        (("héllo",), {}), ((b"ab\x00",), {}), (([b"a\x00", b"b"],), {}), (([[1.0, 2.0]],), {}),
        (([1, 2],), {"dtype": "float16"}), (([1, 2],), {"dtype": "bfloat16"}),
        ((np.float16(1.5),), {}), ((np.array(1.5, ml_dtypes.bfloat16),), {}),
        ((np.array([1, 2], np.uint16),), {}), ((np.array([True, False]),), {}),
        ((np.array([1 + 2j, 3], np.complex64),), {}), ((np.array([1, 2]),), {"dtype": "qint8"}),
        ((np.array(1),), {"dtype": "qint8"}), (([300],), {"dtype": "uint8"}),
        (([1],), {"dtype": "float"}), (([1],), {"dtype": "double"}), (([1],), {"dtype": 2}),
        (([1],), {"dtype": 103}), (([1],), {"dtype": float}), ((bytearray(b"ab"),), {}),
        ((np.asfortranarray(np.arange(6.0).reshape(2, 3)),), {}), ((np.arange(6.0)[::2],), {}),
        ((1.0,), {"shape": [2, 2]}), (([1.0, 2.0],), {"shape": [3]}), (([],), {"shape": [0, 3]}),
        (([1, 2, 3],), {"shape": [0]}), ((3.0,), {"shape": []}), (([3.0],), {"shape": (np.int64(1), 1)}),
        ((np.array([["a", "bc"]]),), {}), (([["a"], ["é"]],), {}), ((["a"],), {"shape": [3]}),
        ((np.array([], np.float32),), {}), ((np.zeros((0, 2), np.complex64),), {}),
        ((np.array("x", dtype=object),), {}), ((tf.constant([1.0, 2.0]),), {}),
    ]:
        assert_same_proto(args, kwargs)


def test_tensor_proto_passes_through():
    proto = codec.make_tensor_proto([1.0, 2.0])
    assert codec.make_tensor_proto(proto) is proto


def test_tensorflows_tensor_proto_crosses_over_as_bytes():
    # TensorFlow's class and the bundled schema's are different classes of one message (tfsclient.schema).
    theirs = tf.make_tensor_proto([1.0, 2.0])
    ours = codec.make_tensor_proto(theirs)
    assert type(ours) is tfs_protos.tensor_pb2.TensorProto and type(theirs) is not type(ours)
    assert ours.SerializeToString() == theirs.SerializeToString()
    np.testing.assert_array_equal(tf.make_ndarray(ours), [1.0, 2.0])  # and TensorFlow reads ours


def test_big_endian_input_is_written_little_endian():
    """TF writes the raw big-endian bytes (a bug); codec writes what TF reads back correctly."""
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    proto = codec.make_tensor_proto(a)
    assert proto.SerializeToString() == tf.make_tensor_proto(a.astype("<i4")).SerializeToString()
    np.testing.assert_array_equal(tf.make_ndarray(proto), a)


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((None,), {}, ValueError, "None"),
    (([1.0, 2.0, 3.0],), {"shape": [2]}, ValueError, "Too many elements"),
    (([1.0],), {"shape": [-1]}, ValueError, "negative"),
    (([1.0],), {"shape": 3}, TypeError, "shape"),
    (([1.0],), {"shape": ["a"]}, TypeError, "shape"),
    (([1.5],), {"dtype": "int32"}, TypeError, "Expected int32, but got 1.5"),
    (([1],), {"dtype": "string"}, TypeError, "Expected string"),
    (([1],), {"dtype": "bool"}, TypeError, "Expected bool"),
    (([1, "a"],), {}, TypeError, "Failed to convert"),
    (([2 ** 64],), {}, TypeError, "Failed to convert"),
    ((np.array([1, 2], dtype=object),), {}, TypeError, "binary or unicode"),
    (([1],), {"dtype": "resource"}, TypeError, "resource"),
    (([1],), {"dtype": "no_such_type"}, TypeError, "Cannot convert"),
    (([1],), {"dtype": 0}, TypeError, "Cannot convert"),
    (([1],), {"dtype": 99}, TypeError, "Cannot convert"),
    ((np.array(["2020-01-01"], dtype="datetime64[D]"),), {}, TypeError, "Unrecognized"),
])
def test_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        codec.make_tensor_proto(*args, **kwargs)


# --------------------------------------------------------------------------- make_ndarray

@SETTINGS
@given(arrays())
def test_make_ndarray_like_tf(a):
    proto = tf.make_tensor_proto(a)
    got = codec.make_ndarray(proto)
    assert_same_array(got, tf.make_ndarray(proto))
    assert_same_array(codec.make_ndarray(codec.make_tensor_proto(a)), got)
    # and the round trip gives the array back
    if a.dtype.kind in "US" or a.dtype == object:
        assert got.tolist() == np.vectorize(
            lambda v: v.encode() if isinstance(v, str) else bytes(v), otypes=[object])(a).tolist() \
            if a.size else got.size == 0
    else:
        assert got.tobytes() == a.tobytes()


# typed field -> (numpy dtypes using it, strategy for one value)
TYPED = {
    "float_val": (["float32"], st.floats(width=32)),
    "double_val": (["float64"], st.floats()),
    "half_val": (["float16", "bfloat16"], st.integers(0, 0xFFFF)),
    "int64_val": (["int64"], st.integers(-2 ** 63, 2 ** 63 - 1)),
    "uint32_val": (["uint32"], st.integers(0, 2 ** 32 - 1)),
    "uint64_val": (["uint64"], st.integers(0, 2 ** 64 - 1)),
    "bool_val": (["bool"], st.booleans()),
    "scomplex_val": (["complex64"], st.floats(width=32)),
    "dcomplex_val": (["complex128"], st.floats()),
    "string_val": (["string"], st.binary(max_size=5)),
    "int_val": (["int32", "int16", "int8", "uint8", "uint16", "int4", "uint4", "qint8"], None),
    "float8_val": (["float8_e5m2", "float8_e4m3fn"], st.integers(0, 255)),
}
INT_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "int16": (-2 ** 15, 2 ** 15 - 1),
              "int8": (-128, 127), "uint8": (0, 255), "uint16": (0, 2 ** 16 - 1),
              "int4": (-8, 7), "uint4": (0, 15), "qint8": (-128, 127)}


@SETTINGS
@given(st.data())
def test_make_ndarray_typed_fields_like_tf(data):
    """Protos written with the typed fields, fewer values than the shape (the fill rule) included."""
    field = data.draw(st.sampled_from(sorted(TYPED)))
    names, values = TYPED[field]
    name = data.draw(st.sampled_from(names))
    if values is None:
        values = st.integers(*INT_RANGES[name])
    shape = data.draw(shapes)
    size = int(np.prod(shape))
    count = data.draw(st.integers(0, size))
    per_element = 2 if field in ("scomplex_val", "dcomplex_val") else 1
    items = data.draw(st.lists(values, min_size=count * per_element, max_size=count * per_element))
    proto = tfs_protos.tensor_pb2.TensorProto(dtype=tf.as_dtype(ML.get(name, name)).as_datatype_enum)
    proto.tensor_shape.SetInParent()
    for d in shape:
        proto.tensor_shape.dim.add(size=d)
    if field == "float8_val":
        proto.float8_val = bytes(items)
    else:
        getattr(proto, field).extend(items)
    got = codec.make_ndarray(proto)
    if name == "string" and count == 0 and size:
        # TF fills with "" (str); codec with b"", like the strings it decodes
        assert got.shape == tuple(shape) and got.tolist() == np.full(shape, b"", object).tolist()
        return
    assert_same_array(got, tf.make_ndarray(proto))


def test_make_ndarray_examples():
    p = codec.make_tensor_proto(2.5, shape=[2, 2])
    assert p.float_val == [2.5] and not p.tensor_content
    np.testing.assert_array_equal(codec.make_ndarray(p), np.full((2, 2), 2.5, np.float32))
    p = codec.make_tensor_proto(["a", "é"], shape=[3])
    assert codec.make_ndarray(p).tolist() == [b"a", "é".encode(), "é".encode()]
    p = codec.make_tensor_proto(np.float16(1.5))
    assert list(p.half_val) == [np.float16(1.5).view(np.uint16)]
    assert codec.make_ndarray(p) == np.float16(1.5) and codec.make_ndarray(p).shape == ()
    # *_ref dtypes and every float8 type read fine (TF's make_ndarray refuses them)
    p = tfs_protos.tensor_pb2.TensorProto(dtype=107, string_val=[b"x"])
    p.tensor_shape.dim.add(size=2)
    assert codec.make_ndarray(p).tolist() == [b"x", b"x"]
    p = tfs_protos.tensor_pb2.TensorProto(dtype=codec.as_datatype_enum("float8_e4m3fnuz"),
                                          float8_val=b"\x38")
    assert codec.make_ndarray(p).dtype == ml_dtypes.float8_e4m3fnuz


@pytest.mark.parametrize("fields, error, match", [
    ({"dtype": 1, "dims": [3], "tensor_content": b"\0" * 8}, ValueError, "needs 12"),
    ({"dtype": 1, "dims": [1], "float_val": [1.0, 2.0]}, ValueError, "2 float_val values"),
    ({"dtype": 1, "dims": [-1]}, ValueError, "partially known"),
    ({"dtype": 7, "dims": [2], "tensor_content": b"ab"}, ValueError, "tensor_content"),
    ({"dtype": 20, "dims": [1]}, TypeError, "resource"),
    ({"dtype": 0, "dims": [1]}, TypeError, "Unsupported"),
])
def test_make_ndarray_errors(fields, error, match):
    fields = dict(fields)
    proto = tfs_protos.tensor_pb2.TensorProto(**{k: v for k, v in fields.items() if k != "dims"})
    for d in fields["dims"]:
        proto.tensor_shape.dim.add(size=d)
    with pytest.raises(error, match=match):
        codec.make_ndarray(proto)


# --------------------------------------------------------------------------- dtypes

def test_dtype_helpers_like_tf():
    enums = [e for e in tfs_protos.types_pb2.DataType.values() if e]
    for enum in enums:
        expected = tf.as_dtype(enum)
        assert codec.dtype_name(enum) == expected.name
        assert codec.as_datatype_enum(expected.name) == enum
        assert codec.as_datatype_enum(expected) == enum
        assert codec.as_datatype_enum(enum) == enum
        assert codec.as_datatype_enum(tfs_protos.types_pb2.DataType.Name(enum)) == enum
        if expected.is_numpy_compatible:
            assert codec.numpy_dtype(enum) == np.dtype(expected.as_numpy_dtype)
            assert codec.as_datatype_enum(expected.as_numpy_dtype) == expected.base_dtype
        else:
            with pytest.raises(TypeError):
                codec.numpy_dtype(enum)
    for alias in ["half", "float", "double", "float_ref", np.float32, np.dtype("<f8"),
                  np.dtype(">f8"), ml_dtypes.bfloat16, float, bool, object, np.str_, np.bytes_,
                  np.longlong, np.ulonglong]:
        assert codec.as_datatype_enum(alias) == tf.as_dtype(alias).as_datatype_enum, alias
    assert codec.as_datatype_enum("f4") == 1  # numpy spellings too
    assert codec.as_datatype_enum(int) == 9  # TF refuses python int; codec: numpy's int64
    for bad in [True, 0, 1000, "nope", np.dtype("datetime64[s]"), None, 1.5]:
        with pytest.raises(TypeError):
            codec.as_datatype_enum(bad)


@pytest.mark.parametrize("code, bad", [
    (0xD7FF, False), (0xD800, True), (0xDBFF, True), (0xDC00, True), (0xDFFF, True), (0xE000, False),
    (0x10FFFF, False), (0x110000, True), (0xFFFFFFFF, True), (0, False),
])
@pytest.mark.parametrize("order", ["<", ">"])
def test_bad_code_points_are_surrogates_and_past_u10ffff_exactly(code, bad, order):
    """Unicode arrays made from raw bytes (an .npy file) may hold what no str can: the edges of each range."""
    raw = np.array([0x41, code], np.dtype("u4").newbyteorder(order))
    array = np.frombuffer(raw.tobytes(), np.dtype("U1").newbyteorder(order))
    assert codec.bad_code_points(array) is bad
    assert codec.bad_code_points(array[:1]) is False


@pytest.mark.parametrize("dtype", ["qint8", "quint8", "qint16", "quint16", "qint32"])
def test_quantized_tensors_decode_like_tf(dtype):
    values = [0, 1, 7, 100]
    proto = tf.make_tensor_proto(np.array(values), dtype=dtype)
    got, expected = codec.make_ndarray(proto), tf.make_ndarray(proto)
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
    assert got.shape == (4,)

