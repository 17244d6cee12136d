"""Predict on the wire without copying its large tensors.

gRPC Python hands the server a request as one `bytes` and sends the `bytes` the serializer returns.
Parsed by protobuf, a 256 MB tensor_content is copied into the message, and read back out as a new
`bytes`; an answer's 256 MB output is copied into the response message and again when it is
serialized. Here, for messages of LARGE bytes or more:

- `parse_predict_request` leaves each input's tensor_content in the received bytes (a memoryview)
  and lets protobuf parse the rest: a SplitPredictRequest (servables/predict_io.py) whose `contents`
  maps input alias -> those bytes.
- `serialize_prediction` writes a Prediction's large outputs straight from their numpy arrays into the
  answer's bytes (one copy), after protobuf serializes the rest.

Both take the fast path only for a plain message (every map entry with one key and one value, one
tensor_content per tensor, no duplicate aliases); anything else is parsed or serialized by protobuf
as before, so its semantics and errors stay protobuf's. Wire format:
https://protobuf.dev/programming-guides/encoding/ (maps are repeated entry messages of key = 1,
value = 2).
"""

from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from ...servables import tensors
from ...servables.predict_io import Prediction, SplitPredictRequest

LARGE = 1 << 20  # messages smaller than this go through protobuf as they are
_CONTENT_MIN = 4096  # a tensor_content smaller than this stays in the parsed message
# A plain message has few fields: a tensor with tensor_content holds dtype, shape, version and the content,
# and a request a spec, its inputs and a few output_filter names. Past these counts the message is
# protobuf's, so that scanning in Python never walks a million string_val entries (seconds, in Python).
_TENSOR_FIELDS_MAX = 8
_REQUEST_FIELDS_MAX = 256

_INPUTS = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].number
_OUTPUTS = predict_pb2.PredictResponse.DESCRIPTOR.fields_by_name["outputs"].number
_TENSOR_CONTENT = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name["tensor_content"].number
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Irregular(Exception):
    """Not a plain message: protobuf parses it (and gives the error, if it is one)."""


def defers(array, as_tensor_content):
    """Whether a Predict output is written at serialization: large, numeric, and its wire form is
    its values' bytes (tensor_content, or a packed float/double/complex/bool field)."""
    if array.nbytes < LARGE or array.dtype.kind in "OSU":
        return False
    try:
        dtype = tensors.dtype_of(array)
    except KeyError:
        return False
    return as_tensor_content or tensors.packs_raw(dtype)


# -- reading -----------------------------------------------------------------------------------

def _read_varint(data, pos, end):
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Irregular
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data, start, end):
    """(number, wire type, field start, value start, value end) for each field in data[start:end]."""
    pos = start
    while pos < end:
        key, value_start = _read_varint(data, pos, end)
        number, kind = key >> 3, key & 7
        if kind == _VARINT:
            _, value_end = _read_varint(data, value_start, end)
        elif kind == _LENGTH:
            size, value_start = _read_varint(data, value_start, end)
            value_end = value_start + size
        elif kind == _FIXED64:
            value_end = value_start + 8
        elif kind == _FIXED32:
            value_end = value_start + 4
        else:  # groups and invalid wire types
            raise _Irregular
        if number == 0 or value_end > end:
            raise _Irregular
        yield number, kind, pos, value_start, value_end
        pos = value_end


def _length_field(number, body):
    return _key(number, _LENGTH) + tensors.varint(len(body)) + body


def _key(number, kind):
    return tensors.varint(number << 3 | kind)


