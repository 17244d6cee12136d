"""JSON <-> protobuf for the REST API, byte for byte as TF Serving writes it.

TF Serving parses request bodies with rapidjson (kParseNanAndInfFlag) and writes every answer
with rapidjson's PrettyWriter (tensorflow_serving/util/json_tensor.cc); the metadata answer is
protobuf's JSON printer output concatenated by hand (model_servers/http_rest_api_util.cc).
This module reproduces both: the messages (word for word, typos included), the number formats
and the whitespace.

Strings: JSON text is bytes to rapidjson, which does not validate UTF-8. Here a JSON string is a
Python str decoded with "surrogateescape", so invalid bytes survive as U+DC80..U+DCFF and
`text.encode("utf-8", "surrogateescape")` gives back TF Serving's exact bytes; every str this
module returns follows that convention (it is plain UTF-8 text whenever the bytes were).
"""

import base64
import binascii
import json
import math
import re

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import feature_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from . import status, tensors

_INT32 = (-(1 << 31), (1 << 31) - 1)
_UINT32 = (0, (1 << 32) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)
_FLT_MAX = float(np.finfo(np.float32).max)
_RAPIDJSON_FLT_MAX = 3.4028234e38  # the bound of rapidjson's Value::IsFloat()


def _unimplemented(message):
    return status.ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def _internal(message):
    return status.ServingError(grpc.StatusCode.INTERNAL, message)


def _dtype_string(dtype):
    """TF's DataTypeString."""
    return "INVALID" if dtype == types_pb2.DT_INVALID else tensors.dtype_name(dtype)


def _status_string(error):
    """absl::Status::ToString() of an error: its code's name, then the message."""
    return f"{error.code.name}: {error.message}"


# ---------------------------------------------------------------------------------------------
# JSON values as rapidjson sees them.
#
# The parsed document is made of None, bool, int, float, str, list and dict. rapidjson keeps an
# integer token as an integer only within [-2**63, 2**64 - 1] and stores larger ones as doubles,
# so an int outside that range counts as a double everywhere below.

def _is_int_token(v):
    return type(v) is int and _INT64[0] <= v <= _UINT64[1]


def _is_double(v):
    """rapidjson's IsDouble(): a number written with '.', an exponent, NaN/Infinity, or too large."""
    return type(v) is float or (type(v) is int and not _is_int_token(v))


def _is_number(v):
    return type(v) is int or type(v) is float


def _in(v, bounds):
    return type(v) is int and bounds[0] <= v <= bounds[1]


def _json_type(v):
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


def _is_b64(v):
    """An object {"b64": <string>} and nothing else."""
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def _to_bytes(s):
    return s.encode("utf-8", "surrogateescape")


def _to_text(b):
    return b.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# Number formatting.

def _decimal(value, is_float):
    """json_tensor.cc WriteDecimal: absl::StrCat's 6 digits if they round-trip, else max_digits10,
    and ".0" when the result has neither '.' nor 'e'; NaN/Infinity as bare tokens."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%.6g" % value
    back = float(text)
    if is_float:
        back = float(np.float32(back))
    if back != value:
        text = ("%.9g" if is_float else "%.17g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _decimals(array, is_float):
    """_decimal of every value of a float32/float64 array (flattened), vectorized where it can be."""
    flat = np.ascontiguousarray(array).ravel()
    values = flat.astype(np.float64).tolist()
    texts = ["%.6g" % v for v in values]
    if not texts:
        return texts
    back = np.array(texts, dtype=np.float64)
    if is_float:
        back = back.astype(np.float32)
    with np.errstate(invalid="ignore"):
        redo = np.flatnonzero((back != flat) & np.isfinite(flat))
    long_format = "%.9g" if is_float else "%.17g"
    for i in redo.tolist():
        texts[i] = long_format % values[i]
    out = []
    for text in texts:
        if "." in text or "e" in text:
            out.append(text)
        elif text == "nan":
            out.append("NaN")
        elif text == "inf":
            out.append("Infinity")
        elif text == "-inf":
            out.append("-Infinity")
        else:
            out.append(text + ".0")
    return out


def _dtoa(value):
    """rapidjson Writer::Double (Grisu shortest digits, then Prettify) for a finite double."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = repr(abs(value))
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = (whole + fraction).lstrip("0")
    k = int(exponent or 0) - len(fraction)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= v < 10^kk
    if 0 <= k and kk <= 21:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        out = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        out = "0." + "0" * -kk + digits
    elif length == 1:
        out = digits + "e" + str(kk - 1)
    else:
        out = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return "-" + out if value < 0 else out


