"""server/servables/tensors.py in-process: the output encoding that makes no Python object per value gives the
same proto as the typed fields filled value by value; decoded request tensors are aligned for TensorFlow; memory
trims are debounced. (Memory figures: benchmarks/bench_memory.py.)"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2, types_pb2

from testing.server_client import tensor_proto

from server.util import memory
from server.servables import tensors


def value_by_value(array):
    """The TensorProto filled the plain way: every value a Python object appended to the typed field."""
    proto = tensor_pb2.TensorProto(dtype=tensors._BY_NUMPY[array.dtype])
    flat = array.ravel()
    if array.dtype.kind == "c":
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    getattr(proto, tensors._DTYPES[proto.dtype][1]).extend(flat.tolist())
    proto.tensor_shape.CopyFrom(tensors.shape_proto(array.shape))
    return proto


@settings(max_examples=200, deadline=None)
@example(np.array(complex(0, np.inf), np.complex64))  # decoded as nan+infj once (re + 1j * im)
@given(hnp.arrays(st.sampled_from([np.float32, np.float64, np.complex64, np.complex128, np.bool_]),
                  hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
def test_packed_outputs_are_the_typed_fields_filled_value_by_value(array):
    proto = tensor_proto(array)
    assert proto.SerializeToString() == value_by_value(array).SerializeToString()
    np.testing.assert_array_equal(tensors.to_ndarray(proto), array)


def test_write_proto_fills_a_responses_entry_in_place():
    from tensorflow_serving.apis import predict_pb2
    response = predict_pb2.PredictResponse()
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensors.write_proto(response.outputs["y"], array)
    assert response.outputs["y"] == value_by_value(array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int64, np.complex64])
def test_tensor_content_decodes_to_an_aligned_array(dtype):
    """TensorFlow feeds a numpy array without copying it only when its data is 64-byte aligned."""
    array = (np.arange(1001) % 7).astype(dtype)
    proto = tensor_pb2.TensorProto(dtype=tensors._BY_NUMPY[np.dtype(dtype)], tensor_content=array.tobytes())
    proto.tensor_shape.dim.add(size=1001)
    decoded = tensors.to_ndarray(proto)
    assert decoded.ctypes.data % tensors.ALIGNMENT == 0 and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([np.float32, np.float64, np.int8, np.complex64, np.bool_, np.float16]),
       hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5),
       st.lists(st.integers(0, 4), min_size=1, max_size=6), st.booleans())
def test_a_batch_is_merged_as_concatenate_merges_it_and_aligned(dtype, row_shape, sizes, strided):
    """concat_rows (the batch thread's merge, which keeps the GIL) against np.concatenate: the same array,
    and 64-byte aligned, so TensorFlow feeds the batch without copying it."""
    parts = []
    for size in sizes:
        part = (np.arange(size * 2 * int(np.prod(row_shape))) % 5).astype(dtype).reshape((size * 2,) + row_shape)
        parts.append(part[::2] if strided else part[:size])
    merged = tensors.concat_rows(parts)
    expected = np.concatenate(parts, axis=0)
    assert merged.dtype == expected.dtype and merged.shape == expected.shape
    np.testing.assert_array_equal(merged, expected)
    assert merged.ctypes.data % tensors.ALIGNMENT == 0 or not merged.nbytes


def test_parts_that_do_not_line_up_are_left_to_concatenate_to_refuse_or_promote():
    with pytest.raises(ValueError, match="dimensions except for the concatenation axis must match"):
        tensors.concat_rows([np.zeros((1, 2), np.float32), np.zeros((1, 3), np.float32)])
    assert tensors.concat_rows([np.zeros((1, 2), np.float32), np.zeros((2, 2), np.float64)]).dtype == np.float64
    strings = tensors.concat_rows([np.array([b"a"], object), np.array([b"bc", b"d"], object)])
    assert strings.tolist() == [b"a", b"bc", b"d"]


def test_trims_are_debounced(monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "_trim", trims.append)
    monkeypatch.setattr(memory, "DELAY_SECONDS", 0.05)
    for _ in range(5):
        memory.after_large_request()
    from testing.server import wait_until
    wait_until(lambda: trims == [0], timeout=5, what="one trim")
    memory.after_large_request()
    wait_until(lambda: trims == [0, 0], timeout=5, what="a second trim after the first ran")


@pytest.mark.parametrize("dtype, name", [
    (types_pb2.DT_FLOAT, "float"), (types_pb2.DT_DOUBLE, "double"), (types_pb2.DT_INT64, "int64"),
    (types_pb2.DT_STRING, "string"), (types_pb2.DT_BFLOAT16, "bfloat16"), (types_pb2.DT_HALF, "half"),
    (types_pb2.DT_VARIANT, "variant"), (types_pb2.DT_RESOURCE, "resource"), (types_pb2.DT_FLOAT_REF, "float_ref"),
    (types_pb2.DT_INVALID, "invalid"), (999, "unknown"),
])
def test_dtype_names_are_tensorflows_datatypestring(dtype, name):
    assert tensors.dtype_name(dtype) == name


def test_a_feed_of_the_wrong_type_is_tensorflows_message():
    error = tensors.error_from_dtype(0, types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE)
    assert (error.code.name, error.message) == ("INVALID_ARGUMENT", "Expects arg[0] to be float but double is provided")


def proto(dtype, shape, **fields):
    message = tensor_pb2.TensorProto(dtype=dtype)
    for size in shape:
        message.tensor_shape.dim.add(size=size)
    for field, values in fields.items():
        if field == "tensor_content":
            message.tensor_content = values
        else:
            getattr(message, field).extend(values)
    return message


def test_short_value_lists_are_filled_with_their_last_value_as_tensorflow_does():
    assert tensors.to_ndarray(proto(types_pb2.DT_FLOAT, [2, 3], float_val=[1.5, 2.5])).tolist() == [
        [1.5, 2.5, 2.5], [2.5, 2.5, 2.5]]
    assert tensors.to_ndarray(proto(types_pb2.DT_STRING, [4], string_val=[b"a", b"bc"])).tolist() == [
        b"a", b"bc", b"bc", b"bc"]
    assert tensors.to_ndarray(proto(types_pb2.DT_STRING, [2], string_val=[])).tolist() == [b"", b""]
    assert tensors.to_ndarray(proto(types_pb2.DT_INT32, [3], int_val=[])).tolist() == [0, 0, 0]
    assert tensors.to_ndarray(proto(types_pb2.DT_STRING, [1], string_val=[b"x", b"extra"])).tolist() == [b"x"]


@pytest.mark.parametrize("message, detail", [
    (proto(types_pb2.DT_STRING, [1000], string_val=[b"x" * 5_000_000]),
     "shape [1000] would take 5000032000 bytes, more than the 1073741824 a request tensor may take"),
    (proto(types_pb2.DT_STRING, [2, 3000], string_val=[b"x" * 1000, b"y" * 200_000]),  # the last fills the rest
     "shape [2,3000] would take 1199993000 bytes, more than the 1073741824 a request tensor may take"),
    (proto(types_pb2.DT_FLOAT, [2**28 + 1], float_val=[1.0]),
     "shape [268435457] would take 1073741828 bytes, more than the 1073741824 a request tensor may take"),
])
def test_a_tensor_past_the_limit_is_refused_with_its_size_before_anything_is_allocated(message, detail):
    with pytest.raises(tensors.ParseError) as caught:
        tensors.to_ndarray(message)
    assert (str(caught.value), caught.value.detail) == ("too large", detail)


def test_a_string_tensor_of_exactly_the_limit_is_built_and_one_byte_more_is_not():
    count = 1024
    size = tensors.MAX_TENSOR_BYTES // count - 32  # with 32 bytes a value of overhead: 2**30 to the byte
    array = tensors.to_ndarray(proto(types_pb2.DT_STRING, [count], string_val=[b"x" * size]))
    assert array.shape == (count,) and len(array[-1]) == size
    with pytest.raises(tensors.ParseError, match="^too large$"):
        tensors.to_ndarray(proto(types_pb2.DT_STRING, [count],
                                 string_val=[b"x" * (size + 1)] + [b"x" * size] * (count - 1)))


@pytest.mark.parametrize("message, reason", [
    (proto(types_pb2.DT_FLOAT, [2, 2], tensor_content=b"\0" * 17), "tensor_content size does not match the shape"),
    (proto(types_pb2.DT_FLOAT, [-1]), "negative dimension"),
    (proto(999, [1]), "unsupported dtype 999"),
    (proto(types_pb2.DT_FLOAT, [1] * 65), "rank 65 is more than 64"),
    (proto(types_pb2.DT_FLOAT, [2**32, 2**31]), "too many elements"),
])
def test_tensors_cpp_would_not_parse_are_refused(message, reason):
    with pytest.raises(tensors.ParseError, match=f"^{reason}$"):
        tensors.to_ndarray(message)


def test_contiguous_bytes_are_c_order_whatever_the_arrays_layout():
    array = np.arange(6, dtype=np.int16).reshape(2, 3).T  # Fortran order in memory
    data = tensors.contiguous_bytes(array)
    assert data.dtype == np.uint8 and data.shape == (12,)
    assert data.tobytes() == np.ascontiguousarray(array).tobytes()
    assert tensors.contiguous_bytes(np.float32(1.5)).tobytes() == np.float32(1.5).tobytes()  # a scalar too
