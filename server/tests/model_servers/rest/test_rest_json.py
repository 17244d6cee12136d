"""model_servers/rest's JSON modules, in-process: TF Serving's JSON for the REST API (json_tensor.cc,
http_rest_api_util.cc).

Expected strings are TF Serving's bytes: rapidjson PrettyWriter layouts (4 spaces, single-line
arrays in rows), WriteDecimal numbers, and the messages word for word.
"""

import json
import math
import os

import grpc
import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, predict_pb2,
                                     regression_pb2)

from server.util import status
from server.servables import tensors
from hypothesis import example, given, settings
from testing.server_client import tensor_proto
from hypothesis import strategies as st

from server.model_servers.rest import examples_json, json_reader, json_values, json_writer, metadata_json, predict_json
from server.model_servers.rest.json_writer import error as json_error
from testing.paths import TESTDATA


F, D = types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE
I32, I64, S, B = types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_STRING, types_pb2.DT_BOOL


def signature(**dtypes):
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name, dtype in dtypes.items():
        sig.inputs[name].dtype = dtype
        sig.inputs[name].name = name + ":0"
    return sig


def fill(body, sig):
    """parse + fill_predict_request: (request, columnar)."""
    request = predict_pb2.PredictRequest()
    columnar = predict_json.fill_predict_request(json_reader.parse(body), sig, request)
    return request, columnar


def failure(function, *args):
    with pytest.raises(status.ServingError) as info:
        function(*args)
    return info.value.code, info.value.message


def fill_error(body, sig):
    code, message = failure(fill, body, sig)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    return message


def shape(proto):
    return [d.size for d in proto.tensor_shape.dim]


def outputs(**arrays):
    response = predict_pb2.PredictResponse()
    for name, array in arrays.items():
        response.outputs[name].CopyFrom(array if isinstance(array, tensor_pb2.TensorProto) else tensor_proto(array))
    return response


# ---------------------------------------------------------------------------------------------
# error bodies

def test_error_body_layout():
    assert json_error("Servable not found for request: Latest(half)") == (
        '{\n    "error": "Servable not found for request: Latest(half)"\n}')


def test_error_body_escapes_like_rapidjson():
    message = 'q"b\\s/n\nt\tr\rb\bf\f\x01\x1f\x7f é ✓'
    assert json_error(message) == (
        '{\n    "error": "q\\"b\\\\s/n\\nt\\tr\\rb\\bf\\f\\u0001\\u001F\x7f é ✓"\n}')


# ---------------------------------------------------------------------------------------------
# WriteDecimal

