"""TensorProto <-> numpy for the server, with the semantics of TF's C++ Tensor::FromProto/AsProtoField.

Decoding follows the C++ parser TF Serving uses, not tf.make_ndarray: typed fields with fewer
values than the shape holds repeat the last value, extra values are ignored, no values means
zeros. Encoding writes typed fields (float_val, int_val, ...) by default, as TF Serving does.
"""

import ml_dtypes
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from ..util import status

# A request tensor may decode to at most this many bytes. TF Serving has no such limit (its allocator
# fails past the machine's memory), but a few bytes on the wire (a huge shape, one value that fills
# it) must not make the server allocate gigabytes: 1 GiB is far beyond any sane input.
MAX_TENSOR_BYTES = 1 << 30
_MAX_RANK = 64  # numpy's limit (TF's is 254); past it numpy cannot hold the array
_STRING_OVERHEAD = 32  # per element of a string tensor: the numpy reference and TF's tstring

# DataType -> (numpy dtype, typed field, TF's DataTypeString)
_DTYPES = {
    types_pb2.DT_FLOAT: (np.float32, "float_val", "float"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val", "double"),
    types_pb2.DT_INT32: (np.int32, "int_val", "int32"),
    types_pb2.DT_UINT8: (np.uint8, "int_val", "uint8"),
    types_pb2.DT_INT16: (np.int16, "int_val", "int16"),
    types_pb2.DT_INT8: (np.int8, "int_val", "int8"),
    types_pb2.DT_UINT16: (np.uint16, "int_val", "uint16"),
    types_pb2.DT_INT64: (np.int64, "int64_val", "int64"),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val", "uint32"),
    types_pb2.DT_UINT64: (np.uint64, "uint64_val", "uint64"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val", "bool"),
    types_pb2.DT_HALF: (np.float16, "half_val", "half"),
    types_pb2.DT_BFLOAT16: (ml_dtypes.bfloat16, "half_val", "bfloat16"),
    types_pb2.DT_COMPLEX64: (np.complex64, "scomplex_val", "complex64"),
    types_pb2.DT_COMPLEX128: (np.complex128, "dcomplex_val", "complex128"),
    types_pb2.DT_STRING: (np.object_, "string_val", "string"),
}
_BY_NUMPY = {np.dtype(v[0]): k for k, v in _DTYPES.items() if v[0] is not np.object_}


def dtype_name(dtype_enum: int) -> str:
    """TF's DataTypeString, as used in its error messages."""
    if dtype_enum in _DTYPES:
        return _DTYPES[dtype_enum][2]
    name = types_pb2.DataType.Name(dtype_enum) if dtype_enum in types_pb2.DataType.values() else "unknown"
    return name[3:].lower() if name.startswith("DT_") else name


class ParseError(ValueError):
    """A tensor C++ Tensor::FromProto would not parse; `detail` (our own limits) is added to TF's message."""

    def __init__(self, reason, detail=None):
        super().__init__(reason)
        self.detail = detail


def to_ndarray(proto: tensor_pb2.TensorProto, content=None) -> np.ndarray:
    """Decode a request tensor; raise ParseError where C++ Tensor::FromProto would fail.

    `content`, when given, stands for the proto's tensor_content (a memoryview into the received
    bytes: see model_servers/grpc/wire.py). Also refuses, before allocating anything, a tensor that would take more
    than MAX_TENSOR_BYTES.
    """
    if proto.dtype not in _DTYPES:
        raise ParseError(f"unsupported dtype {proto.dtype}")
    np_dtype, field, _ = _DTYPES[proto.dtype]
    if proto.tensor_shape.unknown_rank:
        raise ParseError("unknown rank")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if len(shape) > _MAX_RANK:
        raise ParseError(f"rank {len(shape)} is more than {_MAX_RANK}")
    if any(s < 0 for s in shape):
        raise ParseError("negative dimension")
    count = 1
    for s in shape:
        count *= s
    if count >= 2**63:  # TF's TensorShape: the element count must fit an int64
        raise ParseError("too many elements")
    if proto.dtype == types_pb2.DT_STRING:
        return _strings(proto.string_val, count, shape)
    itemsize = np.dtype(np_dtype).itemsize
    _check_size(count * itemsize, shape)
    if content is None:
        content = proto.tensor_content  # read once: every read of the field is a new copy of its bytes
    if content:
        if len(content) != count * itemsize:
            raise ParseError("tensor_content size does not match the shape")
        out = aligned_empty(count, np_dtype)  # TensorFlow feeds an aligned array without copying it
        out.view(np.uint8)[:] = np.frombuffer(content, np.uint8)
        return _reshape(out, shape)
    values = getattr(proto, field)
    if proto.dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        flat = np.asarray(values, dtype=np.float64)
        pairs = flat[: len(flat) // 2 * 2].reshape(-1, 2)
        array = np.empty(len(pairs), np_dtype)  # not re + 1j * im: 1j * inf is nan + inf j
        array.real, array.imag = pairs[:, 0], pairs[:, 1]
    elif proto.dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        # half_val holds the 16 bits in an int32, as C++ reads them (a negative value keeps its low bits)
        array = np.asarray(values, dtype=np.int64).astype(np.uint16).view(np_dtype)
    elif len(values):
        array = np.asarray(values).astype(np_dtype, copy=False)
    else:
        array = np.zeros(0, np_dtype)
    if len(array) != count:
        array = _fill(array, count, np_dtype)
    return _reshape(array, shape)


def _strings(values, count, shape):
    """A string tensor as a numpy object array, filled as C++ does; its size counted before it is built."""
    head = values[:count]
    last = values[-1] if len(values) else b""
    _check_size(count * _STRING_OVERHEAD + sum(len(v) for v in head) + (count - len(head)) * len(last), shape)
    out = np.empty(count, dtype=object)
    out[:len(head)] = head
    out[len(head):] = last
    return _reshape(out, shape)


def _check_size(size, shape):
    if size > MAX_TENSOR_BYTES:
        raise ParseError("too large", f"shape [{','.join(str(d) for d in shape)}] would take {size} bytes, "
                                      f"more than the {MAX_TENSOR_BYTES} a request tensor may take")


def _reshape(flat, shape):
    try:
        return flat.reshape(shape)
    except ValueError as e:  # a shape numpy cannot hold (e.g. [0, 2**62]: no elements, dims too large)
        raise ParseError(str(e)) from None


def _fill(array, count, np_dtype):
    """C++ FromProtoField: repeat the last value to fill the shape, drop extras, zeros if empty."""
    n = min(len(array), count)
    out = np.empty(count, np_dtype)
    out[:n] = array[:n]
    out[n:] = array[-1] if len(array) else 0
    return out


ALIGNMENT = 64  # EIGEN_MAX_ALIGN_BYTES: TensorFlow copies a fed numpy array whose data is not so aligned


def aligned_empty(count, dtype):
    """An uninitialized 1-D array of `count` items whose data starts on an ALIGNMENT boundary."""
    dtype = np.dtype(dtype)
    raw = np.empty(count * dtype.itemsize + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + count * dtype.itemsize].view(dtype)


# numpy lets go of the GIL for any copy of more than 500 items (NPY_BEGIN_THREADS_THRESHOLDED), and a
# thread that lets go may then wait for it while the event loop thread runs. Merging a batch of ~13
# small requests with np.concatenate cost the batch thread ~1.3 ms of waits a batch, 15-30% of its
# time (timed inside it, with oneDNN and h2load; the throughput is bench_batching.py's). Below this size
# a copy keeps the GIL: one memcpy, microseconds.
GIL_COPY_BYTES = 2**20


def concat_rows(parts):
    """np.concatenate(parts, axis=0), 64-byte aligned (so TensorFlow feeds it without a copy); parts of one
    dtype and row shape under GIL_COPY_BYTES in all are copied holding the GIL (see above)."""
    first = parts[0]
    total = sum(part.nbytes for part in parts)
    if (total >= GIL_COPY_BYTES or first.ndim == 0 or first.dtype.hasobject
            or any(part.dtype != first.dtype or part.shape[1:] != first.shape[1:] for part in parts)):
        return np.concatenate(parts, axis=0)  # its own checks, errors and type promotion
    out = aligned_empty(total // first.itemsize, first.dtype)
    target, start = memoryview(out.view(np.uint8)), 0
    for part in parts:
        data = memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8))
        target[start:start + part.nbytes] = data
        start += part.nbytes
    return out.reshape((sum(len(part) for part in parts),) + first.shape[1:])


def write_proto(proto, array, as_tensor_content: bool = False):
    """Encode a session output into `proto` (a response's output entry: no copy of a large tensor into the
    response): typed fields (TF's AsProtoField) or packed bytes (AsProtoTensorContent)."""
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.ravel())
    else:
        proto.dtype = _BY_NUMPY[array.dtype]
        if as_tensor_content:
            proto.tensor_content = contiguous_bytes(array).tobytes()
        else:
            _write_field(proto, array)
    proto.tensor_shape.CopyFrom(shape_proto(array.shape))


# Typed fields whose packed wire form is the values' little-endian bytes (fixed32/fixed64, or one-byte
# varints for bool): written by parsing those bytes into the proto, with no Python object per value
# (README.md, "Reliability": the figures of a large output written value by value).
_PACKED_RAW = {types_pb2.DT_FLOAT: "<f4", types_pb2.DT_DOUBLE: "<f8", types_pb2.DT_COMPLEX64: "<f4",
               types_pb2.DT_COMPLEX128: "<f8", types_pb2.DT_BOOL: "u1"}


def varint(n):
    """`n` as a protobuf varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _write_field(proto, array):
    packed = packed_field(array, proto.dtype)
    if packed is None:
        flat = _field_values(array, proto.dtype)
        getattr(proto, _DTYPES[proto.dtype][1]).extend(flat.tolist())
        return
    number, payload = packed
    head = varint(number << 3 | 2) + varint(payload.nbytes)
    wire = bytearray(len(head) + payload.nbytes)  # in one piece: the parser sizes the field once
    wire[:len(head)] = head
    wire[len(head):] = payload.data
    proto.MergeFromString(wire)


def _field_values(array, dtype_enum):
    """The array as its typed field holds it: half bits in int32, complex as (re, im) pairs."""
    flat = array.ravel()
    if dtype_enum in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        return flat.view(np.uint16).astype(np.int32)
    if array.dtype.kind == "c":
        return np.stack([flat.real, flat.imag], axis=-1).ravel()
    return flat


def packed_field(array, dtype_enum):
    """(field number, bytes as a uint8 array) of the array's typed field in packed wire form, or None
    where that form is not the values' raw bytes (varints) or there are no values."""
    raw = _PACKED_RAW.get(dtype_enum)
    if raw is None or not array.size:
        return None
    flat = _field_values(array, dtype_enum)
    number = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name[_DTYPES[dtype_enum][1]].number
    return number, np.ascontiguousarray(flat, dtype=raw).view(np.uint8)


def packs_raw(dtype_enum) -> bool:
    """Whether the dtype's typed field, packed, is its values' little-endian bytes."""
    return dtype_enum in _PACKED_RAW


def contiguous_bytes(array):
    """The array's values as tensor_content holds them (C order, this machine's byte order), as uint8."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def dtype_of(array) -> int:
    """The DataType of a numeric numpy array (KeyError for one TensorFlow has no type for)."""
    return _BY_NUMPY[array.dtype]


def shape_proto(shape) -> tensor_shape_pb2.TensorShapeProto:
    proto = tensor_shape_pb2.TensorShapeProto()
    for size in shape:
        proto.dim.add(size=int(size))
    return proto


def error_from_dtype(index: int, expected: int, actual: int):
    """The message TF's FunctionCallFrame gives for a feed of the wrong type."""
    return status.invalid_argument(
        f"Expects arg[{index}] to be {dtype_name(expected)} but {dtype_name(actual)} is provided")
