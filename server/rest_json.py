"""JSON <-> protobuf for the REST API, byte for byte as TF Serving writes it.

TF Serving parses request bodies with rapidjson 1.1.0 (kParseIterativeFlag | kParseNanAndInfFlag |
kParseStopWhenDoneFlag: any depth, and nothing after the first value is read) and writes every
answer with rapidjson's PrettyWriter (tensorflow_serving/util/json_tensor.cc); the metadata answer
is protobuf's JSON printer output concatenated by hand (model_servers/http_rest_api_util.cc).
This module reproduces both as tensorflow/serving's current source has them: the messages (word
for word, typos included), the number formats and the whitespace.

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


class _Object(dict):
    """A JSON object whose names repeat. Lookups see the first member of a name, as rapidjson's
    FindMember; `members` keeps every (name, value) in document order, as rapidjson's Value does
    (MemberCount() counts them all, Accept() writes them all)."""
    __slots__ = ("members",)


def _members(v):
    """Every member of an object, repeated names included."""
    members = getattr(v, "members", None)
    return v.items() if members is None else members


def _is_b64(v):
    """IsValBase64Object: an object {"b64": <string>} and nothing else (MemberCount() == 1)."""
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str) and len(_members(v)) == 1


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


# rapidjson's Writer::Double (rapidjson 1.1.0, the version tensorflow_serving/workspace.bzl pins):
# internal/dtoa.h Grisu2 digits (not always the shortest ones) and Prettify's layout. Written here
# from the algorithm (Loitsch's Grisu2 with 64-bit "DIY" floats), with 64-bit unsigned arithmetic.

_U64 = (1 << 64) - 1


def _cached_powers():
    """10^k for k = -348, -340, ..., 340 as (64-bit significand, binary exponent), rounded to nearest."""
    powers = []
    for k in range(-348, 341, 8):
        if k >= 0:
            n = 10 ** k
            shift = n.bit_length() - 64
            f = (n + (1 << (shift - 1))) >> shift if shift > 0 else n << -shift
            e = shift
        else:
            d = 10 ** -k
            s = 63 + d.bit_length()
            f = ((1 << s) + d // 2) // d
            if f >> 64:
                s -= 1
                f = ((1 << s) + d // 2) // d
            e = -s
        if f >> 64:  # rounding carried into a 65th bit
            f, e = f >> 1, e + 1
        powers.append((f, e))
    return powers


_CACHED_POWERS = _cached_powers()


def _diy_multiply(a, b):
    """DiyFp::operator*: the high 64 bits of the product, rounded (half up)."""
    p = a[0] * b[0]
    return ((p >> 64) + ((p >> 63) & 1)) & _U64, a[1] + b[1] + 64


def _diy_normalize(f, e):
    shift = 64 - f.bit_length()
    return (f << shift) & _U64, e - shift


def _grisu2(value):
    """Digits and decimal exponent K of a finite positive double: value ~= digits * 10^K."""
    bits = int(np.float64(value).view(np.uint64))
    biased = (bits >> 52) & 0x7FF
    f = bits & ((1 << 52) - 1)
    if biased:
        f, e = f + (1 << 52), biased - 1075
    else:
        e = -1074
    # NormalizedBoundaries: m+ normalized so that bit 63 is set, m- on the same exponent
    pf, pe = (f << 1) + 1, e - 1
    while not pf & (1 << 53):
        pf, pe = pf << 1, pe - 1
    pf, pe = pf << 10, pe - 10
    if f == 1 << 52:
        mf, me = (f << 2) - 1, e - 2
    else:
        mf, me = (f << 1) - 1, e - 1
    mf <<= me - pe
    # GetCachedPower: the power of ten bringing the exponent into Grisu's range
    dk = (-61 - pe) * 0.30102999566398114 + 347
    k = int(dk)
    if dk - k > 0.0:
        k += 1
    index = (k >> 3) + 1
    big_k = -(-348 + (index << 3))
    c_mk = _CACHED_POWERS[index]
    w = _diy_multiply(_diy_normalize(f, e), c_mk)
    wp = _diy_multiply((pf, pe), c_mk)
    wm = _diy_multiply((mf, pe), c_mk)
    wm_f, wp_f = wm[0] + 1, wp[0] - 1
    # DigitGen
    shift = -wp[1]
    one_f = 1 << shift
    wp_w = (wp_f - w[0]) & _U64
    delta = (wp_f - wm_f) & _U64
    p1 = (wp_f >> shift) & 0xFFFFFFFF
    p2 = wp_f & (one_f - 1)
    digits = []
    kappa = min(len(str(p1)), 9) if p1 else 1

    def round_last(rest, ten_kappa, wp_w):  # GrisuRound
        while (rest < wp_w and ((delta - rest) & _U64) >= ten_kappa
               and (((rest + ten_kappa) & _U64) < wp_w
                    or ((wp_w - rest) & _U64) > ((rest + ten_kappa - wp_w) & _U64))):
            digits[-1] -= 1
            rest = (rest + ten_kappa) & _U64

    while kappa > 0:
        divisor = 10 ** (kappa - 1)
        d, p1 = divmod(p1, divisor)
        if d or digits:
            digits.append(d)
        kappa -= 1
        rest = ((p1 << shift) + p2) & _U64
        if rest <= delta:
            big_k += kappa
            round_last(rest, ((10 ** kappa) << shift) & _U64, wp_w)
            return "".join(map(str, digits)), big_k
    while True:
        p2 = (p2 * 10) & _U64
        delta = (delta * 10) & _U64
        d = p2 >> shift
        if d or digits:
            digits.append(d)
        p2 &= one_f - 1
        kappa -= 1
        if p2 < delta:
            big_k += kappa
            scale = 10 ** -kappa if -kappa < 9 else 0
            round_last(p2, one_f, (wp_w * scale) & _U64)
            return "".join(map(str, digits)), big_k


def _dtoa(value):
    """rapidjson Writer::Double (internal::dtoa with maxDecimalPlaces 324) for a finite double."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    digits, k = _grisu2(abs(value))
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= v < 10^kk
    if 0 <= k and kk <= 21:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        out = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        out = "0." + "0" * -kk + digits
    elif kk < -324:
        out = "0.0"
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
    def __init__(self, single_line_arrays=False):
        self.out = []
        self.levels = []  # per open container: [is_array, value_count]
        self.single_line_arrays = single_line_arrays

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


