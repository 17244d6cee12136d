"""Predict over REST: the request's "instances"/"inputs" into a PredictRequest, and the answer's
"predictions"/"outputs" (tensorflow_serving/util/json_tensor.cc)."""

import base64

from tensorflow.core.framework import tensor_pb2, types_pb2

from ...util import status
from ...util.proto_keys import has_key
from ...servables import tensors
from .b64 import decode_b64_object
from .json_reader import fill_signature, guard_depth
from .json_values import (INT32, INT64, UINT32, UINT64, Object, dtype_string, in_range, internal, is_b64, is_number,
                          json_type, status_string, to_bytes, to_text, unimplemented)
from .json_writer import PrettyWriter, decimal_strings, format_error, quote, value_string


# ---------------------------------------------------------------------------------------------
# Predict requests.

def _type_error(v, dtype):
    return status.invalid_argument(
        f"JSON Value: {value_string(v)} Type: {json_type(v)} is not of expected type: {dtype_string(dtype)}")


# json_tensor.cc AddValueToTensor takes any number for DT_FLOAT and DT_DOUBLE: val.GetFloat() /
# val.GetDouble(), with no precision check since TF Serving 2.5 (commit 57dac6cd removed
# IsLosslessDecimal and its "Cannot convert JSON value: ... without loss of precision." error).
# GetDouble() turns an integer into the nearest double; GetFloat() is static_cast<float> of that,
# so 1435774380 becomes 1435774336 and 1e39 becomes Infinity (g3doc/api_rest.md, "Floating Point
# Precision"; json_tensor_test.cc FloatTensorWithPrecisionLoss, FloatTensorThatExceedsMaxReturnsInf).
# Here float() is GetDouble(), and the float proto fields make the same double -> float cast.

def _float_value(v):
    if not is_number(v):
        raise _type_error(v, types_pb2.DT_FLOAT)
    return float(v)


def _double_value(v):
    if not is_number(v):
        raise _type_error(v, types_pb2.DT_DOUBLE)
    return float(v)


def _ranged(bounds, dtype):
    def convert(v):
        if not in_range(v, bounds):
            raise _type_error(v, dtype)
        return v
    return convert


def _string_value(v):
    if not isinstance(v, str):
        raise _type_error(v, types_pb2.DT_STRING)
    return to_bytes(v)


def _bool_value(v):
    if type(v) is not bool:
        raise _type_error(v, types_pb2.DT_BOOL)
    return v


# dtype -> (TensorProto field, converter of one JSON value): json_tensor.cc AddValueToTensor
_CONVERTERS = {
    types_pb2.DT_FLOAT: ("float_val", _float_value),
    types_pb2.DT_DOUBLE: ("double_val", _double_value),
    types_pb2.DT_INT32: ("int_val", _ranged(INT32, types_pb2.DT_INT32)),
    types_pb2.DT_INT16: ("int_val", _ranged(INT32, types_pb2.DT_INT16)),  # IsInt() only: no narrower check
    types_pb2.DT_INT8: ("int_val", _ranged(INT32, types_pb2.DT_INT8)),
    types_pb2.DT_UINT8: ("int_val", _ranged(INT32, types_pb2.DT_UINT8)),
    types_pb2.DT_STRING: ("string_val", _string_value),
    types_pb2.DT_INT64: ("int64_val", _ranged(INT64, types_pb2.DT_INT64)),
    types_pb2.DT_BOOL: ("bool_val", _bool_value),
    types_pb2.DT_UINT32: ("uint32_val", _ranged(UINT32, types_pb2.DT_UINT32)),
    types_pb2.DT_UINT64: ("uint64_val", _ranged(UINT64, types_pb2.DT_UINT64)),
}


_FLOATS = frozenset([float])
_CONTAINERS = frozenset([list, dict, Object])