# ---------------------------------------------------------------------------------------------
# rapidjson's PrettyWriter (4-space indent, kFormatDefault / kFormatSingleLineArray).

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _escape_char(match):
    c = match.group()
    return _ESCAPES.get(c) or "\\u%04X" % ord(c)


def _quote(text):
    """rapidjson Writer::String: escapes '"', '\\' and control characters, nothing else."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


class _Stop(Exception):
    """rapidjson's writer refused a value (NaN/Infinity through Writer::Double): output ends there."""


class _PrettyWriter:
    def __init__(self):
        self.out = []
        self.levels = []  # per open container: [is_array, value_count]
        self.single_line_arrays = False

    def _prefix(self):
        if not self.levels:
            return
        level = self.levels[-1]
        out = self.out
        if level[0]:
            if level[1]:
                out.append(", " if self.single_line_arrays else ",")
            if not self.single_line_arrays:
                out.append("\n" + " " * (4 * len(self.levels)))
        else:
            if level[1]:
                out.append(",\n" if level[1] % 2 == 0 else ": ")
            else:
                out.append("\n")
            if level[1] % 2 == 0:
                out.append(" " * (4 * len(self.levels)))
        level[1] += 1

    def raw(self, text):
        self._prefix()
        self.out.append(text)

    def string(self, text):
        self._prefix()
        self.out.append(_quote(text))

    key = string

    def start_object(self):
        self._prefix()
        self.out.append("{")
        self.levels.append([False, 0])

    def end_object(self):
        level = self.levels.pop()
        if level[1]:
            self.out.append("\n" + " " * (4 * len(self.levels)))
        self.out.append("}")

    def start_array(self):
        self._prefix()
        self.out.append("[")
        self.levels.append([True, 0])

    def end_array(self):
        level = self.levels.pop()
        if level[1] and not self.single_line_arrays:
            self.out.append("\n" + " " * (4 * len(self.levels)))
        self.out.append("]")

    def text(self):
        return "".join(self.out)


def _accept(writer, v):
    """rapidjson Value::Accept(writer)."""
    if v is None:
        writer.raw("null")
    elif v is True:
        writer.raw("true")
    elif v is False:
        writer.raw("false")
    elif isinstance(v, str):
        writer.string(v)
    elif isinstance(v, dict):
        writer.start_object()
        for key, value in v.items():
            writer.key(key)
            _accept(writer, value)
        writer.end_object()
    elif isinstance(v, list):
        writer.start_array()
        for value in v:
            _accept(writer, value)
        writer.end_array()
    elif _is_int_token(v):
        writer.raw(str(v))
    else:
        d = float(v)
        writer._prefix()
        if not math.isfinite(d):
            raise _Stop  # Writer::Double refuses NaN/Infinity without kWriteNanAndInfFlag
        writer.out.append(_dtoa(d))


def _value_string(v):
    """json_tensor.cc JsonValueToString: a value as it appears in error messages (PrettyWriter)."""
    if _is_double(v):
        d = float(v)
        if -_RAPIDJSON_FLT_MAX <= d <= _RAPIDJSON_FLT_MAX:
            return _decimal(float(np.float32(d)), True)
        return _decimal(d, False)
    writer = _PrettyWriter()
    try:
        _accept(writer, v)
    except _Stop:
        pass
    return writer.text()


def _format_error(document, *parts):
    """json_tensor.cc FormatError: "JSON Value: <value> " then the rest."""
    return status.invalid_argument("JSON Value: " + _value_string(document) + " " + "".join(parts))


def _signature_error(document):
    return status.invalid_argument(
        "JSON Value: " + _value_string(document)
        + " not formatted correctly. 'signature_name' key must be a string value.")


def error(message: str) -> str:
    """MakeJsonFromStatus: the body of every error answer."""
    writer = _PrettyWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.text()


