"""TensorProto <-> numpy without TensorFlow: drop-ins for tf.make_tensor_proto / tf.make_ndarray.

    from tfsclient import codec
    proto = codec.make_tensor_proto(values, dtype=None, shape=None)   # -> TensorProto
    array = codec.make_ndarray(proto)                                 # -> numpy.ndarray

Only numpy (and ml_dtypes, for bfloat16 / float8 / int4 etc., when installed) are
needed; the TensorProto class is the real one, imported through ``tfsclient.protos``
without starting the TensorFlow runtime, so the protos go straight into a
``PredictRequest`` (``request.inputs["x"].CopyFrom(proto)``).

``make_tensor_proto`` produces exactly what ``tf.make_tensor_proto`` does (same
serialized bytes), following its rules:

* Python scalars and (nested) lists go through ``np.array``; with no ``dtype``,
  float64 becomes float32 and int64 becomes int32 when no value is lost (numpy
  arrays and numpy scalars keep their dtype).
* ``dtype`` may be a numpy dtype or type, a TF name (``"float32"``, ``"float"``,
  ``"half"``, ``"double"``, ``"string"``, ``"bfloat16"``, ``"DT_FLOAT"``...), a
  ``DataType`` enum int, or anything with ``as_datatype_enum`` (a ``tf.DType``).
  Numpy arrays are cast with ``astype``; list elements must fit the dtype's
  kind (TypeError otherwise, as in TF).
* ``shape``: the values are laid out in that shape when the sizes match; fewer
  values than the shape holds (typically one) are written as they are and the
  last value fills the rest when decoded; more values is a ValueError.
* Data: ``tensor_content`` (raw little-endian bytes) when the tensor has more
  than one element, no filling is needed, and the dtype is one of float16/32/64,
  bfloat16, int8/16/32/64, uint8/32/64, float8 types, quantized types. Everything
  else uses the typed repeated fields, as TF does: scalars and one-element
  tensors (``float_val``, ``int_val``, ``half_val`` holding float16/bfloat16
  bits...), and *always* uint16 (``int_val``), bool (``bool_val``), complex64/128
  (``scomplex_val``/``dcomplex_val`` as real, imag pairs), int4/uint4/int2/uint2
  (``int_val``) and strings (``string_val``; str is encoded as UTF-8).

``make_ndarray`` reads both ``tensor_content`` and the typed fields, and applies
the fill rule (an empty field gives zeros / empty strings; fewer values than the
shape holds are padded with the last one). Differences from TF, all where TF
fails or is wrong: big-endian input arrays are written little-endian (TF writes
their raw bytes), a string tensor with no values decodes to ``b""`` elements
(TF gives ``""``), and the typed fields of every float8 type, ``*_ref`` dtypes,
and int_val values out of the dtype's range (wrapped) are accepted; padding a few
values out to more than 2 GB (a tiny proto with a huge shape) is refused. Errors are
ValueError / TypeError with a message, whatever the input.

Helpers: ``as_datatype_enum(dtype)`` -> DataType int, ``dtype_name(enum)`` ->
"float32", ``numpy_dtype(enum)`` -> numpy dtype (object for strings).
"""

import math
import numbers
import sys

import numpy as np

from .protos import tensor_pb2, tensor_shape_pb2
from .dtypes import (DT_BFLOAT16, DT_BOOL, DT_COMPLEX64, DT_COMPLEX128, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT64,
                     DT_STRING, ENUM_NAME, ML_TYPE_ENUM, NAME_ENUM, QUANT_NP_ENUM, REF, as_datatype_enum,
                     np_dtype_or_none,
                     brief_repr, dtype_name, np_enum, numpy_dtype)

__all__ = ["make_tensor_proto", "make_ndarray", "as_datatype_enum", "dtype_name",
           "numpy_dtype", "TensorProto"]

TensorProto = tensor_pb2.TensorProto
_TensorShapeProto = tensor_shape_pb2.TensorShapeProto
_Dim = _TensorShapeProto.Dim

_MAX_CONTENT = 1 << 31  # protobuf messages cannot exceed 2 GB
_LITTLE = sys.byteorder == "little"
# Which dtypes tf.make_tensor_proto writes as tensor_content (when it does).
_CONTENT_ENUMS = frozenset(NAME_ENUM[n] for n in (
    "float16", "float32", "float64", "int32", "uint8", "int16", "int8", "int64",
    "qint8", "quint8", "qint16", "quint16", "qint32", "uint32", "uint64", "bfloat16",
    "float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz",
    "float8_e5m2fnuz", "float4_e2m1fn") if n in NAME_ENUM)