@pytest.mark.parametrize("value, text", [
    (3, "3.0"), (0.5, "0.5"), (9000000, "9e+06"), (999999, "999999.0"), (0.00003, "3e-05"),
    (555557.5, "555557.5"), (10.8054295, "10.8054295"), (123456789, "123456792.0"), (0.1, "0.1"),
    (-2.5, "-2.5"), (0.0, "0.0"), (-0.0, "-0.0"), (1e-10, "1e-10"), (3.4028234663852886e38, "3.40282347e+38"),
    (math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"),
])
def test_float32_values(value, text):
    response = outputs(y=np.array(value, np.float32))
    assert predict_json.predict_response(response, True) == '{\n    "outputs": %s\n}' % text
    vector = outputs(y=np.array([value, value], np.float32))
    assert predict_json.predict_response(vector, False) == '{\n    "predictions": [%s, %s\n    ]\n}' % (text, text)


@pytest.mark.parametrize("value, text", [
    (0.1 + 0.2, "0.30000000000000004"), (3, "3.0"), (0.1, "0.1"), (1e300, "1e+300"), (123456789, "123456789.0"),
    (10.8054295, "10.805429500000001"), (1 / 3, "0.33333333333333331"), (math.nan, "NaN"), (-math.inf, "-Infinity"),
])
def test_float64_values(value, text):
    response = outputs(y=np.array([value], np.float64))
    assert predict_json.predict_response(response, False) == '{\n    "predictions": [%s\n    ]\n}' % text


# ---------------------------------------------------------------------------------------------
# Predict responses: layouts

def test_row_one_output_1d():
    response = outputs(y=np.array([2.5, 3.0, 4.5], np.float32))
    assert predict_json.predict_response(response, False) == '{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'


def test_row_one_output_2d():
    response = outputs(y=np.array([[2.5, 3.0], [3.5, 4.0]], np.float32))
    assert predict_json.predict_response(response, False) == (
        '{\n    "predictions": [[2.5, 3.0], [3.5, 4.0]\n    ]\n}')


def test_row_one_output_3d_and_single_row():
    response = outputs(y=np.arange(8, dtype=np.int32).reshape(2, 2, 2))
    assert predict_json.predict_response(response, False) == (
        '{\n    "predictions": [[[0, 1], [2, 3]], [[4, 5], [6, 7]]\n    ]\n}')
    one = outputs(y=np.array([[1.0]], np.float32))
    assert predict_json.predict_response(one, False) == '{\n    "predictions": [[1.0]\n    ]\n}'


def test_row_several_outputs_are_objects_in_sorted_order():
    response = outputs(b=np.array([[1, 2], [3, 4]], np.int64), a=np.array([1.0, 2.0], np.float32))
    assert predict_json.predict_response(response, False) == (
        '{\n    "predictions": [\n        {\n            "a": 1.0,\n            "b": [1, 2]\n        },\n'
        '        {\n            "a": 2.0,\n            "b": [3, 4]\n        }\n    ]\n}')


def test_columnar_one_output():
    response = outputs(y=np.array([2.5, 3.0, 4.5], np.float32))
    assert predict_json.predict_response(response, True) == (
        '{\n    "outputs": [\n        2.5,\n        3.0,\n        4.5\n    ]\n}')
    matrix = outputs(y=np.array([[1, 2], [3, 4]], np.float32))
    assert predict_json.predict_response(matrix, True) == (
        '{\n    "outputs": [\n        [\n            1.0,\n            2.0\n        ],\n        [\n'
        '            3.0,\n            4.0\n        ]\n    ]\n}')


def test_columnar_several_outputs_and_scalars():
    response = outputs(b=np.array([3, 4], np.int32), a=np.array([1.0, 2.0], np.float32))
    assert predict_json.predict_response(response, True) == (
        '{\n    "outputs": {\n        "a": [\n            1.0,\n            2.0\n        ],\n'
        '        "b": [\n            3,\n            4\n        ]\n    }\n}')
    scalars = outputs(x=np.array(2.5, np.float32), n=np.array(7, np.int64))
    assert predict_json.predict_response(scalars, True) == (
        '{\n    "outputs": {\n        "n": 7,\n        "x": 2.5\n    }\n}')


def test_empty_dimensions():
    assert predict_json.predict_response(outputs(y=np.zeros((0,), np.float32)), True) == '{\n    "outputs": []\n}'
    response = outputs(y=np.zeros((2, 0), np.float32))
    assert predict_json.predict_response(response, False) == '{\n    "predictions": [[], []\n    ]\n}'
    assert predict_json.predict_response(response, True) == '{\n    "outputs": [\n        [],\n        []\n    ]\n}'


def test_value_types():
    response = outputs(
        i64=np.array([-(2**63), 2**63 - 1], np.int64), u64=np.array([0, 2**64 - 1], np.uint64),
        u32=np.array([1, 2**32 - 1], np.uint32), flag=np.array([True, False]),
        i8=np.array([-128, 127], np.int8), u8=np.array([0, 255], np.uint8), i16=np.array([-5, 5], np.int16))
    assert predict_json.predict_response(response, False) == (
        '{\n    "predictions": [\n        {\n            "flag": true,\n            "i16": -5,\n'
        '            "i64": -9223372036854775808,\n            "i8": -128,\n            "u32": 1,\n'
        '            "u64": 0,\n            "u8": 0\n        },\n        {\n            "flag": false,\n'
        '            "i16": 5,\n            "i64": 9223372036854775807,\n            "i8": 127,\n'
        '            "u32": 4294967295,\n            "u64": 18446744073709551615,\n            "u8": 255\n'
        '        }\n    ]\n}')


def test_strings_are_raw_and_escaped():
    response = outputs(s=np.array([b'a "q"\n', "é".encode(), b"\xff\x00"], object))
    text = predict_json.predict_response(response, False)
    assert text == '{\n    "predictions": ["a \\"q\\"\\n", "é", "\udcff\\u0000"\n    ]\n}'
    # invalid UTF-8 is carried as surrogate escapes: TF Serving's raw bytes on the wire
    assert text.encode("utf-8", "surrogateescape").endswith(b'"\xff\\u0000"\n    ]\n}')


def test_bytes_outputs_are_base64_objects():
    response = outputs(img_bytes=np.array([b"hello", b"world"], object))
    assert predict_json.predict_response(response, False) == (
        '{\n    "predictions": [{\n            "b64": "aGVsbG8="\n        }, {\n            "b64": "d29ybGQ="\n'
        '        }\n    ]\n}')
    assert predict_json.predict_response(response, True) == (
        '{\n    "outputs": [\n        {\n            "b64": "aGVsbG8="\n        },\n        {\n'
        '            "b64": "d29ybGQ="\n        }\n    ]\n}')
    several = outputs(x_bytes=np.array([b"\x00\xff"], object), x=np.array([b"\x00\xff"], object))
    assert predict_json.predict_response(several, False) == (
        '{\n    "predictions": [\n        {\n            "x": "\\u0000\udcff",\n            "x_bytes": {\n'
        '                "b64": "AP8="\n            }\n        }\n    ]\n}')


def test_tensor_content_outputs_are_decoded():
    proto = tensor_proto(np.array([[1.5, 2.0]], np.float32), as_tensor_content=True)
    assert predict_json.predict_response(outputs(y=proto), False) == '{\n    "predictions": [[1.5, 2.0]\n    ]\n}'


@pytest.mark.parametrize("response, columnar, message", [
    (predict_pb2.PredictResponse(), False, "Cannot convert empty tensor map to JSON"),
    (predict_pb2.PredictResponse(), True, "Cannot convert empty tensor map to JSON"),
    (outputs(a=np.array([1.0, 2.0], np.float32), s=np.array(1.0, np.float32)), False,
     "Tensor name: s has no shape information "),
    (outputs(a=np.zeros(2, np.float32), b=np.zeros(3, np.float32)), False,
     "Tensor name: b has inconsistent batch size: 3 expecting: 2"),
    (outputs(h=np.array([1.0], np.float16)), False, "Failed to write JSON value for tensor type: half"),
    (outputs(h=np.array([1.0], np.float16)), True, "Failed to write JSON value for tensor type: half"),
    (outputs(c=np.array([1j], np.complex64)), True, "Failed to write JSON value for tensor type: complex64"),
    (outputs(u=np.array([1], np.uint16)), True, "Failed to write JSON value for tensor type: uint16"),
])
def test_predict_response_errors(response, columnar, message):
    assert failure(predict_json.predict_response, response, columnar) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_unsupported_type_without_values_writes_nothing():
    assert predict_json.predict_response(outputs(h=np.zeros((0,), np.float16)), True) == '{\n    "outputs": []\n}'


def test_zero_batch_rows():
    # json_tensor_test.cc FromJsonSingleZeroBatchTensor, FromJsonMultipleZeroBatchTensors(Errors): a batch of
    # 0 answers { "predictions": [] } (the old "has invalid batch size: 0" error is gone)
    one = outputs(int_tensor=np.zeros((0, 2), np.int32))
    assert predict_json.predict_response(one, False) == '{\n    "predictions": []\n}'
    two = outputs(str_tensor=np.zeros((0, 1, 2), object), float_tensor=np.zeros((0, 3, 4), np.float32))
    assert predict_json.predict_response(two, False) == '{\n    "predictions": []\n}'
    mixed = outputs(int_tensor=np.zeros((0, 2), np.int32), str_tensor=np.array([[b"foo", b"bar"]], object))
    assert failure(predict_json.predict_response, mixed, False) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Tensor name: str_tensor has inconsistent batch size: 1 expecting: 0")


# ---------------------------------------------------------------------------------------------
# Parsing the body

@pytest.mark.parametrize("body, message", [
    (b"", "JSON Parse error: The document is empty"),
    (b"  \n", "JSON Parse error: The document is empty. at offset: 3"),
    (b"x", "JSON Parse error: Invalid value. at offset: 0"),
    (b"{\"instances\": [1.0, 2.0],}", "JSON Parse error: Missing a name for object member. at offset: 25"),
    (b"{\"a\" 1}", "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b"{\"a\": 1 \"b\": 2}", "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
    (b"[1, 2", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 5"),
    (b"{\"a\": nul}", "JSON Parse error: Invalid value. at offset: 9"),
    (b"{\"a\": tru}", "JSON Parse error: Invalid value. at offset: 9"),
    (b"{\"a\": \"x}", "JSON Parse error: Missing a closing quotation mark in string. at offset: 9"),
    (b"{\"a\": \"x\x01\"}", "JSON Parse error: Invalid escape character in string. at offset: 8"),
    (b"{\"a\": \"\\x\"}", "JSON Parse error: Invalid escape character in string. at offset: 7"),
    (b"{\"a\": \"\\u12G4\"}", "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 7"),
    (b"{\"a\": \"\\ud800\"}", "JSON Parse error: The surrogate pair in string is invalid. at offset: 7"),
    (b"{\"a\": \"\\ud800\\u0041\"}", "JSON Parse error: The surrogate pair in string is invalid. at offset: 7"),
    (b"{\"a\": 1e400}", "JSON Parse error: Number too big to be stored in double. at offset: 6"),
    (b"{\"a\": -1" + b"0" * 400 + b"}", "JSON Parse error: Number too big to be stored in double. at offset: 6"),
    (b"{\"a\": 1.}", "JSON Parse error: Miss fraction part in number. at offset: 8"),
    (b"{\"a\": 1e}", "JSON Parse error: Miss exponent in number. at offset: 8"),
    (b"{\"a\": -}", "JSON Parse error: Invalid value. at offset: 7"),
    (b"{\"a\": Nope}", "JSON Parse error: Invalid value. at offset: 7"),
    (b"{\"a\": Infinit}", "JSON Parse error: Invalid value. at offset: 13"),
    (b"{\"a\": 01}", "JSON Parse error: Missing a comma or '}' after an object member. at offset: 7"),
    (b"]", "JSON Parse error: The document is empty. at offset: 0"),  # the iterative parser's start state
    (b" \n}", "JSON Parse error: The document is empty. at offset: 2"),
    (b",", "JSON Parse error: The document is empty. at offset: 0"),
    (b"{\"a\": NaIx}", "JSON Parse error: Invalid value. at offset: 9"),  # "NaI": then tried as "Inf"
    (b"{\"a\": 'x'}", "JSON Parse error: Invalid value. at offset: 6"),
])
def test_parse_errors(body, message):
    assert failure(json_reader.parse, body) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_parse_accepts_what_rapidjson_accepts():
    document = json_reader.parse(b'\xef\xbb\xbf {"a": [NaN, Infinity, -Infinity, Inf, -Inf, -NaN]}\x00 trailing')
    values = document["a"]
    assert math.isnan(values[0]) and math.isnan(values[5])
    assert values[1:5] == [math.inf, -math.inf, math.inf, -math.inf]
    assert json_reader.parse(b'{"s": "\xff\xfe", "k": "\\ud83d\\ude00", "l": "\\udc80"}') == {
        "s": "\udcff\udcfe", "k": "\U0001F600", "l": "\udced\udcb2\udc80"}
    assert json_reader.parse(b'{"a": 1, "a": 2}') == {"a": 1}  # FindMember finds the first
    assert json_reader.parse(b'{"a": -NaInf}') == {"a": -math.inf}  # a failed "NaN" reads on as "Inf"
    big = json_reader.parse(b'{"a": [18446744073709551615, 18446744073709551616, -9223372036854775809, 1E+2]}')["a"]
    # integers beyond [-2**63, 2**64 - 1] are doubles to rapidjson (json.loads keeps them as ints: same reading)
    assert [float(v) for v in big] == [1.8446744073709552e19, 1.8446744073709552e19, -9.223372036854776e18, 100.0]
    assert [json_values.is_double(v) for v in big] == [False, True, True, True]


def test_parse_document_must_be_an_object():
    assert failure(json_reader.parse, b"[1, 2.5]") == (
        grpc.StatusCode.INVALID_ARGUMENT, "JSON Value: [1, 2.5] Is not object")
    assert failure(json_reader.parse, b"2.5")[1] == "JSON Value: 2.5 Is not object"
    assert failure(json_reader.parse, b'"x"')[1] == 'JSON Value: "x" Is not object'
    assert failure(json_reader.parse, b"null")[1] == "JSON Value: null Is not object"
    # rapidjson's Writer refuses NaN inside a value: the message's JSON stops there
    assert failure(json_reader.parse, b"[1, NaN, 3]")[1] == "JSON Value: [1,  Is not object"
    assert failure(json_reader.parse, b"NaN")[1] == "JSON Value:  Is not object"


def test_parse_signature_name_must_be_a_string():
    body = b'{"signature_name": 5, "instances": [[1,2],[3,4]]}'
    assert failure(json_reader.parse, body) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        'JSON Value: {\n    "signature_name": 5,\n    "instances": [[1, 2], [3, 4]]\n} not formatted correctly. '
        "'signature_name' key must be a string value.")


# json_tensor.cc ParseJson parses with kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag:
# the document is the first JSON value, and nothing after it is read.

@pytest.mark.parametrize("body", [
    b'{"instances": [1]} garbage', b'{"instances": [1]}{"instances": [2, 3]}', b'{"instances": [1]}]]',
    b'{"instances": [1]} {', b'{"instances": [1]}\xff\xfe', b'{"instances": [1]}, "inputs": [2]}',
    b'\n{"instances": [\n1\n]}\n\n{} {}', b'{"instances": [1]}\x00{"inputs": 1}',
])
def test_content_after_the_document_is_ignored(body):
    request, columnar = fill(body, signature(x=I32))
    assert not columnar and shape(request.inputs["x"]) == [1] and list(request.inputs["x"].int_val) == [1]


def test_parse_stops_after_the_first_value():
    assert json_reader.parse(b"{} {}") == {}
    assert json_reader.parse(b'{"a": [1, 2]}]]]') == {"a": [1, 2]}
    assert json_reader.parse(b'{"a": "\\ud83d\\ude00"} \\ud800') == {"a": "\U0001F600"}
    # a root that is not a container ends where its token ends; it is still not an object
    assert failure(json_reader.parse, b"123abc")[1] == "JSON Value: 123 Is not object"
    assert failure(json_reader.parse, b"[1] x")[1] == "JSON Value: [1] Is not object"
    assert failure(json_reader.parse, b'"s" "t"')[1] == 'JSON Value: "s" Is not object'
    # what is wrong inside the first value is still an error
    assert failure(json_reader.parse, b'{"a": [1,]} x')[1] == "JSON Parse error: Invalid value. at offset: 9"
    assert failure(json_reader.parse, b"1.")[1] == "JSON Parse error: Miss fraction part in number. at offset: 2"


def test_any_depth_parses():
    # json_tensor_test.cc DeeplyNestedWellFormed / DeeplyNestedMalformed (500000 levels there)
    depth = 200000
    body = b'{"instances":[1], "nested":' + b"[" * depth + b"]" * depth + b"}"
    request, _ = fill(body, signature(default=I32))
    assert list(request.inputs) == ["default"]
    body = b'{"signature_name":' + b"[" * depth + b"]" * depth + b"}"
    assert fill_error(body, signature(default=I32)) == (
        'JSON Value: {\n    "signature_name": ' + "[" * 232
        + " not formatted correctly. 'signature_name' key must be a string value.")


# json_tensor.cc JsonValueToDebugString: PrettyWriter with kFormatSingleLineArray, through
# JsonWriterWithLimit (kMaxJsonDebugStringBytes = 256: no event once the text holds 256 bytes; no marker)

def test_json_value_text_has_arrays_on_one_line():
    body = b'{"signature_name": {"a": [{"b": [1, {"c": []}]}, {}], "d": {}}}'
    assert failure(json_reader.parse, body)[1] == (
        'JSON Value: {\n    "signature_name": {\n        "a": [{\n                "b": [1, {\n'
        '                        "c": []\n                    }]\n            }, {}],\n        "d": {}\n'
        "    }\n} not formatted correctly. 'signature_name' key must be a string value.")


def test_json_value_text_is_cut_after_256_bytes():
    suffix = " not formatted correctly. 'signature_name' key must be a string value."
    numbers = b'{"signature_name": [' + b", ".join(b"%d" % i for i in range(200)) + b"]}"
    assert failure(json_reader.parse, numbers)[1] == (
        'JSON Value: {\n    "signature_name": [' + ", ".join(map(str, range(61))) + suffix)  # 257 bytes
    # bytes, not characters: "éé" is 4 bytes
    accents = b'{"signature_name": [' + b", ".join([b'"\xc3\xa9\xc3\xa9"'] * 100) + b"]}"
    assert failure(json_reader.parse, accents)[1] == (
        'JSON Value: {\n    "signature_name": [' + ", ".join(['"éé"'] * 30) + suffix)
    # an event begun under the limit is written whole; the next one is refused
    long = b'{"signature_name": 1, "s": "' + b"x" * 1000 + b'", "t": 2}'
    assert failure(json_reader.parse, long)[1] == (
        'JSON Value: {\n    "signature_name": 1,\n    "s": "' + "x" * 1000 + '"' + suffix)
    # the same cut in every message that shows a JSON value
    row = b'{"instances": [{"a": [' + b", ".join(b"%d" % i for i in range(100)) + b']}]}'
    assert fill_error(row, signature(a=I32, b=I32)) == (
        "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": ["
        + ", ".join(map(str, range(64))) + " keys must be equal to: a,b")


def test_json_value_text_writes_numbers_as_rapidjson_writer_does():
    # Writer::Double (Grisu2, no '+' in exponents); 64-bit integers as they are
    body = (b'[1e39, 1.0000001, 0.1, 1e-7, 123456789012.0, -0.0, 1E2, 5e-324, 1.7976931348623157e308, '
            b'-9223372036854775808]')
    assert failure(json_reader.parse, body)[1] == (
        "JSON Value: [1e39, 1.0000001, 0.1, 1e-7, 123456789012.0, -0.0, 100.0, 5e-324, 1.7976931348623157e308, "
        "-9223372036854775808] Is not object")
    assert fill_error(b'{"inputs": [3.4e38]}', signature(x=I32)) == (
        "JSON Value: 3.4e38 Type: Number is not of expected type: int32")
    # Grisu2's digits round-trip but are not always the shortest: 0.1 + 0.2 is written ...07, not ...04
    assert fill_error(b'{"inputs": [0.30000000000000004]}', signature(x=B)) == (
        "JSON Value: 0.30000000000000007 Type: Number is not of expected type: bool")
    # NaN and Infinity stop rapidjson's Writer: the text ends before them
    assert fill_error(b'{"inputs": [NaN]}', signature(x=B)) == "JSON Value:  Type: Number is not of expected type: bool"


def test_json_value_text_keeps_repeated_names():
    # rapidjson keeps every member: FindMember sees the first, Accept writes them all
    assert failure(json_reader.parse, b'{"signature_name": 1, "signature_name": "x"}')[1] == (
        'JSON Value: {\n    "signature_name": 1,\n    "signature_name": "x"\n} not formatted correctly. '
        "'signature_name' key must be a string value.")
    # and MemberCount() counts them: two "b64" members are not a base64 object
    assert fill_error(b'{"inputs": [{"b64": "aGk=", "b64": "aGk="}]}', signature(x=S)) == (
        'JSON Value: {\n    "b64": "aGk=",\n    "b64": "aGk="\n} not formatted correctly for base64 data')
    request, _ = fill(b'{"inputs": [{"b64": "aGk="}]}', signature(x=S))
    assert list(request.inputs["x"].string_val) == [b"hi"]


# ---------------------------------------------------------------------------------------------
# Predict requests

def test_rows_of_int32():
    request, columnar = fill(b'{"instances": [[1,2],[3,4],[5,6]]}', signature(default=I32))
    assert not columnar
    tensor = request.inputs["default"]
    assert tensor.dtype == I32 and shape(tensor) == [3, 2] and list(tensor.int_val) == [1, 2, 3, 4, 5, 6]


def test_mixed_numbers_for_float_and_double():
    request, _ = fill(b'{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', signature(default=F))
    assert list(request.inputs["default"].float_val) == pytest.approx([1, 2, 3, 4, 5.003, 0.007, 0])
    request, _ = fill(b'{"instances": [1.0, 2, 0.662, 0]}', signature(default=D))
    assert list(request.inputs["default"].double_val) == [1.0, 2.0, 0.662, 0.0]


def test_signature_name_is_set():
    request, _ = fill(b'{"signature_name": "predict_images", "instances": [[1,2]]}', signature(default=I32))
    assert request.model_spec.signature_name == "predict_images"
    assert shape(request.inputs["default"]) == [1, 2]


def test_base64_rows():
    request, _ = fill(b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', signature(default=S))
    assert list(request.inputs["default"].string_val) == [b"hello", b"world"]
    assert shape(request.inputs["default"]) == [2]
    request, _ = fill(b'{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}', signature(default=S))
    assert shape(request.inputs["default"]) == [2, 1]
    request, _ = fill(b'{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}',
                      signature(default=S))
    assert shape(request.inputs["default"]) == [1, 2, 1]
    assert list(request.inputs["default"].string_val) == [b"hello", b"world"]


@pytest.mark.parametrize("text, decoded", [
    ("aGVsbG8=", b"hello"), ("aGVsbG8", b"hello"), ("aGVs bG8=\n", b"hello"), ("aGVsbG8.", b"hello"),
    ("", b""), ("AP8=", b"\x00\xff"), ("QR==", b"A"),
])
def test_base64_variants_absl_accepts(text, decoded):
    request, _ = fill(json.dumps({"inputs": {"b64": text}}).encode(), signature(x=S))
    assert list(request.inputs["x"].string_val) == [decoded]


@pytest.mark.parametrize("text", ["aGVsbG8==", "a", "aGVs!G8=", "aG=VsbG8", "aGVsbG8=x"])
def test_base64_that_does_not_decode(text):
    assert fill_error(json.dumps({"inputs": {"b64": text}}).encode(), signature(x=S)) == "Unable to base64 decode"


def test_named_rows_of_several_types():
    sig = signature(int_tensor=I32, str_tensor=S, float_tensor=F, dbl_tensor=D)
    request, columnar = fill(b'''{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"], "float_tensor": [1.0, NaN],
         "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"], "float_tensor": [2.0, Infinity],
         "dbl_tensor": [2.0]}]}''', sig)
    assert not columnar
    assert shape(request.inputs["int_tensor"]) == [2, 3, 2]
    assert list(request.inputs["int_tensor"].int_val) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert list(request.inputs["str_tensor"].string_val) == [b"foo", b"bar", b"baz", b"bat"]
    floats = list(request.inputs["float_tensor"].float_val)
    assert floats[0] == 1.0 and math.isnan(floats[1]) and floats[2:] == [2.0, math.inf]
    assert shape(request.inputs["dbl_tensor"]) == [2, 1]
    assert request.inputs["dbl_tensor"].dtype == D


def test_columnar():
    request, columnar = fill(b'{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}', signature(int_tensor=I32))
    assert columnar and shape(request.inputs["int_tensor"]) == [1, 3, 2]
    request, columnar = fill(b'{"inputs": [[[1,2],[3,4],[5,6]]]}', signature(int_tensor=I32))
    assert columnar and shape(request.inputs["int_tensor"]) == [1, 3, 2]
    sig = signature(int_tensor=I32, str_tensor=S, bin_tensor=S)
    request, _ = fill(b'{"inputs": {"int_tensor": [[1,2]], "str_tensor": ["foo", "bar"],'
                      b' "bin_tensor": {"b64": "aGVsbG8="}, "extra": 1}}', sig)
    assert sorted(request.inputs) == ["bin_tensor", "int_tensor", "str_tensor"]  # extra keys are ignored
    assert shape(request.inputs["bin_tensor"]) == [] and list(request.inputs["bin_tensor"].string_val) == [b"hello"]
    assert list(request.inputs["str_tensor"].string_val) == [b"foo", b"bar"]
    request, _ = fill(b'{"inputs": 3.5}', signature(x=F))
    assert shape(request.inputs["x"]) == [] and list(request.inputs["x"].float_val) == [3.5]


def test_value_conversions():
    request, _ = fill(b'{"inputs": {"a": [2147483647, -2147483648], "b": [9223372036854775807], '
                      b'"c": [4294967295], "d": [18446744073709551615], "e": [true, false], "f": [300, -1], '
                      b'"g": [16777215, -16777215, 3.4e38], "h": [9007199254740991, 1e308]}}',
                      signature(a=I32, b=I64, c=types_pb2.DT_UINT32, d=types_pb2.DT_UINT64, e=B,
                                f=types_pb2.DT_UINT8, g=F, h=D))
    inputs = request.inputs
    assert list(inputs["a"].int_val) == [2**31 - 1, -(2**31)]
    assert list(inputs["b"].int64_val) == [2**63 - 1]
    assert list(inputs["c"].uint32_val) == [2**32 - 1]
    assert list(inputs["d"].uint64_val) == [2**64 - 1]
    assert list(inputs["e"].bool_val) == [True, False]
    assert list(inputs["f"].int_val) == [300, -1]  # IsInt() only, as TF Serving: no uint8 range check
    assert list(inputs["g"].float_val) == [16777215.0, -16777215.0, pytest.approx(3.4e38)]
    assert list(inputs["h"].double_val) == [9007199254740991.0, 1e308]


@pytest.mark.parametrize("body", [b'{"instances": [1435774380]}', b'{"instances": [1435774380.0]}',
                                  b'{"inputs": [1435774380]}', b'{"inputs": 1435774380}'])
def test_integers_for_float_inputs_are_rounded_not_refused(body):
    # json_tensor_test.cc FloatTensorWithPrecisionLoss; g3doc/api_rest.md "Floating Point Precision":
    # 1435774380 sent to a float input becomes 1435774336
    request, _ = fill(body, signature(default=F))
    assert list(request.inputs["default"].float_val) == [1435774336.0]


def test_numbers_beyond_float_range_become_infinity_or_zero():
    # json_tensor_test.cc FloatTensorThatExceedsMaxReturnsInf / FloatTensorThatExceedsMinReturnsZero (their
    # bodies hold absl::Substitute's 6-digit DBL_MAX and DBL_MIN)
    request, _ = fill(b'{"instances": [1.79769e+308, -1.79769e+308, 2.22507e-308, -2.22507e-308, 1e39, -1e39]}',
                      signature(default=F))
    values = list(request.inputs["default"].float_val)
    assert values == [math.inf, -math.inf, 0.0, 0.0, math.inf, -math.inf]
    assert math.copysign(1.0, values[3]) == -1.0


def test_numbers_are_read_as_getfloat_and_getdouble_do():
    # GetFloat() is static_cast<float>(GetDouble()); GetDouble() of an integer is the nearest double
    request, _ = fill(b'{"inputs": {"f": [16777217, -16777217, 18446744073709551615, -9223372036854775808, 3e38], '
                      b'"d": [9007199254740993, -9007199254740993, 18446744073709551615, 1e308]}}', signature(f=F, d=D))
    assert list(request.inputs["f"].float_val) == [16777216.0, -16777216.0, 2.0**64, -(2.0**63),
                                                   float(np.float32(3e38))]
    assert list(request.inputs["d"].double_val) == [9007199254740992.0, -9007199254740992.0, 2.0**64, 1e308]
    request, _ = fill(b'{"instances": [[16777217], [1e39]]}', signature(x=F))
    assert list(request.inputs["x"].float_val) == [16777216.0, math.inf]


@pytest.mark.parametrize("value, dtype, message", [
    ('"x"', F, 'JSON Value: "x" Type: String is not of expected type: float'),
    ("true", F, "JSON Value: true Type: True is not of expected type: float"),
    ("null", D, "JSON Value: null Type: Null is not of expected type: double"),
    ("2.0", I32, "JSON Value: 2.0 Type: Number is not of expected type: int32"),
    ("2147483648", I32, "JSON Value: 2147483648 Type: Number is not of expected type: int32"),
    ("9223372036854775808", I64, "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64"),
    ("-1", types_pb2.DT_UINT32, "JSON Value: -1 Type: Number is not of expected type: uint32"),
    ("-1", types_pb2.DT_UINT64, "JSON Value: -1 Type: Number is not of expected type: uint64"),
    ("1", B, "JSON Value: 1 Type: Number is not of expected type: bool"),
    ("1", S, "JSON Value: 1 Type: Number is not of expected type: string"),
    ('{"a": 1}', F, 'JSON Value: {\n    "a": 1\n} Type: Object is not of expected type: float'),
    ('{"b64": "aGVsbG8="}', I32, 'JSON Value: {\n    "b64": "aGVsbG8="\n} Type: Object is not of expected type: int32'),
    ("1.0000001", I64, "JSON Value: 1.0000001 Type: Number is not of expected type: int64"),
    ("1e39", I64, "JSON Value: 1e39 Type: Number is not of expected type: int64"),
    ('{"b64": 1}', S, 'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data'),
    ('{"b64": "aGVsbG8=", "c": 1}', S,
     'JSON Value: {\n    "b64": "aGVsbG8=",\n    "c": 1\n} not formatted correctly for base64 data'),
])
def test_columnar_value_errors(value, dtype, message):
    assert fill_error(b'{"inputs": [%s]}' % value.encode(), signature(x=dtype)) == message


def test_unsupported_input_types_are_unimplemented():
    body = b'{"inputs": [1.5]}'
    assert failure(fill, body, signature(x=types_pb2.DT_HALF)) == (
        grpc.StatusCode.UNIMPLEMENTED, "Conversion of JSON Value: 1.5 to type: half")
    # in rows the item error is wrapped, code and all, into an INVALID_ARGUMENT
    assert fill_error(b'{"instances": [1.5]}', signature(x=types_pb2.DT_BFLOAT16)) == (
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: "
        "Conversion of JSON Value: 1.5 to type: bfloat16")


DOC = '{\n    "instances": [1],\n    "inputs": [1]\n}'


@pytest.mark.parametrize("body, sig, message", [
    (b'{"instances": [1], "inputs": [1]}', signature(x=F),
     "JSON Value: " + DOC + " Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
    (b'{"signature_name": "s"}', signature(x=F), "Missing 'inputs' or 'instances' key"),
    (b'{"instances": 1}', signature(x=F),
     "JSON Value: {\n    \"instances\": 1\n} Expecting 'instances' to be an list/array"),
    (b'{"instances": {"x": 1}}', signature(x=F),
     "JSON Value: {\n    \"instances\": {\n        \"x\": 1\n    }\n} Expecting 'instances' to be an list/array"),
    (b'{"instances": []}', signature(x=F), "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
    (b'{"instances": [[1,2],[3,4],[5,6,7]]}', signature(x=I32),
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but got: 3"),
    (b'{"instances": [[1,2],[3,4],[[5,6]]]}', signature(x=I32),
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [2] but got: [1,2]"),
    (b'{"instances": [1, [1]]}', signature(x=I32),
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [] but got: [1]"),
    (b'{"instances": [[1, 2], [3, [4]]]}', signature(x=I32),
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Encountered list at unexpected level: 1 expected < 1"),
    (b'{"instances": [[[1, 2], 3]]}', signature(x=I32),
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    (b'{"instances": [[[1, 2], [3]]]}', signature(x=I32),
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    (b'{"instances": [["x", "y"]]}', signature(x=F),
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     'JSON Value: "x" Type: String is not of expected type: float'),
    (b'{"instances": [1, 2]}', signature(a=F, b=F),
     "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
     "tensorinfo_map"),
    (b'{"instances": [{"a": 1, "b": 2}, [1]]}', signature(a=F, b=F),
     "Expecting object but got list at item 1 of input list"),
    (b'{"instances": [[1], {"x": 1}]}', signature(x=F), "Expecting value/list but got object at item 1 of input list"),
    (b'{"instances": [{"b": 1}]}', signature(b=F, a=F),
     "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"b\": 1\n} keys must be equal to: a,b"),
    (b'{"instances": [{"a": 1, "b": 2, "c": 3}]}', signature(b=F, a=F),
     "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON object: does not have named input: c"),
    (b'{"instances": [{"a": 1, "b": [2]}, {"a": 1, "b": [2, 3]}]}', signature(b=F, a=F),
     "Failed to process element: 1 key: b of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting tensor size: 1 but got: 2"),
    (b'{"instances": [{"a": "x"}]}', signature(a=F),
     "Failed to process element: 0 key: a of 'instances' list. Error: INVALID_ARGUMENT: "
     'JSON Value: "x" Type: String is not of expected type: float'),
    (b'{"inputs": [1, 2]}', signature(a=F, b=F),
     "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
     "tensorinfo_map"),
    (b'{"inputs": {"b64": "aGVsbG8="}}', signature(a=S, b=S),
     "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
     "tensorinfo_map"),
    (b'{"inputs": {"b": [1], "c": [2]}}', signature(b=F, a=F), "Missing named input: a in 'inputs' object."),
    (b'{"inputs": [[1, 2], [3]]}', signature(x=F),
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    (b'{"inputs": [1]}', meta_graph_pb2.SignatureDef(), "Failed to get input map for signature: DEFAULT"),
    (b'{"signature_name": "sig", "inputs": [1]}', meta_graph_pb2.SignatureDef(),
     "Failed to get input map for signature: sig"),
])
def test_predict_request_errors(body, sig, message):
    assert fill_error(body, sig) == message


def test_a_single_named_row_object_and_ragged_rows():
    # one input, rows as objects; then rows whose elements are b64 objects (not named objects)
    request, _ = fill(b'{"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}', signature(x=I64))
    assert shape(request.inputs["x"]) == [2, 2] and list(request.inputs["x"].int64_val) == [1, 2, 3, 4]
    request, _ = fill(b'{"instances": [{"b64": "YQ=="}, "b"]}', signature(x=S))
    assert shape(request.inputs["x"]) == [2] and list(request.inputs["x"].string_val) == [b"a", b"b"]


def test_fill_predict_request_checks_the_document_itself():
    request = predict_pb2.PredictRequest()
    assert failure(predict_json.fill_predict_request, [1], signature(x=F), request)[1] == (
        "JSON Value: [1] Is not object")
    assert failure(predict_json.fill_predict_request, {"signature_name": 1, "inputs": [1]}, signature(x=F),
                   request)[1].endswith("'signature_name' key must be a string value.")


def test_round_trip_through_predict_response():
    request, columnar = fill(b'{"instances": [[1.0], [2.0], [5.0]]}', signature(x=F))
    x = tensors.to_ndarray(request.inputs["x"])
    response = outputs(y=x * np.float32(0.5) + np.float32(2))
    assert predict_json.predict_response(response, columnar) == '{\n    "predictions": [[2.5], [3.0], [4.5]\n    ]\n}'
    request, columnar = fill(b'{"signature_name": "serving_default", "inputs": [3.0, 4.0]}', signature(x=F))
    response = outputs(y=tensors.to_ndarray(request.inputs["x"]) * np.float32(0.5) + np.float32(2))
    assert json.loads(predict_json.predict_response(response, columnar)) == {"outputs": [3.5, 4.0]}


# ---------------------------------------------------------------------------------------------
# Classify and Regress

def example_request(body, request=None):
    request = request or classification_pb2.ClassificationRequest()
    examples_json.fill_example_request(json_reader.parse(body), request)
    return request


def features(example):
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = (kind, list(getattr(feature, kind).value)) if kind else (None, [])
    return out


def test_examples_and_feature_types():
    request = example_request(b'{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0, "n": 3, '
                              b'"s": "a", "b": {"b64": "aGk="}, "t": [true, false, 1], "l": [1.5, 2.5], "e": []}]}')
    assert request.model_spec.signature_name == "classify_x_to_y"
    assert request.input.WhichOneof("kind") == "example_list"
    (example,) = request.input.example_list.examples
    assert features(example) == {
        "x": ("float_list", [20.0]), "n": ("int64_list", [3]), "s": ("bytes_list", [b"a"]),
        "b": ("bytes_list", [b"hi"]), "t": ("int64_list", [1, 0, 1]), "l": ("float_list", [1.5, 2.5]),
        "e": (None, [])}


def test_context_makes_example_list_with_context():
    request = example_request(b'{"context": {"c": "ctx"}, "examples": [{"x": 1}, {"x": 2}]}',
                              regression_pb2.RegressionRequest())
    assert request.input.WhichOneof("kind") == "example_list_with_context"
    data = request.input.example_list_with_context
    assert features(data.context) == {"c": ("bytes_list", [b"ctx"])}
    assert [features(e) for e in data.examples] == [{"x": ("int64_list", [1])}, {"x": ("int64_list", [2])}]
    assert isinstance(data.examples[0], example_pb2.Example)


@pytest.mark.parametrize("body, message", [
    (b'{"instances": [1]}',
     "JSON Value: {\n    \"instances\": [1]\n} When method is classify, key 'examples' is expected "
     "and was not found"),
    (b'{"examples": {"x": 1}}',
     "JSON Value: {\n    \"examples\": {\n        \"x\": 1\n    }\n} Expecting 'examples' value to be an list/array"),
    (b'{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
    (b'{"examples": [[1]]}', "Example must be JSON object but got JSON Array"),
    (b'{"examples": ["x"]}', "Example must be JSON object but got JSON String"),
    (b'{"context": 1, "examples": [{}]}', "Example must be JSON object but got JSON Number"),
    (b'{"examples": [{"x": null}]}', "Feature: x has element with unexpected JSON type: Null"),
    (b'{"examples": [{"x": [[1]]}]}', "Feature: x has element with unexpected JSON type: Array"),
    (b'{"examples": [{"x": {"a": 1}}]}', "Feature: x has element with unexpected JSON type: Object"),
    (b'{"examples": [{"x": [10, 10.0]}]}', "Unexpected element type in feature: x expecting type: int64"),
    (b'{"examples": [{"x": [1.5, "a"]}]}', "Unexpected element type in feature: x expecting type: float"),
    (b'{"examples": [{"x": ["a", true]}]}', "Unexpected element type in feature: x expecting type: bytes"),
    (b'{"examples": [{"x": [1, {"b64": "YQ=="}]}]}', "Unexpected element type in feature: x expecting type: int64"),
    (b'{"examples": [{"x": 18446744073709551615}]}', "Feature: x has uint64_t element. Only int64_t is supported."),
    (b'{"examples": [{"x": {"b64": "a"}}]}', "Unable to base64 decode"),
])
def test_example_errors(body, message):
    assert failure(example_request, body) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_examples_message_says_classify_for_regress_too():
    assert failure(example_request, b'{"x": 1}', regression_pb2.RegressionRequest())[1].endswith(
        "When method is classify, key 'examples' is expected and was not found")


def test_example_numbers_by_token():
    request = example_request(b'{"examples": [{"a": 80.0, "b": 80, "c": 1e2, "d": NaN, "e": 18446744073709551616}]}')
    got = features(request.input.example_list.examples[0])
    assert got["a"] == ("float_list", [80.0]) and got["b"] == ("int64_list", [80])
    assert got["c"] == ("float_list", [100.0]) and math.isnan(got["d"][1][0])
    assert got["e"] == ("float_list", [pytest.approx(1.8446744073709552e19)])  # beyond uint64: a double


def test_example_float_values_are_rounded_not_refused():
    # json_tensor.cc AddValueToFeature: a double goes into float_list through GetFloat(), no precision check
    request = example_request(b'{"examples": [{"x": 1e39, "y": [-1e39, 16777217.0, 1435774380.0], "n": 16777217}]}')
    got = features(request.input.example_list.examples[0])
    assert got["x"] == ("float_list", [math.inf])
    assert got["y"] == ("float_list", [-math.inf, 16777216.0, 1435774336.0])
    assert got["n"] == ("int64_list", [16777217])  # an integer token stays an int64


def test_classify_response():
    response = classification_pb2.ClassificationResponse()
    response.result.classifications.add().classes.add(label="", score=12.0)
    assert examples_json.classify_response(response) == '{\n    "results": [[["", 12.0]]\n    ]\n}'
    response = classification_pb2.ClassificationResponse()
    for pairs in ([("car", 0.2), ("bike", 0.7)], [("car", 0.7), ("bike", 0.1)]):
        classes = response.result.classifications.add()
        for label, score in pairs:
            classes.classes.add(label=label, score=score)
    assert examples_json.classify_response(response) == (
        '{\n    "results": [[["car", 0.2], ["bike", 0.7]], [["car", 0.7], ["bike", 0.1]]\n    ]\n}')


def test_regress_response():
    response = regression_pb2.RegressionResponse()
    for value in (3.5, 4.0, 10.8054295):
        response.result.regressions.add(value=value)
    assert examples_json.regress_response(response) == '{\n    "results": [3.5, 4.0, 10.8054295]\n}'


def test_empty_results():
    assert failure(examples_json.classify_response, classification_pb2.ClassificationResponse()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Cannot convert empty ClassificationResults to JSON")
    assert failure(examples_json.regress_response, regression_pb2.RegressionResponse()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Cannot convert empty RegressionResults to JSON")


def test_regress_round_trip():
    request = example_request(b'{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}, {"x": 10.0}]}',
                              regression_pb2.RegressionRequest())
    xs = [e.features.feature["x"].float_list.value[0] for e in request.input.example_list.examples]
    response = regression_pb2.RegressionResponse()
    for x in xs:
        response.result.regressions.add(value=x * 0.5 + 2)
    assert examples_json.regress_response(response) == '{\n    "results": [42.0, 7.0]\n}'


# ---------------------------------------------------------------------------------------------
# Metadata

def model_metadata(folder, version):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(TESTDATA, folder, version, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, value in saved_model.meta_graphs[0].signature_def.items():
        signatures.signature_def[key].CopyFrom(value)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.version.value = int(version)
    response.metadata["signature_def"].Pack(signatures)
    return response


@pytest.mark.parametrize("folder, name, expected", [
    ("saved_model_half_plus_two_cpu", "default", "half_plus_two_model_metadata.json"),
    ("saved_model_half_plus_two_2_versions", "saved_model_half_plus_two_2_versions",
     "saved_model_half_plus_two_2_versions_metadata.json"),
])
def test_metadata_matches_tf_serving_testdata(folder, name, expected):
    response = model_metadata(folder, "00000123")
    response.model_spec.name = name
    text = metadata_json.metadata(response)
    with open(os.path.join(TESTDATA, expected)) as f:
        assert json.loads(text) == json.load(f)
    assert text.startswith('{\n"model_spec":{\n "name": "%s",\n "version": "123",\n "signature_name": ""\n}\n,\n'
                           '"metadata": {"signature_def": {\n "signature_def": {\n  "' % name)
    assert text.endswith("\n }\n}\n}\n}\n")
    assert '"size": "-1",\n' in text and '"defaults": {}' in text and '"unknown_rank": false' in text


def test_metadata_errors():
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    assert failure(metadata_json.metadata, response) == (
        grpc.StatusCode.INTERNAL,
        "Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.")
    response.metadata["signature_def"].Pack(predict_pb2.PredictRequest())
    assert failure(metadata_json.metadata, response) == (
        grpc.StatusCode.INTERNAL, "Failed to unpack 'Any' object to 'SignatureDefMap'.")


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.floats(width=32), st.floats()), st.booleans())
@example(float("nan"), True)
@example(float("inf"), False)
@example(float("-inf"), True)
@example(-0.0, False)
@example(1e20, False)
@example(3.4028234663852886e38, True)
@example(1e-7, True)
@example(0.1, False)
@example(100.0, True)
def test_a_single_decimal_is_written_as_in_a_tensor(value, is_float):
    """Classify scores and Regress values (decimal_string) are written as tensor values (decimal_strings)."""
    if is_float:
        value = float(np.float32(value)) if abs(value) < 3.5e38 or not math.isfinite(value) else 1.5
    array = np.array([value], np.float32 if is_float else np.float64)
    assert json_writer.decimal_string(value, is_float) == json_writer.decimal_strings(array, is_float)[0]


@pytest.mark.parametrize("value, is_float, text", [
    (float("nan"), True, "NaN"), (float("inf"), False, "Infinity"), (float("-inf"), True, "-Infinity"),
    (0.0, False, "0.0"), (-0.0, True, "-0.0"), (100.0, True, "100.0"), (1e20, False, "1e+20"),
    (0.1, True, "0.1"), (0.1, False, "0.1"), (1 / 3, False, "0.33333333333333331"), (1 / 3, True, "0.333333343"),
    (1e-7, False, "1e-07"), (123456789.0, False, "123456789.0"),
])
def test_decimals_as_tf_servings_writedecimal(value, is_float, text):
    if is_float:
        value = float(np.float32(value))
    assert json_writer.decimal_string(value, is_float) == text
    assert json_writer.decimal_strings(np.array([value], np.float32 if is_float else np.float64), is_float) == [text]


# ---------------------------------------------------------------------------------------------
# The fast parsers (orjson, then Python's json) against the exact reader. Text after the document
# is ignored (kParseStopWhenDoneFlag), but an exponent of 309 or more anywhere in the body sends it
# to the exact reader: `body + b" 1e999"` is the same document read the exact way.

_KEYS = st.sampled_from(["a", "b", "x", "b64", "\u00e9", "\\u0061", "\U0001F600", "instances"])


class _Literal(str):
    """JSON text written as it is (a number's spelling, NaN)."""


_NUMBERS = st.one_of(
    st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["-0", "0.0", "1E5", "1e-5", "2.5e+10", "1.7976931348623157e308", "5e-324", "0.1",
                     "18446744073709551616", "NaN", "-Infinity", "1e-100", "-2.5E-300", "1e100", "1e308", "2e308",
                     "0e400", "0e309", "0e308", "0.0e309", "1e-400", "1" + "0" * 250 + "e60", "-1" + "0" * 250 + "e60",
                     "0.00001e310"]).map(_Literal))
_SCALARS = st.one_of(_NUMBERS, st.booleans(), st.none(), st.text(max_size=5))


def _json_text(value):
    """`value` as JSON text; a list of (name, value) pairs is an object (names may repeat)."""
    if isinstance(value, tuple) and value[0] == "object":
        members = ",".join(f"{_key_text(name)}: {_json_text(member)}" for name, member in value[1])
        return "{" + members + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    if isinstance(value, _Literal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def _key_text(name):
    return f'"{name}"' if name.startswith("\\u") else json.dumps(name)


_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.lists(st.tuples(_KEYS, children), max_size=4).map(lambda m: ("object", m))),
    max_leaves=20).map(lambda inner: ("object", [("instances", inner)]))


def _members(value):
    """The document with every object's members in order, as the REST code sees them."""
    if isinstance(value, dict):
        return [(name, _members(member)) for name, member in json_values.object_members(value)]
    if isinstance(value, list):
        return [_members(v) for v in value]
    if type(value) is int and not json_values.is_int_token(value):  # json.loads keeps such an int whole, where
        value = float(value)  # rapidjson makes it a double: the REST code reads both as a double (is_double)
    return ("nan",) if isinstance(value, float) and math.isnan(value) else (type(value).__name__, value)


@settings(max_examples=400, deadline=None)
@given(_DOCUMENTS)
@example(("object", [("a", 1), ("a", 2)]))
@example(("object", [("instances", [("object", [("x", 1), ("y", 2)]), ("object", [("x", 3), ("x", 4)])])]))
@example(("object", [("a", 1), ("\\u0061", 2)]))
@example(("object", [("a", _Literal("18446744073709551616")), ("b", _Literal("NaN"))]))
@example(("object", [("a", _Literal("1" + "0" * 250 + "e60"))]))  # beyond a double: json.loads made it inf
@example(("object", [("a", _Literal("1" + "0" * 250 + "e60")), ("b", _Literal("NaN"))]))
@example(("object", [("a", _Literal("0e400"))]))  # 0.0 to orjson; rapidjson: "Number too big"
@example(("object", [("a", _Literal("0e309")), ("b", _Literal("-1e-100"))]))  # the first exponent refused so
@example(("object", [("a", 1), ("a", _Literal('"\\u003a"'))]))  # a colon escaped would blur the colon count
@example(("object", [("instances", [("object", [("a", 1)]), ("object", [("a", 2), ("a", 3)])])]))
def test_the_fast_parsers_read_every_document_as_the_exact_reader(document):
    body = _json_text(document).encode()
    assert _reading(body) == _reading(body + b" 1e999")


def _reading(body):
    """What the REST code gets from `body`: its members, or the parse error's message."""
    try:
        return _members(json_reader.parse(body))
    except status.ServingError as e:
        return ("error", e.message)



def test_decimal_strings_across_its_chunks_as_value_by_value():
    """Large outputs are formatted a chunk at a time (the interpreter is let go between): the values on either
    side of each chunk's edge come out as each alone would."""
    values = np.random.default_rng(3).standard_normal(2 * 65536 + 7).astype(np.float32) * 1e3
    values[[0, 65535, 65536, 65537, -1]] = [np.nan, np.inf, 0.1, 1e-45, 3.0]
    whole = json_writer.decimal_strings(values, True)
    edges = [0, 1, 65535, 65536, 65537, 131071, 131072, len(values) - 1]
    assert [whole[i] for i in edges] == [json_writer.decimal_strings(values[i:i + 1], True)[0] for i in edges]
    assert len(whole) == len(values) and whole[0] == "NaN" and whole[65535] == "Infinity" and whole[-1] == "3.0"
