"""The value types of the scripts' flags, in one place: each turns the text of a flag (or of the TFS_*
variable that gives its default) into a value, or says in argparse's one line what is wrong with it.

A default read from the environment is a FromEnv string: argparse converts a string default with the
flag's type when the flag is not given, so a bad variable is refused like a bad flag (exit 2), and the
message names the variable.
"""

import argparse
import math
import os
from urllib.parse import urlsplit

from .text import cut, printable

NO_DEADLINE = 1e9  # seconds (31 years): from here on, -t means no deadline (gRPC's own ends near 9.2e9)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class FromEnv(str):
    """The text of an environment variable, remembering the variable's name for error messages."""

    def __new__(cls, value, variable):
        text = super().__new__(cls, value)
        text.variable = variable
        return text


def env(name, default=None):
    """$name as a FromEnv string when set and not empty, else default."""
    value = os.environ.get(name)
    return FromEnv(value, name) if value else default


def _refuse(text, problem, unreadable=False):
    """An ArgumentTypeError naming the variable when the text came from one.

    unreadable: the text is not of the type at all ("not a number: 'x'"), else out of range ("must be > 0, not 0").
    """
    if isinstance(text, FromEnv):
        return argparse.ArgumentTypeError(f"${text.variable}={_shown(text)}: {problem}")
    if unreadable:
        return argparse.ArgumentTypeError(f"{problem}: {_shown(text)}")
    return argparse.ArgumentTypeError(f"{problem}, not {_plain(text)}")


def _plain(text, limit=100):
    """The text as printable: bytes that are not UTF-8 (from argv or the environment) as \\xNN; cut if long."""
    return cut(printable(text), limit)


def _shown(text):
    return repr(_plain(text))


def count(minimum=0, must="must be"):
    """A whole number >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise _refuse(text, "not a whole number", True) from None
        if value < minimum:
            raise _refuse(text, f"{must} >= {minimum}")
        return value
    return parse


def counts(minimum=0):
    """A whole number >= minimum, or a comma list of different ones (1,2,4,8): a list, in the order given."""
    one = count(minimum)

    def parse(text):
        items = str(text).split(",")
        if len(items) == 1:
            if not str(text).strip():
                raise _refuse(text, "no number given", True)
            return [one(text)]
        values = []
        for item in items:
            if not item.strip():
                raise _refuse(text, "an empty item in the list", True)
            try:
                value = int(item)
            except ValueError:
                raise _refuse(text, f"not a whole number: {_shown(item.strip())} in the list", True) from None
            if value < minimum:
                raise _refuse(text, f"every number must be >= {minimum}, not {value} in the list", True)
            if value in values:
                raise _refuse(text, f"{value} is in the list twice", True)
            values.append(value)
        return values
    return parse


def url(what):
    """An http:// or https:// URL with a host (a page to read, e.g. the server's metrics)."""
    def parse(value):
        text_value = text(what)(value)
        if not text_value.isascii():  # (the request line cannot carry it: "cannot read it (UnicodeEncodeError...)")
            raise _refuse(value, f"{what} must be ASCII: percent-encode the rest (%C3%A9 for é)", True)
        try:
            parts = urlsplit(text_value)
            parts.port  # noqa: B018  (a bad port raises ValueError)
        except ValueError:
            raise _refuse(value, f"{what} is not a valid URL", True) from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text_value):
            raise _refuse(value, f"{what} must be an http:// or https:// URL", True)
        return text_value
    return parse


def seconds(what="the timeout", minimum=0.0, allow_minimum=False, infinite=False):
    """A number of seconds above minimum (or equal to it with allow_minimum); never NaN.

    infinite: inf, or anything from NO_DEADLINE up, is math.inf (no deadline); otherwise it must be finite.
    """
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise _refuse(text, "not a number of seconds", True) from None
        if math.isnan(value) or value < minimum or (value == minimum and not allow_minimum):
            raise _refuse(text, f"{what} must be {'>=' if allow_minimum else '>'} {minimum:g}")
        if value >= NO_DEADLINE:
            if not infinite:
                raise _refuse(text, f"{what} must be below {NO_DEADLINE:g} seconds")
            return math.inf
        return value
    return parse