# json_tensor.cc kMaxJsonDebugStringBytes: JsonWriterWithLimit lets a writer event through only
# while the output holds fewer bytes than this; the first refused event ends the text, with no
# marker (the event that crosses the limit is written whole, so the text can be longer).
_DEBUG_STRING_LIMIT = 256
_END = object()


def _byte_length(text):
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a str not made by this module (lone surrogates): as UTF-8 would
        return len(text.encode("utf-8", "surrogatepass"))


def _value_string(v):
    """json_tensor.cc JsonValueToDebugString: a value as error messages show it.

    rapidjson's Value::Accept into a PrettyWriter set to kFormatSingleLineArray (arrays on one line,
    objects still one member a line), through JsonWriterWithLimit (the output stops at the first
    event once it holds _DEBUG_STRING_LIMIT bytes). Numbers written with '.', an exponent, or
    beyond 64 bits go through Writer::Double; NaN and Infinity make it fail, which ends the text
    there too. Walked with an explicit stack: a document can nest any depth (rapidjson's
    iterative parser takes it)."""
    writer = _PrettyWriter(single_line_arrays=True)
    written = [0, 0]  # bytes, pieces counted

    def in_limit():
        out = writer.out
        for i in range(written[1], len(out)):
            written[0] += _byte_length(out[i])
        written[1] = len(out)
        return written[0] < _DEBUG_STRING_LIMIT

    def write(value):
        """One value's first event; returns an iterator over its members/elements if it opened one."""
        if value is None:
            writer.raw("null")
        elif value is True:
            writer.raw("true")
        elif value is False:
            writer.raw("false")
        elif isinstance(value, str):
            writer.string(value)
        elif isinstance(value, dict):
            writer.start_object()
            return True, iter(_members(value))
        elif isinstance(value, list):
            writer.start_array()
            return False, iter(value)
        elif _is_int_token(value):
            writer.raw(str(value))
        else:
            d = float(value)
            writer._prefix()
            if not math.isfinite(d):
                raise _Stop  # Writer::Double refuses NaN/Infinity without kWriteNanAndInfFlag
            writer.out.append(_dtoa(d))
        return None

    try:
        if not in_limit():
            return ""
        opened = write(v)
        stack = [opened] if opened else []
        while stack:
            is_object, members = stack[-1]
            item = next(members, _END)
            if not in_limit():
                break
            if item is _END:
                stack.pop()
                writer.end_object() if is_object else writer.end_array()
                continue
            if is_object:
                writer.key(item[0])
                if not in_limit():
                    break
                item = item[1]
            opened = write(item)
            if opened:
                stack.append(opened)
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
    """A tensor nested past Python's recursion limit is refused, not a crash. Parsing takes any
    depth (as rapidjson's iterative parser); filling a tensor walks its values recursively, as
    json_tensor.cc FillTensorProto does."""
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RecursionError:
            raise status.invalid_argument("JSON Value nests too deeply") from None
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


