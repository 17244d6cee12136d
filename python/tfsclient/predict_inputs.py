"""Request inputs from the command line: -i NAME=JSON, NAME=@file.npy, @file.json, @file.npz; --dtype.

Inputs are checked against the model's signature (dtype, aliases) before anything is sent.
"""

import json
import math
import os
import threading
import tokenize
import warnings
import zipfile
import zlib

import numpy as np

from . import cli, files, protos
from .codec import as_datatype_enum, bad_code_points, make_tensor_proto, numpy_dtype
from .errors import InputError
from .text import one_line

GUIDE_INPUT = {"input_1": np.array([[1.0, 2.0], [1.0, 3.0]], dtype=np.float32)}
_MAX_DIMS = 32  # numpy 1.x's limit (2.x's is 64): deeper JSON gets a clear error rather than numpy's
_MAX_BYTES = 1 << 31  # a tensor cannot be larger in a request (protobuf's 2 GB limit)
_NPY_MAGIC = b"\x93NUMPY"


def _sendable(dtype):
    """Whether a TensorProto can carry arrays of this numpy dtype."""
    try:
        as_datatype_enum(dtype)
    except TypeError:
        return False
    return True


def _dtype(name):
    if name in ("string", "bytes", "str"):
        return np.dtype(object)
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    try:
        with warnings.catch_warnings():  # a deprecated spelling must not add a line to stderr
            warnings.simplefilter("ignore")
            dtype = np.dtype(name)
    except (TypeError, ValueError, SyntaxError):  # numpy reads "i4,(" with Python's parser: SyntaxError
        dtype = None
    if dtype is None or dtype.kind not in "biufc" or not _sendable(dtype):  # (float128 is not)
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


