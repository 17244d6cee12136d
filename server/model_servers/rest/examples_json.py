"""Classify and Regress over REST: JSON examples into tf.Examples, and their answers (json_tensor.cc)."""

from tensorflow.core.example import feature_pb2

from ...util import status
from .b64 import decode_b64_object
from .json_reader import fill_signature, guard_depth
from .json_values import INT64, in_range, is_b64, is_double, json_type, to_bytes
from .json_writer import PrettyWriter, decimal_string, format_error

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
    if v is None or isinstance(v, list) or (isinstance(v, dict) and not is_b64(v)):
        raise status.invalid_argument(f"Feature: {name} has element with unexpected JSON type: {json_type(v)}")
    if type(v) is bool:
        _check_kind(name, feature, "int64_list")
        feature.int64_list.value.append(1 if v else 0)
    elif isinstance(v, dict):
        _check_kind(name, feature, "bytes_list")
        feature.bytes_list.value.append(decode_b64_object(v))
    elif isinstance(v, str):
        _check_kind(name, feature, "bytes_list")
        feature.bytes_list.value.append(to_bytes(v))
    elif is_double(v):
        _check_kind(name, feature, "float_list")
        feature.float_list.value.append(float(v))  # GetFloat(), no precision check (as _float_value)
    else:
        _check_kind(name, feature, "int64_list")
        if not in_range(v, INT64):
            raise status.invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(v)


def _make_example(v, example):
    """MakeExampleFromJsonObject."""
    if not isinstance(v, dict):
        raise status.invalid_argument(f"Example must be JSON object but got JSON {json_type(v)}")
    for name, content in v.items():
        feature = feature_pb2.Feature()
        for item in (content if isinstance(content, list) else [content]):
            _add_feature_value(item, name, feature)
        try:
            example.features.feature[name].CopyFrom(feature)
        except UnicodeEncodeError:  # its bytes kept as surrogates (json_reader): not a name protobuf can hold
            raise status.invalid_argument(f"Feature name is not valid UTF-8: {name}") from None


@guard_depth
def fill_example_request(document, request) -> None:
    """FillClassificationRequestFromJson / FillRegressionRequestFromJson (one code in TF Serving:
    its missing-'examples' message says "classify" for regress too)."""
    fill_signature(document, request)
    has_context = "context" in document
    if has_context:
        _make_example(document["context"], request.input.example_list_with_context.context)
    if "examples" not in document:
        raise format_error(document, "When method is classify, key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(document, "'examples' value is an empty array")
    for value in examples:
        target = (request.input.example_list_with_context.examples if has_context
                  else request.input.example_list.examples)
        _make_example(value, target.add())


def classify_response(response) -> str:
    """MakeJsonFromClassificationResult: {"results": [[[label, score], ...], ...]}."""
    result = response.result
    if not result.classifications:
        raise status.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classifications in result.classifications:
        writer.single_line_arrays = True
        writer.start_array()
        for cls in classifications.classes:
            writer.start_array()
            writer.string(cls.label)
            writer.raw(decimal_string(cls.score, True))
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
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line_arrays = True  # set once and never reset: "]" stays on the values' line
    writer.start_array()
    for regression in result.regressions:
        writer.raw(decimal_string(regression.value, True))
    writer.end_array()
    writer.end_object()
    return writer.text()
