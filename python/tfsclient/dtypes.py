"""TensorFlow's DataTypes without TensorFlow: their enums, names, aliases and numpy dtypes (ml_dtypes for
bfloat16, float8, int4...), and the conversions tf.as_dtype makes: `as_datatype_enum`, `dtype_name`,
`numpy_dtype`."""

import sys
import threading

import numpy as np

from .protos import types_pb2
from .text import one_line

REF = 100  # DT_FLOAT_REF == DT_FLOAT + 100 etc.

# (DataType enum name, TF dtype name, numpy dtype: a numpy type, a structured
# spec, an ml_dtypes attribute name, or None when numpy cannot hold it).
_SPECS = (
    ("DT_HALF", "float16", np.float16),
    ("DT_FLOAT", "float32", np.float32),
    ("DT_DOUBLE", "float64", np.float64),
    ("DT_INT32", "int32", np.int32),
    ("DT_UINT8", "uint8", np.uint8),
    ("DT_UINT16", "uint16", np.uint16),
    ("DT_UINT32", "uint32", np.uint32),
    ("DT_UINT64", "uint64", np.uint64),
    ("DT_INT16", "int16", np.int16),
    ("DT_INT8", "int8", np.int8),
    ("DT_STRING", "string", np.object_),
    ("DT_COMPLEX64", "complex64", np.complex64),
    ("DT_COMPLEX128", "complex128", np.complex128),
    ("DT_INT64", "int64", np.int64),
    ("DT_BOOL", "bool", np.bool_),
    ("DT_QINT8", "qint8", [("qint8", np.int8)]),
    ("DT_QUINT8", "quint8", [("quint8", np.uint8)]),
    ("DT_QINT16", "qint16", [("qint16", np.int16)]),
    ("DT_QUINT16", "quint16", [("quint16", np.uint16)]),
    ("DT_QINT32", "qint32", [("qint32", np.int32)]),
    ("DT_BFLOAT16", "bfloat16", "bfloat16"),
    ("DT_FLOAT8_E5M2", "float8_e5m2", "float8_e5m2"),
    ("DT_FLOAT8_E4M3FN", "float8_e4m3fn", "float8_e4m3fn"),
    ("DT_FLOAT8_E4M3FNUZ", "float8_e4m3fnuz", "float8_e4m3fnuz"),
    ("DT_FLOAT8_E4M3B11FNUZ", "float8_e4m3b11fnuz", "float8_e4m3b11fnuz"),
    ("DT_FLOAT8_E5M2FNUZ", "float8_e5m2fnuz", "float8_e5m2fnuz"),
    ("DT_FLOAT4_E2M1FN", "float4_e2m1fn", "float4_e2m1fn"),
    ("DT_INT4", "int4", "int4"),
    ("DT_UINT4", "uint4", "uint4"),
    ("DT_INT2", "int2", "int2"),
    ("DT_UINT2", "uint2", "uint2"),
    ("DT_RESOURCE", "resource", None),
    ("DT_VARIANT", "variant", None),
)

ENUM_NAME = {}      # enum -> TF name
ENUM_NP = {}        # enum -> numpy dtype, or None
NAME_ENUM = {}      # TF name / alias / DT_* name -> enum (refs included)
ML_TYPE_ENUM = {}   # ml_dtypes scalar type -> enum (filled by ml_types())
QUANT_NP_ENUM = {}  # structured numpy dtype -> quantized enum
_ML_SPECS = {}      # enum -> its ml_dtypes attribute name
for _dt_name, _name, _np in _SPECS:
    try:
        _enum = types_pb2.DataType.Value(_dt_name)
    except ValueError:  # an older types.proto without this dtype
        continue
    if isinstance(_np, str):
        _ML_SPECS[_enum], _np = _np, None  # its numpy dtype once ml_types() has run
    if isinstance(_np, list):
        QUANT_NP_ENUM[np.dtype(_np)] = _enum
    ENUM_NAME[_enum] = _name
    ENUM_NP[_enum] = None if _np is None else np.dtype(_np)
    NAME_ENUM[_name] = _enum
    NAME_ENUM[_name + "_ref"] = _enum + REF
    NAME_ENUM[_dt_name] = _enum
    NAME_ENUM[_dt_name + "_REF"] = _enum + REF
for _alias, _name in (("half", "float16"), ("float", "float32"), ("double", "float64")):
    NAME_ENUM[_alias] = NAME_ENUM[_name]
    NAME_ENUM[_alias + "_ref"] = NAME_ENUM[_name + "_ref"]
del _dt_name, _name, _np, _enum, _alias

_E = types_pb2.DataType.Value
DT_STRING, DT_BOOL = _E("DT_STRING"), _E("DT_BOOL")
DT_FLOAT, DT_DOUBLE, DT_HALF, DT_BFLOAT16 = _E("DT_FLOAT"), _E("DT_DOUBLE"), _E("DT_HALF"), _E("DT_BFLOAT16")
DT_INT32, DT_INT64 = _E("DT_INT32"), _E("DT_INT64")
DT_COMPLEX64, DT_COMPLEX128 = _E("DT_COMPLEX64"), _E("DT_COMPLEX128")