def _json_leaves(name, value):
    """The values of nested JSON lists, in order, checked; iterative, so any depth is an InputError."""
    leaves, stack = [], [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth >= _MAX_DIMS:
                raise InputError(f"input {name!r}: the JSON is nested more than {_MAX_DIMS} levels deep")
            stack.extend((v, depth + 1) for v in reversed(item))
        elif isinstance(item, (bool, float)):
            leaves.append(item)
        elif isinstance(item, int):
            if not -2**63 <= item < 2**63:
                raise InputError(f"input {name!r}: {one_line(str(item), 40)} does not fit in int64 "
                                 "(write it with a decimal point to send it as a float)")
            leaves.append(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800" in JSON: a lone surrogate has no UTF-8
                raise InputError(f"input {name!r}: the string {item!r} is not valid Unicode") from None
            leaves.append(item)
        else:
            found = "null" if item is None else "an object" if isinstance(item, dict) else type(item).__name__
            raise InputError(f"input {name!r}: JSON values must be numbers, strings or booleans in nested lists, "
                             f"not {found}")
    return leaves


def _from_json_value(name, value):
    """JSON values become arrays the way tf.make_tensor_proto types Python lists."""
    leaves = _json_leaves(name, value)
    try:
        array = np.array(value)
    except ValueError:
        raise InputError(f"input {name!r}: the JSON is not a rectangular array (rows of different lengths?)") from None
    if array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # beyond float32 is inf, as TF converts it (1e39 -> inf)
            return array.astype(np.float32)
    if array.dtype.kind in "iu":
        fits = array.size == 0 or (array.min() >= -2**31 and array.max() < 2**31)
        return array.astype(np.int32) if fits else array.astype(np.int64)
    if array.dtype.kind == "U":
        # From the JSON's own strings, not numpy's: numpy drops trailing NULs ("a\u0000" -> "a").
        encoded = np.empty(len(leaves), dtype=object)
        encoded[:] = [(v if isinstance(v, str) else str(v)).encode("utf-8") for v in leaves]
        return encoded.reshape(array.shape)
    if array.dtype.kind == "b":
        return array
    raise InputError(f"input {name!r}: JSON values must be numbers, strings or booleans in nested lists")


def _read_npy(f, size, where):
    """The array in the .npy stream f of `size` bytes; never unpickles, never allocates more than f holds."""
    from numpy.lib import format as npy_format

    start = f.read(8)
    if start[:6] != _NPY_MAGIC or len(start) < 8:
        raise InputError(f"{where} is not a .npy file (it does not start with \\x93NUMPY)")
    version = (start[6], start[7])
    if version not in ((1, 0), (2, 0)):  # 3.0 only adds UTF-8 names of structured dtypes: not sendable anyway
        raise InputError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    try:
        with warnings.catch_warnings():  # (a deprecated descr such as "a" must not add a line to stderr)
            warnings.simplefilter("ignore")
            shape, fortran_order, dtype = read_header(f)  # a dict literal, parsed with literal_eval
    except (ValueError, TypeError, SyntaxError, RecursionError, tokenize.TokenError) as e:
        # (numpy re-tokenizes version 1.0 headers: "{" alone is a TokenError, not its ValueError)
        raise InputError(f"{where}: not a valid .npy header ({' '.join(str(e).split())[:200]})") from None
    if dtype.hasobject:
        raise InputError(f"{where} holds Python objects, which only pickle could load: not loaded "
                         "(save strings as a numpy string array instead)")
    if not _sendable(dtype):
        raise InputError(f"{where} holds {dtype} values, which a request cannot carry "
                         "(use e.g. float32, int64, bool or strings)")
    if any(d < 0 for d in shape):
        raise InputError(f"{where}: its header has a negative dimension {shape}")
    if dtype.itemsize == 0:  # S0/U0: numpy would make S1 arrays of any size out of no data
        raise InputError(f"{where}: its header has a dtype of size 0 ({dtype})")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes >= _MAX_BYTES:
        raise InputError(f"{where} holds {nbytes} bytes: a request tensor is at most 2 GB")
    available = size - f.tell()
    if nbytes > available:
        raise InputError(f"{where} is truncated: its header says {shape} {dtype} ({nbytes} bytes), "
                         f"but {max(available, 0)} bytes follow")
    data = f.read(nbytes)
    if len(data) < nbytes:
        raise InputError(f"{where} is truncated: {len(data)} of {nbytes} bytes of data")
    try:
        array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    except ValueError:  # no data, but other dimensions too large for numpy: (0, 1, 2**60)
        raise InputError(f"{where}: its header has a shape numpy cannot hold {shape}") from None
    if dtype.kind == "U" and bad_code_points(array):
        raise InputError(f"{where} holds text that is not valid Unicode "
                         "(surrogates or code points beyond U+10FFFF)")
    return array.view(np.uint8).astype(bool) if dtype.kind == "b" else array  # (a bool byte 2 is True: made 1)


# What a corrupt zip makes zipfile raise, besides BadZipFile: zlib.error (bad deflate data), EOFError
# (cut short), NotImplementedError (a compression method it lacks), RuntimeError (an encrypted member).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError, ValueError)


def _load_npz(path, what, max_size=None):
    """{name: array} from an .npz file, member by member through _read_npy; refused before anything is
    unpacked if its members add up to more than the limit (a zip of zeros unpacks to 1000 times its size)."""
    arrays = {}
    with files.open_input(path, what, "npz", max_size) as f:
        try:
            with zipfile.ZipFile(f) as archive:
                members = archive.infolist()
                unpacked, limit = sum(info.file_size for info in members), files.limit_of("npz", max_size)
                if unpacked > limit:
                    raise files.too_large("npz", unpacked, limit, f"{what}: {path}", unpacked=True)
                for info in members:
                    if not info.filename.endswith(".npy"):
                        raise InputError(f"{what}: {path} holds {info.filename!r}, which is not an array (.npy)")
                    with archive.open(info) as member:  # (zipfile reads no more than the file_size it declares)
                        where = f"{what}: {info.filename}"
                        arrays[info.filename[:-4]] = _read_npy(member, info.file_size, where)
        except _ZIP_ERRORS as e:
            message = e
            if isinstance(e, zipfile.BadZipFile) and "not a zip" in str(e):
                message = "not an .npz file (not a zip archive, or cut short)"
            raise InputError(f"{what}: cannot read {path}: {message}") from None
    return arrays


def _load(path, what, max_size=None):
    if not os.path.exists(path):
        raise InputError(f"{what}: file not found: {path}")
    if path.endswith(".npz"):
        return _load_npz(path, what, max_size)
    if path.endswith(".npy"):
        with files.open_input(path, what, "npy", max_size) as f:
            try:
                return _read_npy(f, os.fstat(f.fileno()).st_size, f"{what}: {path}")
            except OSError as e:
                raise InputError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    text = files.read_text(path, what, "json", max_size)
    try:
        return files.load_json(text)
    except files.DuplicateKey as e:
        raise InputError(f"{what}: {path} names {e.args[0]!r} twice in one object: give each input once") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{what}: {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(f"{what}: the JSON in {path} is nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise InputError(f"{what}: cannot read {path}: {e}") from None


def parse_inputs(specs, max_size=None):
    """{alias: (array, from_json)} from the -i specs, in the order given; an input given twice is refused.

    max_size: --max-file-size, the limit for the files read (None: each kind's default, files.LIMITS).
    """
    found = {}

    def add(name, value, spec):
        if name in found:
            raise InputError(f"input {name!r} is given twice (again by -i {one_line(spec, 100)}): give each input once")
        found[name] = value

    for spec in specs:
        if spec.startswith("@"):
            data = _load(spec[1:], f"-i {spec}", max_size)
            if spec.endswith(".npz"):
                for k, v in data.items():
                    add(k, (v, False), spec)
            elif isinstance(data, np.ndarray):
                raise InputError(f"-i {spec}: a .npy file holds one array: give its input name, -i NAME={spec}")
            elif isinstance(data, dict):
                for k, v in data.items():
                    add(k, (_from_json_value(k, v), True), spec)
            else:
                raise InputError(f"-i {spec}: a JSON file must hold an object of input names to arrays, "
                                 'e.g. {"input_1": [[1.0, 2.0]]}')
            continue
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise InputError(f"-i wants NAME=JSON, NAME=@file.npy, @file.json or @file.npz, not {spec!r}")
        if value.startswith("@"):
            data = _load(value[1:], f"-i {name}", max_size)
            if isinstance(data, dict):
                raise InputError(f"-i {spec}: {value[1:]} holds several arrays; give it as -i {value}")
            add(name, (data, False) if isinstance(data, np.ndarray) else (_from_json_value(name, data), True), spec)
            continue
        try:
            add(name, (_from_json_value(name, json.loads(value)), True), spec)
        except json.JSONDecodeError as e:
            raise InputError(f"-i {name}: not valid JSON ({e.msg} at column {e.colno}): "
                             f"{one_line(value, 200)}") from None
        except RecursionError:
            raise InputError(f"-i {name}: the JSON is nested too deeply") from None
        except ValueError as e:  # an integer of more than 4300 digits (Python's int() limit)
            raise InputError(f"-i {name}: {one_line(str(e), 100)}") from None
    return found


def _not_a_number(array, want):
    """The first value of a JSON text array that does not convert to the numeric dtype `want`, or None (all do, or
    `want` is not numeric). [[1, "a"]] is text to numpy: "a" is what to name, not the --dtype that fails on it."""
    if array.dtype.kind not in "USO" or np.dtype(want).kind not in "biufc":
        return None
    try:
        array.astype(want)
        return None
    except (TypeError, ValueError, OverflowError):
        pass
    for value in array.ravel():
        try:
            np.asarray(value).astype(want)
        except (TypeError, ValueError, OverflowError):
            return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    return None


def check_against_signature(inputs, dtypes, signature, model):
    """Arrays typed for the model: JSON values are converted, files must match (or use --dtype)."""
    wanted = {alias: info.dtype for alias, info in signature.inputs.items()}
    unknown = [a for a in inputs if a not in wanted]
    if unknown:
        raise InputError(f"model {model} has no input {unknown[0]!r}; "
                         f"its inputs: {', '.join(sorted(wanted)) or 'none'}")
    missing = [a for a in wanted if a not in inputs]
    if missing:
        raise InputError(f"model {model} needs input {missing[0]!r} too: add -i {missing[0]}=...")
    arrays = {}
    for alias, (array, from_json) in inputs.items():
        if alias in dtypes:
            arrays[alias] = array
            continue
        try:
            want = numpy_dtype(wanted[alias])
        except TypeError:  # a dtype numpy cannot hold (variant, resource): the server will judge
            want = None
        if want is None or np.dtype(want) == array.dtype:
            arrays[alias] = array
        elif from_json and array.size == 0:  # [] fits any type: an empty batch of strings too
            arrays[alias] = array.astype(want)
        elif from_json and _safe_cast(array, np.dtype(want)):
            arrays[alias] = fitting_cast(alias, array, want)
        else:
            wanted_name = _name(np.dtype(want))
            text = _not_a_number(array, want) if from_json else None
            if text is not None:  # --dtype would fail on it too: say what to write instead
                raise InputError(f"input {alias!r} holds the text {text!r} where model {model} expects "
                                 f"{wanted_name}: write every value as a JSON number")
            if _is_strings(want) and array.dtype.kind in "biufc":  # (--dtype string refuses numbers too)
                raise InputError(f"input {alias!r} holds numbers where model {model} expects strings: write them "
                                 'as JSON strings, e.g. ["1", "2"]')
            raise InputError(f"input {alias!r} is {_name(array.dtype)} but model {model} expects "
                             f"{wanted_name}: convert it with --dtype {alias}={wanted_name}")
    return arrays


def _is_strings(dtype):
    """Whether a numpy dtype (or `object`) is the object dtype that holds strings here."""
    return np.dtype(dtype).kind == "O"


def _safe_cast(array, dtype):
    if _is_strings(array.dtype) or _is_strings(dtype):
        return False
    return np.can_cast(array.dtype, dtype, casting="same_kind") or (array.dtype.kind in "iu" and dtype.kind in "fc")


def fitting_cast(alias, array, dtype):
    """`array` as `dtype`; InputError when a value does not fit, naming the input, the value and the range:
    an integer outside an integer dtype's range (numpy would wrap it around: 300 as int8 is 44, -1 as uint8 is
    255), or a finite number beyond a float dtype's largest (it would become inf; a float16 holds 65504 at most)."""
    array, dtype = np.asarray(array), np.dtype(dtype)
    if array.size and array.dtype.kind in "iuf" and dtype.kind in "iuf":
        values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if values.size:
            low, high = values.min(), values.max()
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                bad = low if low < info.min else high if high > info.max else None
                limits = f"{info.min} to {info.max}"
            else:
                info = np.finfo(dtype)
                largest = float(info.max)
                bad = low if float(low) < -largest else high if float(high) > largest else None
                limits = f"{-largest:g} to {largest:g}"
            if bad is not None:
                shown = str(bad.item() if hasattr(bad, "item") else bad)
                raise InputError(f"input {alias!r}: {shown} does not fit in {_name(dtype)} ({limits})")
    return array.astype(dtype)


def _name(dtype):
    return "string" if _is_strings(dtype) else str(dtype)


def apply_dtypes(inputs, dtypes):
    out = {}
    for alias, (array, from_json) in inputs.items():
        if alias in dtypes:
            if _is_strings(dtypes[alias]) and np.asarray(array).dtype.kind not in "OSU":
                # as tf.make_tensor_proto: numbers are not turned into text
                raise InputError(f"input {alias!r}: numbers cannot be sent as strings; give strings, "
                                 'e.g. ["1.5"]')
            try:
                with np.errstate(invalid="raise"):  # NaN or inf to an int: an error, not garbage
                    array = fitting_cast(alias, array, dtypes[alias])
            except (ValueError, TypeError, OverflowError, FloatingPointError) as e:
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
    cli.add_file_limit(parser)


_given_lock = threading.Lock()
_given = {}  # the flags' inputs -> (dtypes, arrays): read once a command


def given_inputs(args):
    """(dtypes, {alias: (array, from_json)}) of -i and --dtype, read once for the command: --fleet's replicas share
    one read of the files (each read them again: RSS 350 -> 643 MB for 1 -> 2 replicas of a large .npy). A failed
    read is not kept: each replica that tries says why."""
    max_size = getattr(args, "max_file_size", None)

    def read():
        dtypes = parse_dtypes(args.dtype)
        return dtypes, apply_dtypes(parse_inputs(args.input, max_size), dtypes)

    if not getattr(args, "fleet", False):  # one server: nothing to share, and the arrays go once the request is made
        return read()
    key = (tuple(args.input), tuple(args.dtype or ()), max_size)
    with _given_lock:  # the replicas' threads: one reads, the others wait for its arrays
        if key not in _given:
            found = read()
            _given.clear()  # only the latest command's inputs are kept
            _given[key] = found
        return _given[key]


def predict_request(args, client, default_output_filter=()):
    """The PredictRequest the flags describe; inputs checked against the model's signature first."""
    request = protos.predict_pb2.PredictRequest()
    cli.set_model_spec(request.model_spec, args, args.signature)
    if args.input:
        dtypes, arrays = given_inputs(args)
        signature = signature_of(client, args)
        if signature is not None:
            arrays = check_against_signature(arrays, dtypes, signature, args.model)
        else:
            arrays = {alias: array for alias, (array, _) in arrays.items()}
    else:
        if args.dtype:
            raise InputError("--dtype applies to inputs given with -i")
        arrays = GUIDE_INPUT
    for alias, array in arrays.items():
        try:
            request.inputs[alias].CopyFrom(make_tensor_proto(array))
        except (TypeError, ValueError) as e:  # the codec's errors; e.g. an array over 2 GB
            raise InputError(f"input {alias!r}: {one_line(e, fold=True)}") from None
    request.output_filter.extend(args.output_filter or default_output_filter)
    return request


def signature_of(client, args):
    """The SignatureDef the request will run, from GetModelMetadata (None if the server has no such signature)."""
    metadata_request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    cli.set_model_spec(metadata_request.model_spec, args)
    metadata_request.metadata_field.append("signature_def")
    response = client.GetModelMetadata(metadata_request, timeout=cli.time_left(args))
    signatures = protos.get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return signatures.signature_def.get(args.signature or "serving_default")
