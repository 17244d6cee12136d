"""JSON text as TF Serving writes it: rapidjson's number formats (Grisu2 doubles) and its PrettyWriter."""

import math
import re

import numpy as np

from ...util import status
from .json_values import is_int_token, object_members

# ---------------------------------------------------------------------------------------------
# Number formatting.

def decimal_string(value, is_float):
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


_CHUNK = 1 << 16  # values formatted per step: numpy's string parse holds the interpreter ~10 ms for each


def decimal_strings(array, is_float):
    """decimal_string of every value of a float32/float64 array (flattened), vectorized where it can be, a
    chunk at a time: other threads (every other client) get the interpreter between chunks."""
    flat = np.ascontiguousarray(array).ravel()
    out = []
    for start in range(0, flat.size, _CHUNK):
        out.extend(_decimal_chunk(flat[start:start + _CHUNK], is_float))
    return out


def _decimal_chunk(flat, is_float):
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


def quote(text):
    """rapidjson Writer::String: escapes '"', '\\' and control characters, nothing else."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


class _Stop(Exception):
    """rapidjson's writer refused a value (NaN/Infinity through Writer::Double): output ends there."""


class PrettyWriter:
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
        self.out.append(quote(text))

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


def value_string(v):
    """json_tensor.cc JsonValueToDebugString: a value as error messages show it.

    rapidjson's Value::Accept into a PrettyWriter set to kFormatSingleLineArray (arrays on one line,
    objects still one member a line), through JsonWriterWithLimit (the output stops at the first
    event once it holds _DEBUG_STRING_LIMIT bytes). Numbers written with '.', an exponent, or
    beyond 64 bits go through Writer::Double; NaN and Infinity make it fail, which ends the text
    there too. Walked with an explicit stack: a document can nest any depth (rapidjson's
    iterative parser takes it)."""
    writer = PrettyWriter(single_line_arrays=True)
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
            return True, iter(object_members(value))
        elif isinstance(value, list):
            writer.start_array()
            return False, iter(value)
        elif is_int_token(value):
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


def format_error(document, *parts):
    """json_tensor.cc FormatError: "JSON Value: <value> " then the rest."""
    return status.invalid_argument("JSON Value: " + value_string(document) + " " + "".join(parts))


def signature_error(document):
    return status.invalid_argument(
        "JSON Value: " + value_string(document)
        + " not formatted correctly. 'signature_name' key must be a string value.")


def error(message: str) -> str:
    """MakeJsonFromStatus: the body of every error answer."""
    writer = PrettyWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.text()