def between(what, low, high, unit):
    """A number from low to high, both included (grpcBench's rate and duration); never NaN."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise _refuse(text, "not a number", True) from None
        if not low <= value <= high:
            raise _refuse(text, f"{what} must be between {_decimal(low)} and {_decimal(high)} {unit}")
        return value
    return parse


def _decimal(number):
    """A bound as people write it: 0.001, 1000000 (not 1e-03, 1e+06)."""
    return format(number, "f").rstrip("0").rstrip(".")


def tolerance(what):
    """A finite number >= 0 (--atol)."""
    return _finite(f"{what} must be a finite number >= 0", zero=True)


def _finite(problem, zero):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise _refuse(text, "not a number", True) from None
        if not (math.isfinite(value) and (value > 0 or (zero and value == 0))):
            raise _refuse(text, problem)
        return value
    return parse


def version(text):
    """A model version: an int64 >= 0, as ModelSpec holds it."""
    try:
        value = int(text)
    except ValueError:
        raise _refuse(text, "not a version number", True) from None
    if not 0 <= value < 2**63:
        raise _refuse(text, "a version is a number >= 0 and < 2**63")
    return value


def text(what):
    """A non-empty string that UTF-8 can carry (a non-UTF-8 environment variable cannot be sent)."""
    def parse(value):
        if not value:
            raise _refuse(value, f"{what} is empty", True)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(value, f"{what} is not valid UTF-8", True) from None
        return str(value)
    return parse


def server(value):
    """-s: any gRPC target; in HOST:PORT (no scheme), a port in digits other than ASCII's (superscript ¹⁸⁵⁰⁰, Arabic
    ٨٥٠٠: str.isdigit takes them, int() and gRPC do not) is refused here rather than failing at the connection."""
    value = text("the server address")(value)
    if "://" not in value and not value.lower().startswith(("ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")):
        for item in value.split(","):
            port = item.rpartition("]")[2] if item.startswith("[") else item
            port = port.rpartition(":")[2] if port.count(":") == 1 else ""
            if port and not (port.isascii() and port.isdigit()):
                raise _refuse(value, f"the port {port!r} is not a number (write it in ASCII digits, e.g. "
                                     "localhost:8500)", True)
            if port and not is_port(port):  # (gRPC's resolver said "is the server running?")
                raise _refuse(value, f"the port {port} is not between 1 and 65535", True)
    return value


def is_port(text):
    """Whether text is a TCP port: ASCII digits (str.isdigit alone takes ¹⁸⁵⁰⁰, which int() and gRPC do not)
    for a number from 1 to 65535."""
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def boolean(value):
    """1/0, true/false, yes/no, on/off (any case); True when the flag itself is given."""
    if value is True:
        return True
    low = str(value).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _refuse(value, "not a boolean: use 1/0, true/false, yes/no or on/off", True)


def choice(options):
    """One of options: also checks a default from the environment, which argparse's choices= does not."""
    def parse(value):
        if value not in options:
            if isinstance(value, FromEnv):
                raise _refuse(value, f"invalid choice (choose from {', '.join(options)})")
            raise argparse.ArgumentTypeError(f"invalid choice: {_shown(value)} (choose from {', '.join(options)})")
        return str(value)
    return parse


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_LARGEST_SIZE = 1 << 60  # bytes: beyond any disk, and below what a read's length may be (2**63 - 1)


def size(text):
    """A number of bytes, with an optional K, M, G or T suffix (powers of 1024): 512M, 2G, 1048576."""
    low = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    unit = low[-1:] if low[-1:] in _UNITS else ""
    try:
        value = float(low[:len(low) - len(unit)])
    except ValueError:
        raise _refuse(text, "not a size in bytes (e.g. 1048576, 512M or 2G)", True) from None
    if not (value >= 1 and math.isfinite(value)):
        raise _refuse(text, "a size must be at least 1 byte")
    if value * _UNITS[unit] > _LARGEST_SIZE:
        raise _refuse(text, "no file is that large: a size is at most 1048576T (2**60 bytes)")
    return int(value * _UNITS[unit])


class Switch(argparse.Action):
    """A flag that turns a feature on, whose default may come from a boolean variable (checked as boolean)."""

    def __init__(self, option_strings, dest, default=False, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, type=boolean, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