# enum -> (typed field, numpy dtype the field's values are written/read as).
_FIELDS = {
    DT_FLOAT: ("float_val", np.float32),
    DT_DOUBLE: ("double_val", np.float64),
    DT_HALF: ("half_val", np.uint16),          # the float16 bits
    DT_BFLOAT16: ("half_val", np.uint16),      # the bfloat16 bits
    DT_INT64: ("int64_val", np.int64),
    DT_BOOL: ("bool_val", np.bool_),
    DT_COMPLEX64: ("scomplex_val", np.float32),   # real, imag pairs
    DT_COMPLEX128: ("dcomplex_val", np.float64),
    DT_STRING: ("string_val", None),
}
for _n in ("int32", "uint8", "uint16", "int16", "int8", "qint8", "quint8", "qint16",
           "quint16", "qint32", "int4", "uint4", "int2", "uint2"):
    if _n in NAME_ENUM:
        _FIELDS[NAME_ENUM[_n]] = ("int_val", np.int32)
for _n in ("uint32", "uint64"):
    _FIELDS[NAME_ENUM[_n]] = (_n + "_val", np.dtype(_n))
for _n in ("float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz",
           "float8_e5m2fnuz", "float4_e2m1fn"):
    if _n in NAME_ENUM:
        _FIELDS[NAME_ENUM[_n]] = ("float8_val", np.uint8)  # a bytes field: one byte each
del _n

# ---------------------------------------------------------------------------
# make_tensor_proto

def _flatten(values):
    # Iterative: a list nested thousands deep must not hit Python's recursion limit.
    stack = [iter((values,))]
    while stack:
        for item in stack[-1]:
            if isinstance(item, (list, tuple)):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


# Element types tf.make_tensor_proto accepts in lists for each kind of dtype
# (TF's _AssertCompatible; numpy bools are accepted too).
_INT_TYPES = (numbers.Integral, np.integer, np.bool_)
_REAL_TYPES = (numbers.Real, np.integer, np.floating, np.bool_)
_COMPLEX_TYPES = (numbers.Complex, np.number, np.bool_)
_STR_TYPES = (bytes, str)
_BOOL_TYPES = (bool, np.bool_)


def _expected_types(enum):
    name = ENUM_NAME[enum]
    if enum == DT_STRING:
        return _STR_TYPES
    if enum == DT_BOOL:
        return _BOOL_TYPES
    if name.startswith("complex"):
        return _COMPLEX_TYPES
    if name.startswith(("float", "bfloat")):
        return _REAL_TYPES
    if name.startswith(("int", "uint")):
        return _INT_TYPES
    return None  # quantized: TF wants tuples; numpy checks those


def _check_elements(values, enum):
    """Like TF's _AssertCompatible: list elements must be of the dtype's kind."""
    expected = _expected_types(enum)
    if expected is None:
        return
    for v in _flatten(values):
        if not (isinstance(v, expected) or (
                isinstance(v, np.ndarray) and issubclass(v.dtype.type, expected))):
            raise TypeError(f"Expected {ENUM_NAME[enum]}, but got {brief_repr(v)} of type "
                            f"'{type(v).__name__}'.")


def _as_bytes(v):
    if type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"Expected binary or unicode string, got {brief_repr(v)}")


def _is_array_like(values):
    if isinstance(values, (np.ndarray, np.generic)):
        return True
    if callable(getattr(values, "__array__", None)) or isinstance(
            getattr(values, "__array_interface__", None), dict):
        return True
    if isinstance(values, (bytes, str, list, tuple, int, float, complex)):
        return False
    try:
        memoryview(values)
    except TypeError:
        return False
    return True


def _shape_list(shape):
    if isinstance(shape, _TensorShapeProto):
        if shape.unknown_rank:
            raise ValueError("shape must have a known rank.")
        shape = [d.size for d in shape.dim]
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"shape must be a sequence of ints, got {brief_repr(shape)}.")
    try:
        dims = [int(d) for d in shape]
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: int(float("inf"))
        raise TypeError(f"shape must be a sequence of ints, got {brief_repr(shape)}.") from e
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must not contain negative dimensions, got {dims}.")
    return dims


def _shape_proto(dims):
    return _TensorShapeProto(dim=[_Dim(size=d) for d in dims])


def _foreign_tensor_proto(value):
    """A TensorProto of another module's class: TensorFlow's, or tensorflow-serving-api's."""
    descriptor = getattr(type(value), "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", None) == TensorProto.DESCRIPTOR.full_name and hasattr(
        value, "SerializeToString")


