"""--fleet's comparison of outputs: arrays by name within --atol, and what differs said in a few short lines.

A difference is said from the replica's side: "no output 'x'" (the reference has it, this replica does not),
"output 'x' too", "float64, not float32", "shape (3, 1), not (2, 1)", or the largest |difference| and where.
"""

import numpy as np

from . import argtypes, codec, fleet
from .errors import InputError, ServerError

DEFAULT_ATOL = 1e-5


def add_arguments(parser):
    parser.add_argument("--atol", type=argtypes.tolerance("the tolerance"), metavar="X",
                        help=f"with --fleet: numbers agree when |a - b| <= X (default: {DEFAULT_ATOL:g}, since "
                             "replicas on other CPUs (AVX2, AVX-512) or a GPU sum float32 in another order and "
                             "differ in the last digits (about 1e-7 of the value), while another model or version "
                             "differs far more; 0: bit for bit); strings, booleans, dtypes and shapes compare "
                             "exactly")


def atol(args):
    """--atol's value: the default with --fleet; an InputError (nothing is sent) when given without --fleet."""
    if args.atol is not None and not args.fleet:
        raise InputError("--atol is the tolerance between replicas: it goes with --fleet")
    return DEFAULT_ATOL if args.atol is None else args.atol


def arrays(reference, value, tolerance, what="output"):
    """The lines saying how value ({name: ndarray}) differs from reference; [] when they agree.

    what: the kind of thing named ("output 'x'"); "" names them bare."""
    def named(name):
        return f"{what} {name!r}" if what else name

    lines = [f"no {named(name)}" for name in sorted(reference.keys() - value.keys())]
    lines += [f"{named(name)} too" for name in sorted(value.keys() - reference.keys())]
    for name in sorted(reference.keys() & value.keys()):
        said = array(reference[name], value[name], tolerance)
        if said:
            lines.append(f"{named(name)}: {said}")
    return lines


def array(reference, value, tolerance):
    """How one array differs from another (None if it does not, beyond the tolerance for numbers)."""
    reference, value = np.asarray(reference), np.asarray(value)
    if reference.dtype != value.dtype:
        return f"{dtype_name(value.dtype)}, not {dtype_name(reference.dtype)}"
    if reference.shape != value.shape:
        return f"shape {shape_text(value.shape)}, not {shape_text(reference.shape)}"
    if value.size == 0:
        return None
    if value.dtype.kind in "OSUb":
        unequal = reference != value
        if not np.any(unequal):
            return None
        where = tuple(int(i) for i in np.argwhere(unequal)[0])
        return (f"{int(np.count_nonzero(unequal))} of {value.size} values differ, the first at {index_text(where)}: "
                f"{_value(value[where])}, not {_value(reference[where])}")
    wide = np.complex128 if value.dtype.kind == "c" else np.float64
    a, b = reference.astype(wide), value.astype(wide)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        difference = np.where(same, 0.0, np.abs(b - a))
    difference = np.where(np.isnan(difference), np.inf, difference)  # NaN against a number, inf - inf
    beyond = difference > tolerance
    if not np.any(beyond):
        return None
    where = np.unravel_index(int(np.argmax(difference)), difference.shape)
    where = tuple(int(i) for i in where)
    count = int(np.count_nonzero(beyond))
    return (f"largest |difference| {difference[where]:.6g} at {index_text(where)} ({_value(value[where])}, not "
            f"{_value(reference[where])}); {count} of {value.size} values beyond {tolerance:g}")


def dtype_name(dtype):
    return "string" if dtype.kind in "OSU" else str(dtype)


def shape_text(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def index_text(where):
    return "[" + ", ".join(str(i) for i in where) + "]"


def _value(value):
    if isinstance(value, bytes):
        text = repr(value.decode("utf-8", "backslashreplace"))
    elif isinstance(value, (float, np.floating)):  # the shortest text that reads back as the same value
        value = value if isinstance(value, np.floating) else np.float64(value)
        if value == 0 or not np.isfinite(value) or 1e-4 <= abs(value) < 1e7:
            text = np.format_float_positional(value, unique=True, trim="-")
        else:
            text = np.format_float_scientific(value, unique=True, trim="-")
    elif isinstance(value, (complex, np.complexfloating)):
        text = f"{complex(value):.8g}"
    else:
        text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= 40 else text[:40] + "..."


def summary(named_arrays, limit=6):
    """One line: each array as name=values (the first `limit` values, then ...)."""
    parts = []
    for name, value in sorted(named_arrays.items()):
        value = np.asarray(value)
        if value.dtype.kind == "O":
            value = np.vectorize(lambda v: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v,
                                 otypes=[object])(value) if value.size else value
        shown = np.array2string(value, separator=", ", threshold=limit, edgeitems=max(1, limit // 2),
                                precision=6, max_line_width=10**9, floatmode="maxprec")
        parts.append(f"{name}={' '.join(shown.split())}")
    return "  ".join(parts) or "no outputs"


def tensors(tensor_map):
    """A response's output TensorProtos as arrays; a tensor that cannot be one is the server's error."""
    found = {}
    for alias, tensor in tensor_map.items():
        try:
            found[alias] = codec.make_ndarray(tensor)
        except (TypeError, ValueError) as e:
            raise ServerError(f"output {alias!r} cannot be read: {e}") from None
    return found


class Answer:
    """One replica's answer for an OutputsView: the message to show in JSON, its outputs as arrays, the version."""

    def __init__(self, message, outputs, version=None):
        self.message, self.outputs, self.version = message, outputs, version


class OutputsView(fleet.View):
    """--fleet for a call whose answer is named output arrays: one line of values per replica, the outputs
    compared within the tolerance (the versions are shown, not compared: a canary may run another version)."""

    what = "output"  # how a difference names the arrays ("output 'y'"); "" names them bare

    def __init__(self, tolerance):
        self.tolerance = tolerance

    def text(self, answer):
        version = f"version {answer.version}: " if answer.version is not None else ""
        return version + summary(answer.outputs)

    def differences(self, reference, answer):
        return "\n".join(arrays(reference.outputs, answer.outputs, self.tolerance, self.what)) or None
