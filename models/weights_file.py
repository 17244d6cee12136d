"""Read and validate the toy models' weights file (``../shared/toy_models.json``) into ToyModel entries."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

ACTIVATIONS = ("linear", "sigmoid")
DEFAULT_INPUT = [[1.0, 2.0], [1.0, 3.0]]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_VERSION_RE = re.compile(r"^[1-9][0-9]*$")


class WeightsError(Exception):
    """The weights file is missing or not in the expected format."""


@dataclass(frozen=True)
class ToyModel:
    name: str
    version: int
    kernel: tuple  # ((k0,), (k1,))
    bias: tuple  # (b,)
    activation: str
    output: str
    expected: tuple | None  # outputs for the json's input, or None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class Weights:
    models: tuple  # of ToyModel
    input: tuple  # ((x00, x01), (x10, x11))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _matrix(value, rows: int, cols: int, what: str) -> tuple:
    if (not isinstance(value, list) or len(value) != rows
            or not all(isinstance(r, list) and len(r) == cols and all(_is_number(v) for v in r)
                       for r in value)):
        raise WeightsError(f"{what} must be a {rows}x{cols} list of numbers")
    return tuple(tuple(float(v) for v in r) for r in value)


def _vector(value, n: int, what: str) -> tuple:
    if not isinstance(value, list) or len(value) != n or not all(_is_number(v) for v in value):
        raise WeightsError(f"{what} must be a list of {n} numbers")
    return tuple(float(v) for v in value)


def load_weights(path) -> Weights:
    """Read and validate the weights file; raise WeightsError on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"weights file {path} is not valid JSON: {e}") from None
    try:
        return _parse_weights(data)
    except WeightsError as e:
        raise WeightsError(f"weights file {path}: {e}") from None


def _parse_weights(data) -> Weights:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise WeightsError("expected an object with a non-empty 'models' object")
    x = _matrix(data.get("input", DEFAULT_INPUT), 2, 2, "'input'")
    models = []
    for key, m in data["models"].items():
        name, _, version = key.partition("/")
        if not _NAME_RE.match(name) or not _VERSION_RE.match(version):
            raise WeightsError(f"model key {key!r} is not '<name>/<version>' "
                               "(version a positive integer)")
        if not isinstance(m, dict):
            raise WeightsError(f"model {key!r} must be an object")
        activation = m.get("activation")
        if activation not in ACTIVATIONS:
            raise WeightsError(f"model {key!r}: activation must be one of {ACTIVATIONS}, "
                               f"not {activation!r}")
        output = m.get("output", "output_1")
        if not isinstance(output, str) or not _NAME_RE.match(output):
            raise WeightsError(f"model {key!r}: 'output' must be a name, not {output!r}")
        expected = m.get("expected")
        if expected is not None:
            expected = _vector(expected, len(x), f"model {key!r}: 'expected'")
        models.append(ToyModel(
            name=name,
            version=int(version),
            kernel=_matrix(m.get("kernel"), 2, 1, f"model {key!r}: 'kernel'"),
            bias=_vector(m.get("bias"), 1, f"model {key!r}: 'bias'"),
            activation=activation,
            output=output,
            expected=expected,
        ))
    return Weights(models=tuple(models), input=x)