def make_tensor_proto(values, dtype=None, shape=None):
    """numpy-only equivalent of tf.make_tensor_proto(values, dtype, shape); see the module doc."""
    if isinstance(values, TensorProto):
        return values
    if _foreign_tensor_proto(values):  # TensorFlow's own class of the message (tf.make_tensor_proto's): as bytes
        return TensorProto.FromString(values.SerializeToString())
    # Fast path: a numpy array as it is.
    if dtype is None and shape is None and type(values) is np.ndarray:
        enum = np_enum(values.dtype)
        if enum in _CONTENT_ENUMS and values.size > 1:
            if values.dtype.byteorder == ">":
                values = values.astype(values.dtype.newbyteorder("<"))
            content = values.tobytes()
            if len(content) >= _MAX_CONTENT:
                raise ValueError("Cannot create a tensor proto whose content is larger than 2GB.")
            return TensorProto(dtype=enum, tensor_shape=_shape_proto(values.shape),
                               tensor_content=content)

    enum = None if dtype is None else as_datatype_enum(dtype) % REF
    np_dt = None
    if enum is not None:
        np_dt = np_dtype_or_none(enum)
        if np_dt is None:
            raise TypeError(f"Cannot make a TensorProto of dtype {ENUM_NAME[enum]} from "
                            "values (numpy cannot hold it).")
    quantized = enum in QUANT_NP_ENUM.values()

    if _is_array_like(values):
        values = np.asarray(values)
    try:
        nparray = _as_nparray(values, enum, np_dt, shape)
    except OverflowError as e:  # e.g. [10**30] as int32: numpy cannot even wrap it
        raise ValueError(f"Values out of range for dtype {ENUM_NAME[enum]}: {e}.") from None
    if enum is None and not isinstance(values, (np.ndarray, np.generic)):
        # prefer float32 and int32, as TF
        if nparray.dtype == np.float64:
            nparray = nparray.astype(np.float32)
        elif nparray.dtype == np.int64:
            down = nparray.astype(np.int32)
            if np.array_equal(down, nparray):
                nparray = down

    actual = np_enum(nparray.dtype)
    if actual is None:
        raise TypeError(f"Unrecognized data type: {nparray.dtype}.")
    if quantized:
        actual = enum
    if enum is not None and enum != actual:
        raise TypeError(f"dtype {ENUM_NAME[enum]} is not compatible with values of dtype "
                        f"{nparray.dtype}.")

    if shape is None:
        dims = list(nparray.shape)
        same_size = True
        shape_size = nparray.size
    else:
        dims = _shape_list(shape)
        shape_size = math.prod(dims)
        same_size = shape_size == nparray.size
        if nparray.size > shape_size:
            raise ValueError(f"Too many elements provided: shape {dims} takes at most "
                             f"{shape_size}, but got {nparray.size}.")

    proto = TensorProto(dtype=actual, tensor_shape=_shape_proto(dims))

    if same_size and actual in _CONTENT_ENUMS and shape_size > 1:
        if nparray.dtype.byteorder == ">":
            nparray = nparray.astype(nparray.dtype.newbyteorder("<"))
        if nparray.size * nparray.itemsize >= _MAX_CONTENT:
            raise ValueError("Cannot create a tensor proto whose content is larger than 2GB.")
        proto.tensor_content = nparray.tobytes()
        return proto

    if actual == DT_STRING:
        if isinstance(values, (np.ndarray, np.generic)):
            if nparray.dtype.kind == "U" and bad_code_points(nparray):
                raise ValueError("A unicode array holds code points that are not Unicode "
                                 "(surrogates or beyond U+10FFFF).")
            items = nparray.ravel().tolist()
        else:  # from the given values, so numpy does not trim trailing NULs
            items = _flatten(values)
        try:
            proto.string_val.extend([_as_bytes(v) for v in items])
        except TypeError as e:
            raise TypeError(f"Failed to convert elements of {brief_repr(values)} to a TensorProto: "
                            f"{e}. Cast them to one supported type.") from None
        return proto

    if not nparray.dtype.isnative:  # _write_field views the bits (float16, complex) in native order
        nparray = nparray.astype(nparray.dtype.newbyteorder("="))
    _write_field(proto, actual, nparray.ravel())
    return proto


def _as_nparray(values, enum, np_dt, shape):
    if isinstance(values, (np.ndarray, np.generic)):
        return values if np_dt is None else values.astype(np_dt)
    if values is None:
        raise ValueError("None values not supported.")
    if shape is not None and math.prod(_shape_list(shape)) == 0:
        return np.empty(_shape_list(shape), dtype=np_dt)
    if enum is not None:
        _check_elements(values, enum)
    if np_dt is not None and np.issubdtype(np_dt, np.number):
        return np.array(values).astype(np_dt)  # wraps out-of-range ints, as TF
    return np.array(values, dtype=np_dt)