_NOTHING = object()
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_FAST_DECODER = json.JSONDecoder(object_pairs_hook=lambda pairs: _first_wins(pairs))


class _ParseError(Exception):
    def __init__(self, kind, offset):
        super().__init__(kind)
        self.kind, self.offset = kind, offset


def _first_wins(pairs):
    """An object as rapidjson's FindMember sees it: a repeated key keeps its first value (and the
    object remembers all its members, see _Object)."""
    out = {}
    for key, value in pairs:
        out.setdefault(key, value)
    if len(out) != len(pairs):
        out = _Object(out)
        out.members = pairs
    return out


_WHITESPACE = b" \n\r\t"
_OPEN_OBJECT, _OPEN_ARRAY = ord("{"), ord("[")
_NO_START = frozenset(b"]},:")  # tokens that cannot begin a document
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]+')
_DIGITS = re.compile(rb"[0-9]*")
_SIMPLE_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
                   ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}


class _Reader:
    """rapidjson 1.1.0 GenericReader::Parse with json_tensor.cc ParseJson's flags over an
    EncodedInputStream<UTF8>: the same values, the same errors at the same offsets (a NUL byte
    reads as the end)."""

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
        """IterativeParse<kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag>
        (json_tensor.cc ParseJson): containers are tracked on an explicit stack, so any depth
        parses; the document ends with its first value, and nothing after it is read."""
        self.skip_whitespace()
        c = self.peek()
        if c == 0 or c in _NO_START:  # the iterative parser's error for its start state (HandleError)
            raise _ParseError("empty", self.pos)
        if c != _OPEN_OBJECT and c != _OPEN_ARRAY:
            return self.value()  # a scalar root: the parser stops right after it
        root = None
        stack = []  # the open containers, innermost last
        keys = []  # per open object: the name of the member being read
        while True:
            # a value starts here (whitespace skipped), for the innermost container or the root
            c = self.peek()
            if c == _OPEN_OBJECT or c == _OPEN_ARRAY:
                self.pos += 1
                if c == _OPEN_OBJECT:
                    container = _Object()
                    container.members = None  # until a name repeats
                else:
                    container = []
                if stack:
                    self.add(stack[-1], keys, container)
                else:
                    root = container
                stack.append(container)
                self.skip_whitespace()
                if c == _OPEN_OBJECT:
                    keys.append(None)
                    if not self.consume("}"):
                        keys[-1] = self.member_name()
                        continue
                    keys.pop()
                elif not self.consume("]"):
                    continue
                stack.pop()  # "{}" or "[]": complete already
                if not stack:
                    return root
            else:
                self.add(stack[-1], keys, self.value())
            # after a value: a comma and the next one, or the end of the container
            while True:
                container = stack[-1]
                self.skip_whitespace()
                if self.consume(","):
                    self.skip_whitespace()
                    if type(container) is not list:
                        keys[-1] = self.member_name()
                    break
                if type(container) is not list:
                    if not self.consume("}"):
                        raise _ParseError("object", self.pos)
                    keys.pop()
                elif not self.consume("]"):
                    raise _ParseError("array", self.pos)
                stack.pop()
                if not stack:
                    return root  # kParseStopWhenDoneFlag: whatever follows is not looked at

    @staticmethod
    def add(container, keys, value):
        if type(container) is list:
            container.append(value)
            return
        key = keys[-1]
        if container.members is not None:
            container.members.append((key, value))
        elif key in container:  # a repeated name: from now on every member is kept (_Object)
            container.members = list(container.items())
            container.members.append((key, value))
        container.setdefault(key, value)  # FindMember finds the first of repeated names

    def member_name(self):
        """A member's name and its colon, whitespace after each skipped."""
        if self.peek() != ord('"'):
            raise _ParseError("name", self.pos)
        key = self.string()
        self.skip_whitespace()
        if not self.consume(":"):
            raise _ParseError("colon", self.pos)
        self.skip_whitespace()
        return key

    def value(self):
        """A value that is not a container: literal, string or number."""
        c = self.peek()
        if c == ord("n"):
            return self.literal("null", None)
        if c == ord("t"):
            return self.literal("true", True)
        if c == ord("f"):
            return self.literal("false", False)
        if c == ord('"'):
            return self.string()
        return self.number()

    def literal(self, word, value):
        self.pos += 1
        for char in word[1:]:
            if not self.consume(char):
                raise _ParseError("value", self.pos)
        return value

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
            # reader.h: `if (Consume N && Consume a && Consume N) ... else if (Consume I && ...)`:
            # the second test runs where the first stopped ("NaInf" reads on as "Inf")
            if self.consume("N") and self.consume("a") and self.consume("N"):
                special = math.nan
            elif self.consume("I") and self.consume("n") and self.consume("f"):
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