# ---------------------------------------------------------------------------------------------
# Parsing request bodies as rapidjson does.

_PARSE_MESSAGES = {
    "empty": "The document is empty.",
    "singular": "The document root must not be followed by other values.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "object": "Missing a comma or '}' after an object member.",
    "array": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
}

# Bodies json.loads may read differently from rapidjson go to the exact (slower) parser:
# surrogate escapes, exponents of 3+ digits and very long digit runs (values beyond a double).
_SLOW_PATH = re.compile(rb"\\u[dD][89a-fA-F]|[eE][-+]?[0-9]{3}|[0-9]{300}")


def _guard_depth(function):
    """A document nested past Python's recursion limit is refused, not a crash (rapidjson has no limit)."""
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RecursionError:
            raise status.invalid_argument("JSON Value nests too deeply") from None
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


_NOTHING = object()


class _ParseError(Exception):
    def __init__(self, kind, offset):
        super().__init__(kind)
        self.kind, self.offset = kind, offset


def _first_wins(pairs):
    """An object as rapidjson's FindMember sees it: a repeated key keeps its first value."""
    out = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


_WHITESPACE = b" \n\r\t"
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]+')
_DIGITS = re.compile(rb"[0-9]*")
_SIMPLE_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
                   ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}


class _Reader:
    """rapidjson GenericReader::Parse<kParseNanAndInfFlag> over an EncodedInputStream<UTF8>:
    the same values, the same errors at the same offsets (a NUL byte reads as the end)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        for byte in (0xEF, 0xBB, 0xBF):  # the UTF-8 stream skips a byte-order mark, byte by byte
            if self.peek() == byte:
                self.pos += 1

    def peek(self):
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def consume(self, char):
        if self.peek() == ord(char):
            self.pos += 1
            return True
        return False

    def skip_whitespace(self):
        data, pos = self.data, self.pos
        while pos < len(data) and data[pos] in _WHITESPACE:
            pos += 1
        self.pos = pos

    def parse(self):
        self.skip_whitespace()
        if self.peek() == 0:
            raise _ParseError("empty", self.pos)
        value = self.value()
        self.skip_whitespace()
        if self.peek() != 0:
            raise _ParseError("singular", self.pos)
        return value

    def value(self):
        c = self.peek()
        if c == ord("n"):
            return self.literal("null", None)
        if c == ord("t"):
            return self.literal("true", True)
        if c == ord("f"):
            return self.literal("false", False)
        if c == ord('"'):
            return self.string()
        if c == ord("{"):
            return self.object()
        if c == ord("["):
            return self.array()
        return self.number()

    def literal(self, word, value):
        self.pos += 1
        for char in word[1:]:
            if not self.consume(char):
                raise _ParseError("value", self.pos)
        return value

    def object(self):
        self.pos += 1
        out = {}
        self.skip_whitespace()
        if self.consume("}"):
            return out
        while True:
            if self.peek() != ord('"'):
                raise _ParseError("name", self.pos)
            key = self.string()
            self.skip_whitespace()
            if not self.consume(":"):
                raise _ParseError("colon", self.pos)
            self.skip_whitespace()
            out.setdefault(key, self.value())
            self.skip_whitespace()
            if self.consume(","):
                self.skip_whitespace()
            elif self.consume("}"):
                return out
            else:
                raise _ParseError("object", self.pos)

    def array(self):
        self.pos += 1
        out = []
        self.skip_whitespace()
        if self.consume("]"):
            return out
        while True:
            out.append(self.value())
            self.skip_whitespace()
            if self.consume(","):
                self.skip_whitespace()
            elif self.consume("]"):
                return out
            else:
                raise _ParseError("array", self.pos)

    def hex4(self, escape_offset):
        code = 0
        for _ in range(4):
            c = self.peek()
            if 0x30 <= c <= 0x39 or 0x41 <= c <= 0x46 or 0x61 <= c <= 0x66:
                code = code * 16 + int(chr(c), 16)
                self.pos += 1
            else:
                raise _ParseError("hex", escape_offset)
        return code

    def string(self):
        self.pos += 1
        out = bytearray()
        data = self.data
        while True:
            match = _PLAIN.match(data, self.pos)
            if match:
                out += match.group()
                self.pos = match.end()
            c = self.peek()
            if c == ord("\\"):
                escape_offset = self.pos
                self.pos += 1
                e = self.peek()
                if e in _SIMPLE_ESCAPES:
                    self.pos += 1
                    out += _SIMPLE_ESCAPES[e]
                elif e == ord("u"):
                    self.pos += 1
                    code = self.hex4(escape_offset)
                    if 0xD800 <= code <= 0xDBFF:
                        if not (self.consume("\\") and self.consume("u")):
                            raise _ParseError("surrogate", escape_offset)
                        low = self.hex4(escape_offset)
                        if not 0xDC00 <= low <= 0xDFFF:
                            raise _ParseError("surrogate", escape_offset)
                        code = (((code - 0xD800) << 10) | (low - 0xDC00)) + 0x10000
                    out += chr(code).encode("utf-8", "surrogatepass")  # a lone low surrogate too
                else:
                    raise _ParseError("escape", escape_offset)
            elif c == ord('"'):
                self.pos += 1
                return _to_text(bytes(out))
            elif c == 0:
                raise _ParseError("quote", self.pos)
            else:  # a control character
                raise _ParseError("escape", self.pos)

    def digits(self):
        match = _DIGITS.match(self.data, self.pos)
        self.pos = match.end()
        return match.group()

    def number(self):
        start = self.pos
        minus = self.consume("-")
        c = self.peek()
        special = None
        if c == ord("0"):
            self.pos += 1
        elif ord("1") <= c <= ord("9"):
            self.digits()
        elif c in (ord("I"), ord("N")):
            if self.consume("N"):
                if self.consume("a") and self.consume("N"):
                    special = math.nan
            elif self.consume("I"):
                if self.consume("n") and self.consume("f"):
                    special = -math.inf if minus else math.inf
                    if self.peek() == ord("i") and not all(self.consume(ch) for ch in "inity"):
                        raise _ParseError("value", self.pos)
            if special is None:
                raise _ParseError("value", self.pos)
        else:
            raise _ParseError("value", self.pos)
        integer_end = self.pos
        fraction = b""
        use_double = False
        if self.consume("."):
            if not 0x30 <= self.peek() <= 0x39:
                raise _ParseError("fraction", self.pos)
            fraction = self.digits()
            use_double = True
        exponent = b""
        if self.consume("e") or self.consume("E"):
            use_double = True
            exponent_start = self.pos - 1
            negative = False
            if not self.consume("+"):
                negative = self.consume("-")
            if not 0x30 <= self.peek() <= 0x39:
                raise _ParseError("exponent", self.pos)
            digits = self.digits().lstrip(b"0")
            if not negative and (len(digits) > 6 or int(digits or b"0") > 308 + len(fraction)):
                raise _ParseError("big", start)
            exponent = self.data[exponent_start:self.pos]
        if special is not None:
            if not use_double:
                return special
            # rapidjson goes on after NaN/Inf with a zero significand: "NaN.5" reads as 0.5
            text = (b"-0" if minus else b"0") + (b"." + fraction if fraction else b"") + exponent
            return float(text)
        token = self.data[start:self.pos]
        if not use_double and integer_end - start <= 21:
            value = int(self.data[start:integer_end])
            if _INT64[0] <= value <= _UINT64[1]:
                return value
        try:
            value = float(token)
        except OverflowError:
            raise _ParseError("big", start) from None
        if math.isinf(value):
            raise _ParseError("big", start)
        return value


@_guard_depth
def parse(body) -> dict:
    """The request document: rapidjson's ParseJson then FillSignature's check, with their messages.

    Errors: "JSON Parse error: <rapidjson message> at offset: <n>", "JSON Parse error: The
    document is empty" for an empty body, "JSON Value: <doc> Is not object", and the
    'signature_name' type error; all INVALID_ARGUMENT.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    if not body:
        raise status.invalid_argument("JSON Parse error: The document is empty")
    document = _NOTHING
    if not _SLOW_PATH.search(body):
        try:
            document = json.loads(body.decode("utf-8"), object_pairs_hook=_first_wins)
        except (ValueError, RecursionError):
            pass  # UnicodeDecodeError is a ValueError: the exact reader decides
    try:
        if document is _NOTHING:
            document = _Reader(body).parse()
    except _ParseError as e:
        raise status.invalid_argument(
            f"JSON Parse error: {_PARSE_MESSAGES[e.kind]} at offset: {e.offset}") from None
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    if "signature_name" in document and not isinstance(document["signature_name"], str):
        raise _signature_error(document)
    return document