def bad_code_points(array):
    """Whether a numpy unicode array (made from raw bytes) holds what no str can: numpy then fails
    with SystemError instead of an error of its own."""
    codes = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.dtype("u4").newbyteorder(array.dtype.byteorder))
    return bool(((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any())


def _write_field(proto, enum, flat):
    field, as_type = _FIELDS[enum]
    if flat.dtype.names is not None:  # quantized: the single integer field
        flat = flat.view(flat.dtype.fields[flat.dtype.names[0]][0])
    if field == "half_val":
        flat = flat.view(np.uint16)
    elif field == "float8_val":
        proto.float8_val = flat.view(np.uint8).tobytes()
        return
    elif field in ("scomplex_val", "dcomplex_val"):
        flat = np.ascontiguousarray(flat).view(as_type)
    elif flat.dtype.type in ML_TYPE_ENUM:  # int4 & co
        flat = flat.astype(np.int8)
    getattr(proto, field).extend(flat.tolist())


# ---------------------------------------------------------------------------
# make_ndarray

def make_ndarray(tensor):
    """numpy-only equivalent of tf.make_ndarray(tensor_proto); see the module doc."""
    shape_proto = tensor.tensor_shape
    if shape_proto.unknown_rank:
        raise ValueError("Cannot make an ndarray from a TensorProto of unknown rank.")
    shape = [d.size for d in shape_proto.dim]
    if any(d < 0 for d in shape):
        raise ValueError(f"Cannot make an ndarray of partially known shape {shape}.")
    size = math.prod(shape)
    enum = tensor.dtype - REF if tensor.dtype > REF else tensor.dtype
    if enum not in _FIELDS:
        raise TypeError(f"Unsupported tensor type: {ENUM_NAME.get(enum, tensor.dtype)}.")
    dt = numpy_dtype(enum)

    content = tensor.tensor_content
    if content:
        if enum == DT_STRING:
            raise ValueError("A string TensorProto cannot use tensor_content.")
        if len(content) != size * dt.itemsize:
            raise ValueError(f"tensor_content has {len(content)} bytes, but shape {shape} of "
                             f"{ENUM_NAME[enum]} needs {size * dt.itemsize}.")
        array = np.frombuffer(content, dtype=dt)
        array = array.copy() if _LITTLE else array.byteswap()
        return array.reshape(shape)

    field, as_type = _FIELDS[enum]
    if enum == DT_STRING:
        n = len(tensor.string_val)
        if n == size:
            return np.fromiter(tensor.string_val, dtype=object, count=n).reshape(shape)
        values = list(tensor.string_val)
        if n > size:
            raise ValueError(f"TensorProto has {n} string values for shape {shape}.")
        if n < size:
            _check_fill(n, size, dt, shape, enum)
            values.extend([values[-1] if values else b""] * (size - n))
        array = np.empty(size, dtype=object)
        array[:] = values
        return array.reshape(shape)

    if field == "float8_val":
        values = np.frombuffer(tensor.float8_val, dtype=np.uint8).view(dt).copy()
    else:
        raw = np.asarray(getattr(tensor, field))
        if raw.dtype != as_type:  # e.g. an older protobuf without __array__
            raw = raw.astype(as_type)
        if field == "half_val":
            values = raw.astype(np.uint16).view(dt)
        elif field in ("scomplex_val", "dcomplex_val"):
            values = raw[:raw.size - raw.size % 2].view(dt)
        elif dt.names is not None:  # quantized
            base = dt.fields[dt.names[0]][0]
            values = raw.astype(base).view(dt)
        elif raw.dtype != dt:
            values = raw.astype(dt)
        else:
            values = raw

    n = values.size
    if n == size:
        return values.reshape(shape)
    if n > size:
        raise ValueError(f"TensorProto has {n} {field} values for shape {shape}.")
    _check_fill(n, size, dt, shape, enum)
    if n == 0:
        return np.zeros(shape, dtype=dt)
    array = np.empty(size, dtype=dt)
    array[:n] = values
    array[n:] = values[-1]
    return array.reshape(shape)


def _check_fill(n, size, dt, shape, enum):
    """Refuse to pad a few values out to more than 2 GB: a 20-byte proto must not take gigabytes."""
    # 2 GB: no tensor_content can be larger, so a real tensor this big could not be sent anyway.
    if size * dt.itemsize >= _MAX_CONTENT:
        raise ValueError(f"TensorProto of shape {shape} and dtype {ENUM_NAME[enum]} has {n} values "
                         f"to fill {size * dt.itemsize} bytes; refusing to decode more than 2 GB.")
