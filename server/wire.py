"""Predict on the wire without copying its large tensors.

gRPC Python hands the server a request as one `bytes` and sends the `bytes` the serializer returns.
Parsed by protobuf, a 256 MB tensor_content is copied into the message, and read back out as a new
`bytes`; an answer's 256 MB output is copied into the response message and again when it is
serialized. Here, for messages of LARGE bytes or more:

- `parse_predict_request` leaves each input's tensor_content in the received bytes (a memoryview)
  and lets protobuf parse the rest; `PredictRequestView.contents` maps input alias -> those bytes.
- `serialize_predict_response` writes the large outputs' values straight from their numpy arrays
  into the answer's bytes (one copy), after protobuf serializes the rest.

Both take the fast path only for a plain message (every map entry with one key and one value, one
tensor_content per tensor, no duplicate aliases); anything else is parsed or serialized by protobuf
as before, so its semantics and errors stay protobuf's. Wire format:
https://protobuf.dev/programming-guides/encoding/ (maps are repeated entry messages of key = 1,
value = 2).
"""

from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from . import tensors

LARGE = 1 << 20  # messages smaller than this go through protobuf as they are
_CONTENT_MIN = 4096  # a tensor_content smaller than this stays in the parsed message
# A plain message has few fields: a tensor with tensor_content holds dtype, shape, version and the content,
# and a request a spec, its inputs and a few output_filter names. Past these counts the message is
# protobuf's, so that scanning in Python never walks a million string_val entries (0.7 s for 300k).
_TENSOR_FIELDS_MAX = 8
_REQUEST_FIELDS_MAX = 256

_INPUTS = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].number
_OUTPUTS = predict_pb2.PredictResponse.DESCRIPTOR.fields_by_name["outputs"].number
_TENSOR_CONTENT = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name["tensor_content"].number
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Irregular(Exception):
    """Not a plain message: protobuf parses it (and gives the error, if it is one)."""


class PredictRequestView:
    """A parsed PredictRequest (`message`, its large tensor_content fields empty) and, per input
    alias, the tensor_content bytes left in the received buffer (`contents`). Reads anything else
    through to the message.

    Unless `keep` is set (the request log will want the whole request), `take` gives each content up
    as it is decoded, so the received bytes are freed before the model runs, not after the answer.
    """

    __slots__ = ("message", "contents", "keep")

    def __init__(self, message, contents):
        self.message = message
        self.contents = contents
        self.keep = False

    def take(self, alias):
        """The tensor_content of input `alias` (None if protobuf holds it), given up unless `keep`."""
        return self.contents.get(alias) if self.keep else self.contents.pop(alias, None)

    def full_message(self):
        """The whole PredictRequest, tensor_content copied back in, for the request log; None if a
        content was given up (the log was configured while the request ran: see `keep`)."""
        if not self.keep:
            return None
        message = predict_pb2.PredictRequest()
        message.CopyFrom(self.message)
        for alias, content in self.contents.items():
            message.inputs[alias].tensor_content = bytes(content)
        return message

    def __getattr__(self, name):
        return getattr(self.message, name)


class PredictResponseView:
    """A PredictResponse (`message`) and outputs kept as arrays until the answer is serialized:
    `large` is [(alias, array, as_tensor_content)]."""

    __slots__ = ("message", "large")

    def __init__(self, message, large):
        self.message = message
        self.large = large

    def __getattr__(self, name):
        return getattr(self.message, name)

    def full_message(self):
        """The whole PredictResponse, the large outputs written into it (for the request log)."""
        message = predict_pb2.PredictResponse()
        message.CopyFrom(self.message)
        for alias, array, as_tensor_content in self.large:
            tensors.write_proto(message.outputs[alias], array, as_tensor_content)
        return message


def full_message(message):
    """The protobuf message itself, whether given as one or as a view (None: see PredictRequestView)."""
    return message.full_message() if isinstance(message, (PredictRequestView, PredictResponseView)) \
        else message


def take_content(request, alias):
    """The tensor_content of input `alias` left in the received bytes, or None (protobuf holds it)."""
    return request.take(alias) if isinstance(request, PredictRequestView) else None


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
    """A PredictRequest (or, for a large plain one, a PredictRequestView) from its wire bytes; raises
    protobuf's DecodeError for bytes that do not parse."""
    if len(data) < LARGE:
        return predict_pb2.PredictRequest.FromString(data)
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
        return predict_pb2.PredictRequest.FromString(data)
    contents = {}
    for alias, content in found.items():
        name = alias.decode("utf-8")  # protobuf checked it: the key parsed as a proto3 string
        contents[name] = content
    return PredictRequestView(message, contents)


parse_predict_request.message_class = predict_pb2.PredictRequest


# -- writing -----------------------------------------------------------------------------------

def serialize_predict_response(response):
    """The wire bytes of a PredictResponse or PredictResponseView (or the bytes themselves, serialized
    already); a view's arrays are let go once written (the answer is sent after this, and must not be
    held twice)."""
    if isinstance(response, bytes):
        return response
    if not isinstance(response, PredictResponseView):
        return response.SerializeToString()
    parts = [response.message.SerializeToString()]
    for alias, array, as_tensor_content in response.large:
        dtype = tensors.dtype_of(array)
        head = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensors.shape_proto(array.shape))
        if as_tensor_content:
            number, payload = _TENSOR_CONTENT, tensors.contiguous_bytes(array)
        else:
            number, payload = tensors.packed_field(array, dtype)
        value_head = head.SerializeToString() + _key(number, _LENGTH) + tensors.varint(payload.nbytes)
        value_size = len(value_head) + payload.nbytes
        key = _length_field(1, alias.encode())
        entry_head = key + _key(2, _LENGTH) + tensors.varint(value_size)
        parts += [_key(_OUTPUTS, _LENGTH), tensors.varint(len(entry_head) + value_size), entry_head,
                  value_head, payload.data]
    response.large = ()
    return b"".join(parts)