def _fill_signature(document, request):
    """ParseJson's object check and FillSignature, for documents that did not come through parse()."""
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    if "signature_name" in document:
        if not isinstance(document["signature_name"], str):
            raise _signature_error(document)
        request.model_spec.signature_name = document["signature_name"]


# ---------------------------------------------------------------------------------------------
# Predict requests.

def _b64decode(text):
    """absl::Base64Unescape: the standard alphabet, whitespace ignored, padding ('=' or '.')
    optional but exact when present; None when the text does not decode."""
    data = _to_bytes(text)
    if len(data) % 4 == 0 and re.fullmatch(rb"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", data):
        return base64.b64decode(data)
    data = re.sub(rb"[ \t\n\v\f\r]", b"", data)
    match = re.fullmatch(rb"([A-Za-z0-9+/]*)([=.]*)", data)
    if not match:
        return None
    body, pads = match.group(1), len(match.group(2))
    expected = {0: 0, 2: 2, 3: 1}.get(len(body) % 4)
    if expected is None or pads not in (0, expected):
        return None
    try:
        return base64.b64decode(body + b"=" * expected)
    except binascii.Error:
        return None


def _decode_b64_object(v):
    if not _is_b64(v):
        raise status.invalid_argument(f"JSON Value: {_value_string(v)} not formatted correctly for base64 data")
    decoded = _b64decode(v["b64"])
    if decoded is None:
        raise status.invalid_argument("Unable to base64 decode")
    return decoded


