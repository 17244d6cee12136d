"""Request bodies parsed as rapidjson 1.1.0 parses them for TF Serving (iterative, NaN/Inf, stop when done)."""

import json
import math
import re

# orjson over python-rapidjson (rapidjson itself) and msgspec, for a 51 MB predict body with collection
# paused: 0.21 s against 1.49 s (rapidjson's exact float mode; its fast mode misrounds 1 float in 10) and
# 0.18 s; orjson is the one most used, and both fast ones hold the interpreter alike.
import orjson

from ...util import memory, status
from .json_values import INT64, UINT64, Object, to_text
from .json_writer import format_error, signature_error

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

# Bodies the fast parsers may read differently from rapidjson go to the exact (slower) parser: surrogate
# escapes, positive exponents of 309 or more (rapidjson refuses "0e400", which is 0.0 to the fast ones;
# smaller and negative exponents read alike: correctly rounded, and an overflow is caught by _finite_float),
# and runs of 300 digits (integers beyond a double). Found with byte searches: sre tries a character class at
# every byte (0.75 s for a 32 MB body, four times orjson's whole parse), and bytes.find scans at memory speed.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BIG_EXPONENT = re.compile(rb"[eE]\+?0*(?:309|3[1-9][0-9]|[4-9][0-9]{2}|[1-9][0-9]{3,})")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789\0", b"000000000.")  # and NUL (invalid JSON) out of the way
_EXPONENTS_AS_ZERO = (b"e000", b"E000", b"e+000", b"E+000")  # every exponent of 3+ digits, digits made 0
_FEW_LETTERS = 10_000  # this many e/E or fewer: each is looked at; more (a body of strings): byte searches


def _needs_exact_reader(body):
    if b"\\u" in body and _SURROGATE_ESCAPE.search(body):
        return True
    digits = None
    if body.count(b"e") + body.count(b"E") <= _FEW_LETTERS:
        for letter in (b"e", b"E"):
            at = body.find(letter)
            while at >= 0:
                if _BIG_EXPONENT.match(body, at):
                    return True
                at = body.find(letter, at + 1)
    else:
        digits = body.translate(_DIGITS_AS_ZERO)
        if any(token in digits for token in _EXPONENTS_AS_ZERO) and _BIG_EXPONENT.search(body):
            return True
    # 300 digits in a row: every run of 20 becomes one NUL, so 15 NULs in a row
    digits = body.translate(_DIGITS_AS_ZERO) if digits is None else digits
    return b"\0" * 15 in digits.replace(b"0" * 20, b"\0")


class _Overflow(ValueError):
    """A number beyond a double (rapidjson: "Number too big to be stored in double."): the exact reader's."""


def _finite_float(text):
    value = float(text)
    if math.isinf(value):
        raise _Overflow(text)
    return value


def guard_depth(function):
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
_FAST_DECODER = json.JSONDecoder(object_pairs_hook=lambda pairs: _first_wins(pairs), parse_float=_finite_float)


class _ParseError(Exception):
    def __init__(self, kind, offset):
        super().__init__(kind)
        self.kind, self.offset = kind, offset


def _first_wins(pairs):
    """An object as rapidjson's FindMember sees it: a repeated key keeps its first value (and the
    object remembers all its members, see Object)."""
    out = {}
    for key, value in pairs:
        out.setdefault(key, value)
    if len(out) != len(pairs):
        out = Object(out)
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
                    container = Object()
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
        elif key in container:  # a repeated name: from now on every member is kept (Object)
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
                return to_text(bytes(out))
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
            if INT64[0] <= value <= UINT64[1]:
                return value
        try:
            value = float(token)
        except OverflowError:
            raise _ParseError("big", start) from None
        if math.isinf(value):
            raise _ParseError("big", start)
        return value


_STRING_TOKEN = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"([ \t\n\r]*:)?')  # possessive: no backtracking stack


def _fast(body):
    """The document as the exact reader would read it, or _NOTHING when the fast parsers cannot tell.

    orjson first: a body of strict JSON with no object that repeats a name (orjson keeps a repeated
    name's last value, rapidjson's FindMember its first; see _repeats_no_name). Then Python's json,
    which also takes NaN and Infinity, with the first-wins hook. The GIL is held for the whole of
    either parse (~4 ms a MB with orjson, ~25 with json)."""
    try:
        document = orjson.loads(body)
        if type(document) in (dict, list) and _repeats_no_name(body, document):
            return document
    except orjson.JSONDecodeError:
        pass  # NaN or Infinity, text after the value, a BOM, deep nesting, bad UTF-8: the next parsers decide
    try:
        text = body.decode("utf-8")
        start = _JSON_WHITESPACE.match(text).end()
        if text[start:start + 1] in ("{", "["):  # a container ends at its bracket: a root scalar
            # is left to the exact reader, which knows where rapidjson's number stops
            return _FAST_DECODER.raw_decode(text, start)[0]  # what follows is ignored
    except (ValueError, RecursionError):
        pass  # UnicodeDecodeError is a ValueError: the exact reader decides
    return _NOTHING


def _repeats_no_name(body, document):
    """Whether no object of `document` (orjson's parse of the valid JSON `body`) lost a member to a repeated
    name. Every string token of the body is matched in turn (valid JSON has no quote between strings), and
    those followed by ':' are member names: all different as written, and none escaped, no object can repeat
    one. Otherwise the colons are counted: each name has one, and orjson writes back every member it kept and
    every colon in its strings, so the counts match exactly when nothing was lost (a colon escaped as \\u003a
    would blur that; then the members kept are counted against the names written)."""
    seen = set()
    for match in _STRING_TOKEN.finditer(body):
        if match.group(1):
            name = match.group(0)
            if name in seen or b"\\" in name:
                break
            seen.add(name)
    else:
        return True
    if b"\\u003a" not in body and b"\\u003A" not in body:
        try:
            return orjson.dumps(document).count(b":") == body.count(b":")
        except orjson.JSONEncodeError:  # nested deeper than orjson writes
            pass
    kept, stack = 0, [document]
    while stack:
        value = stack.pop()
        children = value.values() if type(value) is dict else value
        if type(value) is dict:
            kept += len(value)
        stack.extend(child for child in children if type(child) in (dict, list))
    return kept == sum(1 for match in _STRING_TOKEN.finditer(body) if match.group(1))


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
    if not _needs_exact_reader(body):
        with memory.collection_paused():  # millions of new lists: the collector would walk them again and again
            document = _fast(body)
    try:
        if document is _NOTHING:
            document = _Reader(body).parse()
    except _ParseError as e:
        raise status.invalid_argument(
            f"JSON Parse error: {_PARSE_MESSAGES[e.kind]} at offset: {e.offset}") from None
    if not isinstance(document, dict):
        raise format_error(document, "Is not object")
    if "signature_name" in document and not isinstance(document["signature_name"], str):
        raise signature_error(document)
    return document


def fill_signature(document, request):
    """ParseJson's object check and FillSignature, for documents that did not come through parse()."""
    if not isinstance(document, dict):
        raise format_error(document, "Is not object")
    if "signature_name" in document:
        if not isinstance(document["signature_name"], str):
            raise signature_error(document)
        request.model_spec.signature_name = document["signature_name"]
