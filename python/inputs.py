"""Request inputs from the command line: -i NAME=JSON, NAME=@file.npy, @file.json, @file.npz; --dtype.

Inputs are checked against the model's signature (dtype, aliases) before anything is sent.
"""

import json
import os

import numpy as np

import common
from common import InputError
from codec import make_tensor_proto, numpy_dtype

GUIDE_INPUT = {"input_1": np.array([[1.0, 2.0], [1.0, 3.0]], dtype=np.float32)}


def _dtype(name):
    if name in ("string", "bytes", "str"):
        return np.dtype(object)
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    try:
        dtype = np.dtype(name)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biufc":
        raise InputError(f"unknown dtype {name!r}: use e.g. float32, float64, int32, int64, bool, string")
    return dtype


def parse_dtypes(specs):
    dtypes = {}
    for spec in specs or ():
        name, sep, dtype = spec.partition("=")
        if not sep or not name:
            raise InputError(f"--dtype wants NAME=DTYPE, e.g. input_1=float32, not {spec!r}")
        dtypes[name] = _dtype(dtype)
    return dtypes


def _from_json_value(name, value):
    """JSON values become arrays the way tf.make_tensor_proto types Python lists."""
    try:
        array = np.array(value)
    except ValueError:
        raise InputError(f"input {name!r}: the JSON is not a rectangular array (rows of different lengths?)") from None
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        return array.astype(np.int32) if np.all(np.abs(array) < 2**31) else array.astype(np.int64)
    if array.dtype.kind == "U":
        return np.vectorize(lambda s: s.encode(), otypes=[object])(array)
    if array.dtype.kind == "b":
        return array
    raise InputError(f"input {name!r}: JSON values must be numbers, strings or booleans in nested lists")


def _load(path, what):
    if not os.path.exists(path):
        raise InputError(f"{what}: file not found: {path}")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{what}: {path} is not valid JSON: {e}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{what}: cannot read {path}: {e}") from None


def parse_inputs(specs):
    """{alias: (array, from_json)} from the -i specs, in the order given."""
    found = {}
    for spec in specs:
        if spec.startswith("@"):
            data = _load(spec[1:], f"-i {spec}")
            if spec.endswith(".npz"):
                found.update({k: (v, False) for k, v in data.items()})
            elif isinstance(data, dict):
                found.update({k: (_from_json_value(k, v), True) for k, v in data.items()})
            else:
                raise InputError(f"-i {spec}: a JSON file must hold an object of input names to arrays, "
                                 'e.g. {"input_1": [[1.0, 2.0]]}')
            continue
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise InputError(f"-i wants NAME=JSON, NAME=@file.npy, @file.json or @file.npz, not {spec!r}")
        if value.startswith("@"):
            data = _load(value[1:], f"-i {name}")
            if isinstance(data, dict):
                raise InputError(f"-i {spec}: {value[1:]} holds several arrays; give it as -i {value}")
            found[name] = (data, False) if isinstance(data, np.ndarray) else (_from_json_value(name, data), True)
            continue
        try:
            found[name] = (_from_json_value(name, json.loads(value)), True)
        except json.JSONDecodeError as e:
            raise InputError(f"-i {name}: not valid JSON ({e.msg} at column {e.colno}): {value}") from None
    return found


def check_against_signature(inputs, dtypes, signature, model):
    """Arrays typed for the model: JSON values are converted, files must match (or use --dtype)."""
    wanted = {alias: info.dtype for alias, info in signature.inputs.items()}
    unknown = [a for a in inputs if a not in wanted]
    if unknown:
        raise InputError(f"model {model} has no input {unknown[0]!r}; its inputs: {', '.join(sorted(wanted)) or 'none'}")
    missing = [a for a in wanted if a not in inputs]
    if missing:
        raise InputError(f"model {model} needs input {missing[0]!r} too: add -i {missing[0]}=...")
    arrays = {}
    for alias, (array, from_json) in inputs.items():
        if alias in dtypes:
            arrays[alias] = array
            continue
        want = numpy_dtype(wanted[alias])
        if want is None or np.dtype(want) == array.dtype:
            arrays[alias] = array
        elif from_json and _safe_cast(array, np.dtype(want)):
            arrays[alias] = array.astype(want)
        else:
            raise InputError(f"input {alias!r} is {_name(array.dtype)} but model {model} expects "
                             f"{_name(np.dtype(want))}: convert it with --dtype {alias}={_name(np.dtype(want))}")
    return arrays


def _safe_cast(array, dtype):
    if array.dtype == object or dtype == object:
        return False
    return np.can_cast(array.dtype, dtype, casting="same_kind") or (array.dtype.kind in "iu" and dtype.kind in "fc")


def _name(dtype):
    return "string" if dtype == object else str(dtype)


def apply_dtypes(inputs, dtypes):
    out = {}
    for alias, (array, from_json) in inputs.items():
        if alias in dtypes:
            try:
                array = np.asarray(array).astype(dtypes[alias])
            except (ValueError, TypeError) as e:
                raise InputError(f"input {alias!r}: cannot convert to {_name(dtypes[alias])}: {e}") from None
        out[alias] = (array, from_json)
    missing = [a for a in dtypes if a not in out]
    if missing:
        raise InputError(f"--dtype {missing[0]}=...: there is no input {missing[0]!r} (give it with -i)")
    return out


def add_arguments(parser):
    parser.add_argument("-i", "--input", action="append", metavar="SPEC", default=[],
                        help="an input: NAME=JSON (e.g. 'input_1=[[1.0, 2.0]]'), NAME=@file.npy, @file.json "
                             "(an object of names to arrays) or @file.npz; repeat for several inputs "
                             "(default: the guide's input_1=[[1.0, 2.0], [1.0, 3.0]] as float32)")
    parser.add_argument("--dtype", action="append", metavar="NAME=DTYPE", default=[],
                        help="send input NAME as DTYPE (float32, float64, int32, int64, bool, string, ...)")
    parser.add_argument("--output-filter", action="append", metavar="NAME", default=[],
                        help="return only this output (repeatable; default: all outputs)")


def predict_request(args, prediction_stub, default_output_filter=()):
    """The PredictRequest the flags describe; inputs checked against the model's signature first."""
    request = common.protos.predict_pb2.PredictRequest()
    common.set_model_spec(request.model_spec, args, args.signature)
    if args.input:
        dtypes = parse_dtypes(args.dtype)
        arrays = apply_dtypes(parse_inputs(args.input), dtypes)
        signature = _signature(prediction_stub, args)
        if signature is not None:
            arrays = check_against_signature(arrays, dtypes, signature, args.model)
        else:
            arrays = {alias: array for alias, (array, _) in arrays.items()}
    else:
        if args.dtype:
            raise InputError("--dtype applies to inputs given with -i")
        arrays = GUIDE_INPUT
    for alias, array in arrays.items():
        request.inputs[alias].CopyFrom(make_tensor_proto(array))
    request.output_filter.extend(args.output_filter or default_output_filter)
    return request


def _signature(prediction_stub, args):
    """The SignatureDef the request will run, from GetModelMetadata (None if the server has no such signature)."""
    metadata_request = common.protos.get_model_metadata_pb2.GetModelMetadataRequest()
    common.set_model_spec(metadata_request.model_spec, args)
    metadata_request.metadata_field.append("signature_def")
    response = prediction_stub.GetModelMetadata(metadata_request, timeout=args.timeout)
    signatures = common.protos.get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return signatures.signature_def.get(args.signature or "serving_default")