def _type_error(v, dtype):
    return status.invalid_argument(
        f"JSON Value: {_value_string(v)} Type: {_json_type(v)} is not of expected type: {_dtype_string(dtype)}")


def _lossless(v, max_int, max_value):
    """json_tensor.cc IsLosslessDecimal."""
    if _is_int_token(v):
        return abs(v) <= max_int
    d = float(v)
    return not math.isfinite(d) or -max_value <= d <= max_value


def _lossy_error(v, target):
    return status.invalid_argument(
        f"Cannot convert JSON value: {_value_string(v)} to {target} without loss of precision.")


def _float_value(v):
    if not _is_number(v):
        raise _type_error(v, types_pb2.DT_FLOAT)
    if not _lossless(v, (1 << 24) - 1, _FLT_MAX):
        raise _lossy_error(v, "float")
    return float(v)  # the proto field rounds it to a float, as GetFloat() does


def _double_value(v):
    if not _is_number(v):
        raise _type_error(v, types_pb2.DT_DOUBLE)
    if not _lossless(v, (1 << 53) - 1, math.inf):
        raise _lossy_error(v, "double")
    return float(v)


def _ranged(bounds, dtype):
    def convert(v):
        if not _in(v, bounds):
            raise _type_error(v, dtype)
        return v
    return convert


def _string_value(v):
    if not isinstance(v, str):
        raise _type_error(v, types_pb2.DT_STRING)
    return _to_bytes(v)


def _bool_value(v):
    if type(v) is not bool:
        raise _type_error(v, types_pb2.DT_BOOL)
    return v


