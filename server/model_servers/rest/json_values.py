"""JSON values as rapidjson sees them (the types and predicates json_tensor.cc uses), and the status errors the REST
code shares."""

import grpc
from tensorflow.core.framework import types_pb2

from ...util import status
from ...servables import tensors

INT32 = (-(1 << 31), (1 << 31) - 1)
UINT32 = (0, (1 << 32) - 1)
INT64 = (-(1 << 63), (1 << 63) - 1)
UINT64 = (0, (1 << 64) - 1)


def unimplemented(message):
    return status.ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def internal(message):
    return status.ServingError(grpc.StatusCode.INTERNAL, message)


def dtype_string(dtype):
    """TF's DataTypeString."""
    return "INVALID" if dtype == types_pb2.DT_INVALID else tensors.dtype_name(dtype)


def status_string(error):
    """absl::Status::ToString() of an error: its code's name, then the message."""
    return f"{error.code.name}: {error.message}"


# ---------------------------------------------------------------------------------------------
# JSON values as rapidjson sees them.
#
# The parsed document is made of None, bool, int, float, str, list and dict. rapidjson keeps an
# integer token as an integer only within [-2**63, 2**64 - 1] and stores larger ones as doubles,
# so an int outside that range counts as a double everywhere below.

def is_int_token(v):
    return type(v) is int and INT64[0] <= v <= UINT64[1]


def is_double(v):
    """rapidjson's IsDouble(): a number written with '.', an exponent, NaN/Infinity, or too large."""
    return type(v) is float or (type(v) is int and not is_int_token(v))


def is_number(v):
    return type(v) is int or type(v) is float


def in_range(v, bounds):
    return type(v) is int and bounds[0] <= v <= bounds[1]


def json_type(v):
    """json_tensor.cc JsonTypeString."""
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, str):
        return "String"
    return "Number"


class Object(dict):
    """A JSON object whose names repeat. Lookups see the first member of a name, as rapidjson's
    FindMember; `members` keeps every (name, value) in document order, as rapidjson's Value does
    (MemberCount() counts them all, Accept() writes them all)."""
    __slots__ = ("members",)


def object_members(v):
    """Every member of an object, repeated names included."""
    members = getattr(v, "members", None)
    return v.items() if members is None else members


def is_b64(v):
    """IsValBase64Object: an object {"b64": <string>} and nothing else (MemberCount() == 1)."""
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str) and len(object_members(v)) == 1


def to_bytes(s):
    return s.encode("utf-8", "surrogateescape")


def to_text(b):
    return b.decode("utf-8", "surrogateescape")