def _dense_shape(v):
    """GetDenseTensorShape: list lengths following the first element at each level."""
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _fill_values(v, level, dtype, shape, out):
    """FillTensorProto: append v's values (checked against shape) to out; returns how many."""
    rank = len(shape)
    if not isinstance(v, list):
        if level != rank:
            raise status.invalid_argument(
                f"JSON Value: {value_string(v)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}")
        if isinstance(v, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(v, dtype)
            out.append(decode_b64_object(v))
        elif dtype in _CONVERTERS:
            out.append(_CONVERTERS[dtype][1](v))
        else:
            raise unimplemented(f"Conversion of JSON Value: {value_string(v)} to type: {dtype_string(dtype)}")
        return 1
    if level >= rank:
        raise status.invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise status.invalid_argument(
            f"Encountered list at unexpected size: {len(v)} at level: {level} expected size: {shape[level]}")
    if level == rank - 1 and dtype in _CONVERTERS:
        kinds = set(map(type, v))
        if kinds <= _FLOATS and (dtype == types_pb2.DT_FLOAT or dtype == types_pb2.DT_DOUBLE):
            out.extend(v)  # the innermost list of a float tensor, all doubles already: as they are, in one go
            return len(v)
        if not kinds & _CONTAINERS:
            convert = _CONVERTERS[dtype][1]
            out.extend(convert(x) for x in v)  # the innermost list: values only, in one go
            return len(v)
    count = 0
    for item in v:
        count += _fill_values(item, level + 1, dtype, shape, out)
    return count


def _make_tensor(dtype, shape, values):
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    if values:
        getattr(proto, _CONVERTERS[dtype][0] if dtype in _CONVERTERS else "string_val").extend(values)
    return proto


def _shape_string(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def _fill_from_instances(instances, infomap, request):
    """FillTensorMapFromInstancesList."""
    first = instances[0]
    if not isinstance(first, dict) and len(infomap) > 1:
        raise status.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as "
            "per tensorinfo_map")

    def is_object(v):
        return isinstance(v, dict) and not is_b64(v)

    objects = is_object(first)
    names = sorted(infomap)  # std::set<string> input_names
    values, sizes, shapes = {}, {}, {}

    def add_item(item, name):  # AddInstanceItem
        if not has_key(infomap, name):
            raise status.invalid_argument(f"JSON object: does not have named input: {name}")
        shape = _dense_shape(item)
        size = _fill_values(item, 0, infomap[name].dtype, shape, values.setdefault(name, []))
        if name not in sizes:
            sizes[name], shapes[name] = size, shape
        elif sizes[name] != size:
            raise status.invalid_argument(f"Expecting tensor size: {sizes[name]} but got: {size}")
        elif shapes[name] != shape:
            raise status.invalid_argument(
                f"Expecting shape {_shape_string(shapes[name])} but got: {_shape_string(shape)}")

    for index, element in enumerate(instances):
        if objects:
            if not is_object(element):
                raise status.invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    add_item(item, name)
                except status.ServingError as e:
                    raise status.invalid_argument(
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: {status_string(e)}") from None
            if set(element) != set(names):
                raise status.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{value_string(element)} keys must be equal to: {','.join(names)}")
        else:
            if is_object(element):
                raise status.invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(element, names[0])
            except status.ServingError as e:
                raise status.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: {status_string(e)}") from None
    for name in values:
        request.inputs[name].CopyFrom(
            _make_tensor(infomap[name].dtype, [len(instances)] + shapes[name], values[name]))


def _fill_from_inputs(value, infomap, request):
    """FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or is_b64(value):
        if len(infomap) > 1:
            raise status.invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as "
                "per tensorinfo_map")
        items = [(next(iter(infomap)), value)]
    else:
        items = []
        for name in sorted(infomap):  # TF Serving walks its (unordered) map; sorted here
            if name not in value:
                raise status.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
            items.append((name, value[name]))
    for name, item in items:
        dtype = infomap[name].dtype
        shape = _dense_shape(item)
        out = []
        _fill_values(item, 0, dtype, shape, out)
        request.inputs[name].CopyFrom(_make_tensor(dtype, shape, out))


@guard_depth
def fill_predict_request(document, signature_def, request) -> bool:
    """FillPredictRequestFromJson: the document's tensors into request.inputs, typed by the
    signature's inputs. Returns True for the columnar format ("inputs"), False for rows ("instances")."""
    fill_signature(document, request)
    infomap = signature_def.inputs
    if not infomap:
        name = request.model_spec.signature_name
        raise status.invalid_argument(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise format_error(
                document, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
        instances = document["instances"]
        if not isinstance(instances, list):
            raise format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(document, "No values in 'instances' array")
        _fill_from_instances(instances, infomap, request)
        return False
    if "inputs" in document:
        _fill_from_inputs(document["inputs"], infomap, request)
        return True
    raise status.invalid_argument("Missing 'inputs' or 'instances' key")


# ---------------------------------------------------------------------------------------------
# Predict responses.

def _leaves(name, proto):
    """The JSON text of every value of an output tensor, in order, or None if its type has no JSON form."""
    dtype = proto.dtype
    if dtype not in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT32, types_pb2.DT_INT16,
                     types_pb2.DT_INT8, types_pb2.DT_UINT8, types_pb2.DT_STRING, types_pb2.DT_INT64,
                     types_pb2.DT_BOOL, types_pb2.DT_UINT32, types_pb2.DT_UINT64):
        return None
    try:
        array = tensors.to_ndarray(proto)
    except tensors.ParseError as e:
        raise internal(f"Failed to read output tensor {name}: {e}") from None
    if dtype == types_pb2.DT_FLOAT or dtype == types_pb2.DT_DOUBLE:
        return decimal_strings(array, dtype == types_pb2.DT_FLOAT)
    if dtype == types_pb2.DT_BOOL:
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if dtype == types_pb2.DT_STRING:
        if name.endswith("_bytes"):  # bytes, as {"b64": ...}
            return [_B64(base64.b64encode(v).decode("ascii")) for v in array.ravel().tolist()]
        return [quote(to_text(v)) for v in array.ravel().tolist()]
    return [str(v) for v in array.ravel().tolist()]


class _B64(str):
    """A value written as the object {"b64": <this>}."""


def _write_leaf(writer, leaves, offset, dtype):
    if leaves is None:
        raise status.invalid_argument(f"Failed to write JSON value for tensor type: {dtype_string(dtype)}")
    leaf = leaves[offset]
    if type(leaf) is _B64:
        writer.start_object()
        writer.key("b64")
        writer.string(leaf)
        writer.end_object()
    else:
        writer.raw(leaf)


def _write_values(writer, leaves, shape, dim, offset, dtype):
    """AddTensorValues: the values from dimension `dim` on, starting at value `offset`; returns the next offset."""
    if dim > len(shape) - 1:
        _write_leaf(writer, leaves, offset, dtype)
        return offset + 1
    writer.start_array()
    if dim == len(shape) - 1:
        for _ in range(shape[dim]):
            _write_leaf(writer, leaves, offset, dtype)
            offset += 1
    else:
        for _ in range(shape[dim]):
            offset = _write_values(writer, leaves, shape, dim + 1, offset, dtype)
    writer.end_array()
    return offset


def predict_response(response, columnar: bool) -> str:
    """MakeJsonFromTensors: {"predictions": [...]} for rows, {"outputs": ...} for columns.

    Outputs are written in sorted name order (TF Serving walks its protobuf map, whose order is
    unspecified; in practice its answers come sorted)."""
    if not response.outputs:
        raise status.invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(response.outputs)
    protos = {name: response.outputs[name] for name in names}
    shapes = {name: [d.size for d in protos[name].tensor_shape.dim] for name in names}
    writer = PrettyWriter()
    if columnar:
        leaves = {name: _leaves(name, protos[name]) for name in names}
        writer.start_object()
        writer.key("outputs")
        objects = len(names) > 1
        if objects:
            writer.start_object()
        for name in names:
            if objects:
                writer.key(name)
            _write_values(writer, leaves[name], shapes[name], 0, 0, protos[name].dtype)
        if objects:
            writer.end_object()
        writer.end_object()
        return writer.text()
    batch_size = -1  # a batch of 0 is an answer too: {"predictions": []} (MakeRowFormatJsonFromTensors)
    for name in names:
        shape = shapes[name]
        if not shape:
            raise status.invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and batch_size != shape[0]:
            raise status.invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch_size}")
        batch_size = shape[0]
    leaves = {name: _leaves(name, protos[name]) for name in names}
    offsets = dict.fromkeys(names, 0)
    objects = len(names) > 1
    writer.start_object()
    writer.key("predictions")
    writer.start_array()
    for _ in range(batch_size):
        if objects:
            writer.start_object()
        writer.single_line_arrays = True
        for name in names:
            if objects:
                writer.key(name)
            offsets[name] = _write_values(writer, leaves[name], shapes[name], 1, offsets[name], protos[name].dtype)
        writer.single_line_arrays = False
        if objects:
            writer.end_object()
    writer.end_array()
    writer.end_object()
    return writer.text()