# dtype -> (TensorProto field, converter of one JSON value): json_tensor.cc AddValueToTensor
_CONVERTERS = {
    types_pb2.DT_FLOAT: ("float_val", _float_value),
    types_pb2.DT_DOUBLE: ("double_val", _double_value),
    types_pb2.DT_INT32: ("int_val", _ranged(_INT32, types_pb2.DT_INT32)),
    types_pb2.DT_INT16: ("int_val", _ranged(_INT32, types_pb2.DT_INT16)),  # IsInt() only: no narrower check
    types_pb2.DT_INT8: ("int_val", _ranged(_INT32, types_pb2.DT_INT8)),
    types_pb2.DT_UINT8: ("int_val", _ranged(_INT32, types_pb2.DT_UINT8)),
    types_pb2.DT_STRING: ("string_val", _string_value),
    types_pb2.DT_INT64: ("int64_val", _ranged(_INT64, types_pb2.DT_INT64)),
    types_pb2.DT_BOOL: ("bool_val", _bool_value),
    types_pb2.DT_UINT32: ("uint32_val", _ranged(_UINT32, types_pb2.DT_UINT32)),
    types_pb2.DT_UINT64: ("uint64_val", _ranged(_UINT64, types_pb2.DT_UINT64)),
}


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
                f"JSON Value: {_value_string(v)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}")
        if isinstance(v, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(v, dtype)
            out.append(_decode_b64_object(v))
        elif dtype in _CONVERTERS:
            out.append(_CONVERTERS[dtype][1](v))
        else:
            raise _unimplemented(f"Conversion of JSON Value: {_value_string(v)} to type: {_dtype_string(dtype)}")
        return 1
    if level >= rank:
        raise status.invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise status.invalid_argument(
            f"Encountered list at unexpected size: {len(v)} at level: {level} expected size: {shape[level]}")
    if level == rank - 1 and dtype in _CONVERTERS and not any(isinstance(x, (list, dict)) for x in v):
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
        return isinstance(v, dict) and not _is_b64(v)

    objects = is_object(first)
    names = sorted(infomap)  # std::set<string> input_names
    values, sizes, shapes = {}, {}, {}

    def add_item(item, name):  # AddInstanceItem
        if name not in infomap:
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
                        f"Error: {_status_string(e)}") from None
            if set(element) != set(names):
                raise status.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{_value_string(element)} keys must be equal to: {','.join(names)}")
        else:
            if is_object(element):
                raise status.invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(element, names[0])
            except status.ServingError as e:
                raise status.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: {_status_string(e)}") from None
    for name in values:
        request.inputs[name].CopyFrom(
            _make_tensor(infomap[name].dtype, [len(instances)] + shapes[name], values[name]))