def parse(body) -> dict:
    """The request document: rapidjson's ParseJson then FillSignature's check, with their messages.

    As TF Serving's parser today (json_tensor.cc ParseJson: kParseIterativeFlag |
    kParseNanAndInfFlag | kParseStopWhenDoneFlag), any nesting depth parses and the document is
    its first JSON value: whatever follows it is ignored, never an error.

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
            text = body.decode("utf-8")
            start = _JSON_WHITESPACE.match(text).end()
            if text[start:start + 1] in ("{", "["):  # a container ends at its bracket: a root scalar
                # is left to the exact reader, which knows where rapidjson's number stops
                document = _FAST_DECODER.raw_decode(text, start)[0]  # what follows is ignored
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


# json_tensor.cc AddValueToTensor takes any number for DT_FLOAT and DT_DOUBLE: val.GetFloat() /
# val.GetDouble(), with no precision check since TF Serving 2.5 (commit 57dac6cd removed
# IsLosslessDecimal and its "Cannot convert JSON value: ... without loss of precision." error).
# GetDouble() turns an integer into the nearest double; GetFloat() is static_cast<float> of that,
# so 1435774380 becomes 1435774336 and 1e39 becomes Infinity (g3doc/api_rest.md, "Floating Point
# Precision"; json_tensor_test.cc FloatTensorWithPrecisionLoss, FloatTensorThatExceedsMaxReturnsInf).
# Here float() is GetDouble(), and the float proto fields make the same double -> float cast.

def _float_value(v):
    if not _is_number(v):
        raise _type_error(v, types_pb2.DT_FLOAT)
    return float(v)


def _double_value(v):
    if not _is_number(v):
        raise _type_error(v, types_pb2.DT_DOUBLE)
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
            raise _format_error(document, "Expecting 'instances' to be an list/array")
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
        feature.float_list.value.append(float(v))  # GetFloat(), no precision check (as _float_value)
    else:
        _check_kind(name, feature, "int64_list")
        if not _in(v, _INT64):
            raise status.invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
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
    """protobuf's C++ MessageToJsonString with add_whitespace, always_print_fields_with_no_presence and
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
