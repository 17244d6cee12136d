"""Base64 in JSON as TF Serving reads it: {"b64": "..."} objects (json_tensor.cc, absl::Base64Unescape)."""

import base64
import binascii
import re

from ...util import status
from .json_values import is_b64, to_bytes
from .json_writer import value_string


def b64decode(text):
    """absl::Base64Unescape: the standard alphabet, whitespace ignored, padding ('=' or '.')
    optional but exact when present; None when the text does not decode."""
    data = to_bytes(text)
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


def decode_b64_object(v):
    if not is_b64(v):
        raise status.invalid_argument(f"JSON Value: {value_string(v)} not formatted correctly for base64 data")
    decoded = b64decode(v["b64"])
    if decoded is None:
        raise status.invalid_argument("Unable to base64 decode")
    return decoded