def _fill_from_inputs(value, infomap, request):
    """FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or _is_b64(value):
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


@_guard_depth
def fill_predict_request(document, signature_def, request) -> bool:
    """FillPredictRequestFromJson: the document's tensors into request.inputs, typed by the
    signature's inputs. Returns True for the columnar format ("inputs"), False for rows ("instances")."""
    _fill_signature(document, request)
    infomap = signature_def.inputs
    if not infomap:
        name = request.model_spec.signature_name
        raise status.invalid_argument(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise _format_error(
                document, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
        instances = document["instances"]
        if not isinstance(instances, list):
            raise _format_error(document, "Excepting 'instances' to be an list/array")
        if not instances:
            raise _format_error(document, "No values in 'instances' array")
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
        raise _internal(f"Failed to read output tensor {name}: {e}") from None
    if dtype == types_pb2.DT_FLOAT or dtype == types_pb2.DT_DOUBLE:
        return _decimals(array, dtype == types_pb2.DT_FLOAT)
    if dtype == types_pb2.DT_BOOL:
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if dtype == types_pb2.DT_STRING:
        if name.endswith("_bytes"):  # bytes, as {"b64": ...}
            return [_B64(base64.b64encode(v).decode("ascii")) for v in array.ravel().tolist()]
        return [_quote(_to_text(v)) for v in array.ravel().tolist()]
    return [str(v) for v in array.ravel().tolist()]


class _B64(str):
    """A value written as the object {"b64": <this>}."""


def _write_leaf(writer, leaves, offset, dtype):
    if leaves is None:
        raise status.invalid_argument(f"Failed to write JSON value for tensor type: {_dtype_string(dtype)}")
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
    writer = _PrettyWriter()
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
    batch_size = 0
    for name in names:
        shape = shapes[name]
        if not shape:
            raise status.invalid_argument(f"Tensor name: {name} has no shape information ")
        if shape[0] < 1:
            raise status.invalid_argument(f"Tensor name: {name} has invalid batch size: {shape[0]}")
        if batch_size and batch_size != shape[0]:
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


# ---------------------------------------------------------------------------------------------
# Classify and Regress.

def _feature_kind_error(name, feature):
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind"), "UNKNOWN")
    return status.invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _check_kind(name, feature, kind):
    if feature.WhichOneof("kind") not in (None, kind):
        raise _feature_kind_error(name, feature)


def _add_feature_value(v, name, feature):
    """AddValueToFeature."""
    if v is None or isinstance(v, list) or (isinstance(v, dict) and not _is_b64(v)):
        raise status.invalid_argument(f"Feature: {name} has element with unexpected JSON type: {_json_type(v)}")
    if type(v) is bool:
        _check_kind(name, feature, "int64_list")
        feature.int64_list.value.append(1 if v else 0)
    elif isinstance(v, dict):
        _check_kind(name, feature, "bytes_list")
        feature.bytes_list.value.append(_decode_b64_object(v))
    elif isinstance(v, str):
        _check_kind(name, feature, "bytes_list")
        feature.bytes_list.value.append(_to_bytes(v))
    elif _is_double(v):
        _check_kind(name, feature, "float_list")
        if not _lossless(v, (1 << 24) - 1, _FLT_MAX):
            raise _lossy_error(v, "float")
        feature.float_list.value.append(float(v))
    else:
        _check_kind(name, feature, "int64_list")
        if not _in(v, _INT64):
            raise status.invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(v)


def _make_example(v, example):
    """MakeExampleFromJsonObject."""
    if not isinstance(v, dict):
        raise status.invalid_argument(f"Example must be JSON object but got JSON {_json_type(v)}")
    for name, content in v.items():
        feature = feature_pb2.Feature()
        for item in (content if isinstance(content, list) else [content]):
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


@_guard_depth
def fill_example_request(document, request) -> None:
    """FillClassificationRequestFromJson / FillRegressionRequestFromJson (one code in TF Serving:
    its missing-'examples' message says "classify" for regress too)."""
    _fill_signature(document, request)
    has_context = "context" in document
    if has_context:
        _make_example(document["context"], request.input.example_list_with_context.context)
    if "examples" not in document:
        raise _format_error(document, "When method is classify, key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    for value in examples:
        target = (request.input.example_list_with_context.examples if has_context
                  else request.input.example_list.examples)
        _make_example(value, target.add())


def classify_response(response) -> str:
    """MakeJsonFromClassificationResult: {"results": [[[label, score], ...], ...]}."""
    result = response.result
    if not result.classifications:
        raise status.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    writer = _PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classifications in result.classifications:
        writer.single_line_arrays = True
        writer.start_array()
        for cls in classifications.classes:
            writer.start_array()
            writer.string(cls.label)
            writer.raw(_decimal(cls.score, True))
            writer.end_array()
        writer.end_array()
        writer.single_line_arrays = False
    writer.end_array()
    writer.end_object()
    return writer.text()


def regress_response(response) -> str:
    """MakeJsonFromRegressionResult: {"results": [value, ...]}."""
    result = response.result
    if not result.regressions:
        raise status.invalid_argument("Cannot convert empty RegressionResults to JSON")
    writer = _PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line_arrays = True  # set once and never reset: "]" stays on the values' line
    writer.start_array()
    for regression in result.regressions:
        writer.raw(_decimal(regression.value, True))
    writer.end_array()
    writer.end_object()
    return writer.text()


# ---------------------------------------------------------------------------------------------
# Metadata.

def _proto_json(message):
    """protobuf's C++ MessageToJsonString with add_whitespace, always_print_primitive_fields and
    preserve_proto_field_names: 1-space indent, int64 as strings, and a newline after the root."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=1, ensure_ascii=False,
                                     always_print_fields_with_no_presence=True) + "\n"


def metadata(response) -> str:
    """http_rest_api_util.cc ToJsonString(GetModelMetadataResponse): model_spec and the
    SignatureDefMap printed separately, then concatenated by hand."""
    if "signature_def" not in response.metadata:
        raise _internal("Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.")
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata["signature_def"].Unpack(signature_def_map):
        raise _internal("Failed to unpack 'Any' object to 'SignatureDefMap'.")
    return ("{\n" + '"model_spec":' + _proto_json(response.model_spec) + ",\n"
            + '"metadata": {' + '"signature_def": ' + _proto_json(signature_def_map) + "}\n" + "}\n")