def _split_entry(data, start, end):
    """An inputs map entry -> (its bytes without a large tensor_content, alias bytes, content view)."""
    key = value = None
    for number, kind, field_start, value_start, value_end in _fields(data, start, end):
        if kind != _LENGTH or number not in (1, 2) or (key if number == 1 else value) is not None:
            raise _Irregular
        if number == 1:
            key = (field_start, value_start, value_end)
        else:
            value = (value_start, value_end)
    if key is None or value is None:
        raise _Irregular
    content, kept = None, []
    for count, (number, kind, field_start, value_start, value_end) in enumerate(_fields(data, *value)):
        if count == _TENSOR_FIELDS_MAX:
            raise _Irregular
        if number == _TENSOR_CONTENT:
            if kind != _LENGTH or content is not None:
                raise _Irregular
            content = (value_start, value_end)
            if value_end - value_start >= _CONTENT_MIN:
                continue
        kept.append(data[field_start:value_end])
    alias = bytes(data[key[1]:key[2]])
    if content is None or content[1] - content[0] < _CONTENT_MIN:
        return bytes(data[start:end]), alias, None
    entry = bytes(data[key[0]:key[2]]) + _length_field(2, b"".join(kept))
    return entry, alias, data[content[0]:content[1]]


def parse_predict_request(data):
    """A SplitPredictRequest from a PredictRequest's wire bytes (a large plain one's tensor_contents held aside
    in `data`); raises
    protobuf's DecodeError for bytes that do not parse."""
    if len(data) < LARGE:
        return SplitPredictRequest(predict_pb2.PredictRequest.FromString(data))
    view = memoryview(data)
    try:
        parts, found, aliases = [], {}, set()
        for count, (number, kind, field_start, value_start, value_end) in enumerate(_fields(view, 0, len(view))):
            if count == _REQUEST_FIELDS_MAX:
                raise _Irregular
            if number != _INPUTS or kind != _LENGTH:
                parts.append(view[field_start:value_end])
                continue
            entry, alias, content = _split_entry(view, value_start, value_end)
            if alias in aliases:  # a later entry replaces an earlier one: protobuf's semantics
                raise _Irregular
            aliases.add(alias)
            parts.append(_length_field(_INPUTS, entry))
            if content is not None:
                found[alias] = content
        if not found:
            raise _Irregular
        message = predict_pb2.PredictRequest.FromString(b"".join(parts))
    except Exception:  # _Irregular, or a part protobuf refuses: protobuf reads the whole message
        return SplitPredictRequest(predict_pb2.PredictRequest.FromString(data))
    contents = {}
    for alias, content in found.items():
        name = alias.decode("utf-8")  # protobuf checked it: the key parsed as a proto3 string
        contents[name] = content
    return SplitPredictRequest(message, contents)


parse_predict_request.message_class = predict_pb2.PredictRequest


# -- writing -----------------------------------------------------------------------------------

def has_large_output(prediction):
    """Whether serializing `prediction` writes a large output's bytes (worth doing off an event loop)."""
    return any(defers(array, prediction.tensor_content) for _, array in prediction.outputs)


def serialize_prediction(prediction):
    """The wire bytes of a Prediction's PredictResponse (or of any message, or the bytes themselves,
    serialized already). Small outputs are written into the message; large ones straight from their arrays
    into the answer's bytes. The arrays are let go once written (the answer is sent after this, and must
    not be held twice)."""
    if isinstance(prediction, bytes):
        return prediction
    if not isinstance(prediction, Prediction):
        return prediction.SerializeToString()
    message, large = prediction.message, []
    for alias, array in prediction.outputs:
        if defers(array, prediction.tensor_content):
            large.append((alias, array))
        else:
            tensors.write_proto(message.outputs[alias], array, prediction.tensor_content)
    prediction.outputs = ()
    parts = [message.SerializeToString()]
    for alias, array in large:
        dtype = tensors.dtype_of(array)
        head = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensors.shape_proto(array.shape))
        if prediction.tensor_content:
            number, payload = _TENSOR_CONTENT, tensors.contiguous_bytes(array)
        else:
            number, payload = tensors.packed_field(array, dtype)
        value_head = head.SerializeToString() + _key(number, _LENGTH) + tensors.varint(payload.nbytes)
        value_size = len(value_head) + payload.nbytes
        key = _length_field(1, alias.encode())
        entry_head = key + _key(2, _LENGTH) + tensors.varint(value_size)
        parts += [_key(_OUTPUTS, _LENGTH), tensors.varint(len(entry_head) + value_size), entry_head,
                  value_head, payload.data]
    return b"".join(parts)
