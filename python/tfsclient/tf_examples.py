"""tf.Example inputs from the command line: --example 'age=31,income=5.2', JSON, CSV or TFRecord files.

Feature types are inferred per value (int, then float, else bytes) and can be forced with
--feature-type NAME=int|float|bytes.
"""

import csv
import io
import json
import os

from . import cli, files, protos, tfrecord
from .errors import InputError
from .text import one_line

TYPES = ("int", "float", "bytes")


def parse_feature_types(specs):
    types = {}
    for spec in specs or ():
        name, sep, kind = spec.partition("=")
        if not sep or not name or kind not in TYPES:
            raise InputError(f"--feature-type wants NAME=int|float|bytes, not {spec!r}")
        if types.get(name, kind) != kind:  # (the last one won, silently)
            raise InputError(f"--feature-type {name} is given twice ({name}={types[name]}, then {spec}): give each "
                             "feature one type")
        types[name] = kind
    return types


def _infer(value):
    if isinstance(value, bool):
        return "int"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (bytes, str)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        for kind, convert in (("int", int), ("float", float)):
            try:
                convert(text)
                return kind
            except ValueError:
                if kind == "int" and _long_decimal(text):  # beyond int()'s 4300 digits: still an int
                    return kind
        return "bytes"
    raise InputError(f"a feature value must be a number or a string, not {type(value).__name__}: {value!r}")


def _long_decimal(text):
    return isinstance(text, str) and text.strip().lstrip("+-").replace("_", "").isdecimal()


def _int64(name, value):
    try:
        number = int(value)
    except ValueError:
        if not _long_decimal(value):
            raise
        number = None
    if number is None or not -2**63 <= number < 2**63:
        raise InputError(f"feature {name!r}: {one_line(value, 30)} does not fit in an int64 feature "
                         f"(force another type with --feature-type {name}=float or {name}=bytes)")
    return number


def _convert(name, values, kind):
    try:
        if kind == "int":
            return [_int64(name, v) for v in values]
        if kind == "float":
            return [float(v) for v in values]
        return [v if isinstance(v, bytes) else str(v).encode() for v in values]
    except (ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise InputError(f"feature {name!r}: cannot read {values!r} as {kind}") from None


def make_example(features, forced, where):
    """A tf.Example from {name: value or list of values}."""
    example = protos.example_pb2.Example()
    if not features:
        raise InputError(f"{where}: an example needs at least one feature")
    for name, raw in features.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}: feature names must be non-empty strings")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): protobuf map keys are UTF-8
            raise InputError(f"{where}: feature name {name!r} is not valid Unicode") from None
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            kind = forced.get(name, "float")
        else:
            kinds = {_infer(v) for v in values}
            kind = forced.get(name) or ("bytes" if "bytes" in kinds else "float" if "float" in kinds else "int")
        converted = _convert(name, values, kind)
        feature = example.features.feature[name]
        if kind == "int":
            feature.int64_list.value.extend(converted)
        elif kind == "float":
            feature.float_list.value.extend(converted)
        else:
            feature.bytes_list.value.extend(converted)
    return example


def parse_pairs(text, where):
    features = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{where}: wants NAME=VALUE pairs separated by commas, e.g. 'age=31,income=5.2', "
                             f"not {text!r}")
        if name.strip() in features:  # (the last one won, silently)
            raise InputError(f"{where}: feature {name.strip()!r} is given twice: give each feature once")
        features[name.strip()] = value.strip()
    return features


def from_file(path, forced, max_size=None):
    """The examples in a .json, .csv or .tfrecord file; max_size: --max-file-size (see files.LIMITS)."""
    if not os.path.exists(path):
        raise InputError(f"--examples: file not found: {path}")
    if path.endswith((".tfrecord", ".tfrecords", ".tfr")):
        examples = []
        for offset, data in tfrecord.read_file(path, "--examples", max_size):
            example = protos.example_pb2.Example()
            try:
                example.ParseFromString(data)
            except Exception:
                raise InputError(f"{path}: the record at offset {offset} is not a tf.Example") from None
            examples.append(example)
        return examples
    if path.endswith(".csv"):
        text = files.read_text(path, "--examples", "csv", max_size)
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as e:
            raise InputError(f"--examples: cannot read {path}: {e}") from None
        if not rows or not any(rows[0]):
            raise InputError(f"{path}: a CSV file needs a header line of feature names")
        header = [h.strip() for h in rows[0]]
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:  # (the last column won, silently)
            raise InputError(f"{path}: the header names column {twice[0]!r} twice: give each feature one column")
        examples = []
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{path}:{number}: {len(row)} values for {len(header)} columns ({', '.join(header)})")
            examples.append(make_example(dict(zip(header, (v.strip() for v in row))), forced, f"{path}:{number}"))
        return examples
    text = files.read_text(path, "--examples", "json", max_size)
    try:
        data = files.load_json(text)
    except files.DuplicateKey as e:
        raise InputError(f"{path}: feature {e.args[0]!r} is given twice in one example: give each feature once") \
            from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(f"{path}: the JSON is nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise InputError(f"--examples: cannot read {path}: {e}") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise InputError(f'{path}: a JSON file must hold a list of feature maps, e.g. [{{"age": 31, "income": 5.2}}]')
    return [make_example(item, forced, f"{path}[{i}]") for i, item in enumerate(data)]


def add_arguments(parser):
    parser.add_argument("-e", "--example", action="append", default=[], metavar="NAME=VALUE,...",
                        help="one tf.Example, e.g. 'age=31,income=5.2' (repeatable)")
    parser.add_argument("--examples", metavar="FILE", action="append", default=[],
                        help="examples from FILE: .json (a list of feature maps), .csv (header = feature names) "
                             "or .tfrecord (serialized tf.Example records)")
    parser.add_argument("--context", metavar="NAME=VALUE,...", action="append", default=[],
                        help="features shared by every example (sent as example_list_with_context; repeatable)")
    parser.add_argument("--feature-type", action="append", default=[], metavar="NAME=TYPE",
                        help="force a feature's type: int, float or bytes (default: inferred from the values)")
    cli.add_file_limit(parser)


def build_input(args, message):
    """Fill `message` (a tensorflow.serving.Input) from the flags."""
    forced = parse_feature_types(args.feature_type)
    examples = [make_example(parse_pairs(text, f"--example {text!r}"), forced, f"--example {text!r}")
                for text in args.example]
    for path in args.examples:
        examples.extend(from_file(path, forced, getattr(args, "max_file_size", None)))
    if not examples:
        raise InputError("no examples: give --example 'name=value,...' or --examples FILE")
    if args.context:
        features = {}
        for text in args.context:  # (a second --context replaced the first, silently)
            for name, value in parse_pairs(text, f"--context {text!r}").items():
                if name in features:
                    raise InputError(f"--context: feature {name!r} is given twice: give each feature once")
                features[name] = value
        context = make_example(features, forced, "--context")
        message.example_list_with_context.context.CopyFrom(context)
        message.example_list_with_context.examples.extend(examples)
    else:
        message.example_list.examples.extend(examples)