# numpy (kind, itemsize) -> enum for the plain numpy types.
_KIND_SIZE_ENUM = {
    ("f", 2): DT_HALF, ("f", 4): DT_FLOAT, ("f", 8): DT_DOUBLE,
    ("i", 1): _E("DT_INT8"), ("i", 2): _E("DT_INT16"), ("i", 4): DT_INT32, ("i", 8): DT_INT64,
    ("u", 1): _E("DT_UINT8"), ("u", 2): _E("DT_UINT16"), ("u", 4): _E("DT_UINT32"),
    ("u", 8): _E("DT_UINT64"),
    ("c", 8): DT_COMPLEX64, ("c", 16): DT_COMPLEX128,
}
del _E

# Python types tf.as_dtype knows (note: float means float32 there).
_PY_TYPE_ENUM = {float: DT_FLOAT, bool: DT_BOOL, object: DT_STRING, str: DT_STRING,
                 bytes: DT_STRING}


_ML_LOADED = threading.Event()  # set once ml_types() has filled the tables
_ML_LOCK = threading.Lock()  # threads decoding at once (--fleet) wait for the one filling the tables


def ml_types():
    """Fill ENUM_NP and ML_TYPE_ENUM for bfloat16, float8, int4... from ml_dtypes, once, when first needed:
    ml_dtypes takes 20-700 ms to import, and a script that never meets one of them does not pay it. No numpy
    array of those dtypes exists before ml_dtypes is imported, so np_enum only needs it after that."""
    if _ML_LOADED.is_set():
        return
    with _ML_LOCK:
        if not _ML_LOADED.is_set():
            try:
                import ml_dtypes
            except ImportError:  # bfloat16, float8, int4... are then unsupported
                ml_dtypes = None
            for enum, attr in _ML_SPECS.items():
                scalar = getattr(ml_dtypes, attr, None)
                if scalar is not None:
                    ML_TYPE_ENUM[scalar] = enum
                    ENUM_NP[enum] = np.dtype(scalar)
            _ML_LOADED.set()  # last: another thread sees it only with the tables filled


def ml_enum(enum):
    """Whether a DataType enum's numpy dtype comes from ml_dtypes."""
    return enum % REF in _ML_SPECS


def np_dtype_or_none(enum):
    """The numpy dtype of a DataType enum (refs included), ml_dtypes' tables filled first when it is one of theirs;
    None when numpy cannot hold it."""
    if ml_enum(enum):
        ml_types()
    return ENUM_NP.get(enum % REF)


# ---------------------------------------------------------------------------
# dtypes

def as_datatype_enum(dtype):
    """DataType enum (int) for a numpy dtype/type, TF name, enum int or tf.DType-like object."""
    enum = getattr(dtype, "as_datatype_enum", None)
    if enum is not None and not isinstance(dtype, (np.dtype, type)):
        return _check_enum(int(enum), dtype)
    if dtype is None or isinstance(dtype, (bool, np.bool_)):
        raise TypeError(f"Cannot convert {brief_repr(dtype)} to a TensorFlow DType.")
    if isinstance(dtype, (int, np.integer)):
        return _check_enum(int(dtype), dtype)
    if isinstance(dtype, str):
        enum = NAME_ENUM.get(dtype)
        if enum is not None:
            return enum
    elif isinstance(dtype, type) and dtype in _PY_TYPE_ENUM:
        return _PY_TYPE_ENUM[dtype]
    try:
        np_dtype = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError):  # numpy reads "i4,(" with Python's parser
        np_dtype = None
    enum = None if np_dtype is None else np_enum(np_dtype)
    if enum is None:
        raise TypeError(f"Cannot convert {brief_repr(dtype)} to a TensorFlow DType.")
    return enum


def brief_repr(value, limit=200):
    """repr(value) for an error message: one line (numpy prints arrays over several), at most `limit` chars."""
    return one_line(repr(value), limit, fold=True)


def _check_enum(enum, original):
    if enum % REF not in ENUM_NAME or not 0 < enum < 2 * REF:
        raise TypeError(f"Cannot convert {brief_repr(original)} to a TensorFlow DType "
                        "(not a known DataType value).")
    return enum


def np_enum(dt):
    """DataType enum of a numpy dtype, or None."""
    if "ml_dtypes" in sys.modules and not _ML_LOADED.is_set():
        ml_types()
    if dt.type in ML_TYPE_ENUM:
        return ML_TYPE_ENUM[dt.type]
    kind = dt.kind
    if kind in "USOT":
        return DT_STRING
    if kind == "b":
        return DT_BOOL
    if dt.names is not None:
        return QUANT_NP_ENUM.get(dt.newbyteorder("=") if dt.itemsize > 1 else dt)
    return _KIND_SIZE_ENUM.get((kind, dt.itemsize))


def dtype_name(enum):
    """TF name of a DataType enum: 1 -> "float32", 19 -> "float16", 107 -> "string_ref"."""
    enum = _check_enum(int(enum), enum)
    name = ENUM_NAME[enum % REF]
    return name + "_ref" if enum > REF else name


def numpy_dtype(enum):
    """numpy dtype for a DataType enum (object for strings); TypeError if numpy can't hold it."""
    enum = _check_enum(int(enum), enum)
    np_dtype = np_dtype_or_none(enum)
    if np_dtype is None:
        name = ENUM_NAME[enum % REF]
        hint = " (install ml_dtypes)" if ml_enum(enum) else ""
        raise TypeError(f"TensorFlow dtype {name} has no numpy equivalent{hint}.")
    return np_dtype
