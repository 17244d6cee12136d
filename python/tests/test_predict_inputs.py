"""predict_inputs in-process, value by value: how -i JSON is typed, what --dtype converts, what a signature
accepts. (The scripts' end-to-end behaviour is in test_scripts.py; these pin the values a silent change
would alter.)"""

import json

import numpy as np
import pytest

from tfsclient import predict_inputs as inputs
from tfsclient import protos
from tfsclient.errors import InputError


def signature(**dtypes):
    """A SignatureDef whose inputs have these DataType enums (e.g. input_1=protos.types_pb2.DT_FLOAT)."""
    sig = protos.meta_graph_pb2.SignatureDef()
    for alias, dtype in dtypes.items():
        sig.inputs[alias].dtype = dtype
        sig.inputs[alias].name = f"{alias}:0"
    return sig


def parsed(*specs):
    return inputs.parse_inputs(list(specs))


def error(call, *args):
    with pytest.raises(InputError) as caught:
        call(*args)
    return str(caught.value)


@pytest.mark.parametrize("text, dtype, values", [
    ("[[1.0, 2.5]]", np.float32, [[1.0, 2.5]]),
    ("[1e39]", np.float32, [np.inf]),  # as TF: beyond float32 is inf
    ("[1, 2]", np.int32, [1, 2]),
    ("[-2147483648, 2147483647]", np.int32, [-2**31, 2**31 - 1]),  # the edges of int32 stay int32
    ("[2147483648]", np.int64, [2**31]),
    ("[-2147483649]", np.int64, [-2**31 - 1]),
    ("[9223372036854775807]", np.int64, [2**63 - 1]),
    ("[]", np.float32, []),  # numpy's empty list is float64: sent as float32, as TF
    ("[true, false]", np.bool_, [True, False]),
    ("3", np.int32, 3),
])
def test_json_values_are_typed_as_tensorflow_types_python_lists(text, dtype, values):
    (array, from_json), = parsed(f"x={text}").values()
    assert from_json is True
    assert array.dtype == dtype
    assert array.tolist() == values


def test_json_strings_are_utf8_bytes_in_their_shape_and_keep_trailing_nuls():
    (array, _), = parsed('x=[["a", "é"], ["b\\u0000", ""]]').values()
    assert array.dtype == object and array.shape == (2, 2)
    assert array.tolist() == [[b"a", "é".encode()], [b"b\0", b""]]


@pytest.mark.parametrize("text, message", [
    ("[9223372036854775808]", "input 'x': 9223372036854775808 does not fit in int64 (write it with a decimal "
                              "point to send it as a float)"),
    ("[-9223372036854775809]", "input 'x': -9223372036854775809 does not fit in int64 (write it with a decimal "
                               "point to send it as a float)"),
    ("[null]", "input 'x': JSON values must be numbers, strings or booleans in nested lists, not null"),
    ('[{"a": 1}]', "input 'x': JSON values must be numbers, strings or booleans in nested lists, not an object"),
    ("[[1], [2, 3]]", "input 'x': the JSON is not a rectangular array (rows of different lengths?)"),
    ("[" * 33 + "]" * 33, "input 'x': the JSON is nested more than 32 levels deep"),
    ('["\\ud800"]', "input 'x': the string '\\ud800' is not valid Unicode"),
])
def test_json_that_is_no_tensor_is_one_clear_error(text, message):
    assert error(parsed, f"x={text}") == message


def test_32_levels_of_json_are_accepted():
    (array, _), = parsed("x=" + "[" * 32 + "1" + "]" * 32).values()
    assert array.shape == (1,) * 32


def test_specs_keep_their_order_and_an_input_given_twice_is_refused(tmp_path):
    (tmp_path / "both.json").write_text(json.dumps({"b": [1.5], "a": [[1, 2]]}))
    np.save(tmp_path / "c.npy", np.arange(3, dtype=np.int16))
    found = parsed(f"@{tmp_path}/both.json", f"c=@{tmp_path}/c.npy", "d=[1]")
    assert list(found) == ["b", "a", "c", "d"]
    assert [found[k][1] for k in found] == [True, True, False, True]  # arrays from .npy are not converted
    assert found["c"][0].dtype == np.int16 and found["c"][0].tolist() == [0, 1, 2]
    assert found["a"][0].dtype == np.int32
    assert error(parsed, "a=[1]", f"@{tmp_path}/both.json") == (
        f"input 'a' is given twice (again by -i @{tmp_path}/both.json): give each input once")
    assert error(parsed, "=[1]") == "-i wants NAME=JSON, NAME=@file.npy, @file.json or @file.npz, not '=[1]'"


@pytest.mark.parametrize("name, dtype", [
    ("float32", np.float32), ("float64", np.float64), ("int8", np.int8), ("uint16", np.uint16),
    ("int64", np.int64), ("bool", np.bool_), ("complex64", np.complex64), ("float16", np.float16),
    ("string", object), ("bytes", object), ("str", object),
])
def test_dtype_names(name, dtype):
    assert inputs.parse_dtypes([f"x={name}"]) == {"x": np.dtype(dtype)}


@pytest.mark.parametrize("spec, message", [
    ("x=float99", "unknown dtype 'float99': use e.g. float32, float64, int32, int64, bool, string"),
    ("x=float128", "unknown dtype 'float128': use e.g. float32, float64, int32, int64, bool, string"),
    ("x=datetime64", "unknown dtype 'datetime64': use e.g. float32, float64, int32, int64, bool, string"),
    ("x", "--dtype wants NAME=DTYPE, e.g. input_1=float32, not 'x'"),
    ("=float32", "--dtype wants NAME=DTYPE, e.g. input_1=float32, not '=float32'"),
])
def test_bad_dtypes(spec, message):
    assert error(inputs.parse_dtypes, [spec]) == message


def test_apply_dtypes_converts_only_the_inputs_named():
    found = parsed("x=[1.5, 2.5]", "y=[1, 2]")
    out = inputs.apply_dtypes(found, inputs.parse_dtypes(["x=float64"]))
    assert out["x"][0].dtype == np.float64 and out["x"][0].tolist() == [1.5, 2.5]
    assert out["y"][0].dtype == np.int32 and out["x"][1] is True
    assert error(inputs.apply_dtypes, found, inputs.parse_dtypes(["z=int8"])) == (
        "--dtype z=...: there is no input 'z' (give it with -i)")


@pytest.mark.parametrize("spec, dtype, message", [
    ("x=[1.5]", "string", "input 'x': numbers cannot be sent as strings; give strings, e.g. [\"1.5\"]"),
    ("x=[NaN]", "int32", "input 'x': cannot convert to int32: invalid value encountered in cast"),
    ('x=["a"]', "float32", "input 'x': cannot convert to float32: could not convert string to float: b'a'"),
])
def test_apply_dtypes_refuses_what_would_be_garbage(spec, dtype, message):
    assert error(inputs.apply_dtypes, parsed(spec), inputs.parse_dtypes([f"x={dtype}"])) == message


T = protos.types_pb2


@pytest.mark.parametrize("spec, want, dtype, values", [
    ("x=[[1, 2]]", T.DT_FLOAT, np.float32, [[1.0, 2.0]]),  # JSON integers to a float input
    ("x=[1.5]", T.DT_DOUBLE, np.float64, [1.5]),
    ("x=[1, 2]", T.DT_INT64, np.int64, [1, 2]),
    ("x=[1, 2]", T.DT_INT32, np.int32, [1, 2]),
    ("x=[1, 2]", T.DT_HALF, np.float16, [1.0, 2.0]),
    ("x=[1, 2]", T.DT_COMPLEX64, np.complex64, [1, 2]),
    ('x=["a"]', T.DT_STRING, object, [b"a"]),
    ("x=[true]", T.DT_BOOL, np.bool_, [True]),
    ("x=[true, false]", T.DT_FLOAT, np.float32, [1.0, 0.0]),
])
def test_json_follows_the_signature(spec, want, dtype, values):
    arrays = inputs.check_against_signature(parsed(spec), {}, signature(x=want), "M")
    assert arrays["x"].dtype == dtype and arrays["x"].tolist() == values


@pytest.mark.parametrize("spec, want, message", [
    ("x=[1.5]", T.DT_INT32, "input 'x' is float32 but model M expects int32: convert it with --dtype x=int32"),
    ("x=[1]", T.DT_STRING, "input 'x' holds numbers where model M expects strings: write them as JSON strings, "
                           'e.g. ["1", "2"]'),  # (it said --dtype x=string, which refuses numbers)
    ('x=["a"]', T.DT_FLOAT, "input 'x' holds the text 'a' where model M expects float32: write every value as a "
                            "JSON number"),
    ('x=["1.5"]', T.DT_FLOAT, "input 'x' is string but model M expects float32: convert it with --dtype x=float32"),
    # Before, sent wrapped around, as -2147483648.
    ("x=[2147483648]", T.DT_INT32, "input 'x': 2147483648 does not fit in int32 (-2147483648 to 2147483647)"),
    ("x=[300, -129]", T.DT_INT8, "input 'x': -129 does not fit in int8 (-128 to 127)"),
    ("x=[1, 70000]", T.DT_INT16, "input 'x': 70000 does not fit in int16 (-32768 to 32767)"),
    ("x=[1e5]", T.DT_HALF, "input 'x': 100000.0 does not fit in float16 (-65504 to 65504)"),
])
def test_json_that_would_lose_its_meaning_is_refused(spec, want, message):
    assert error(inputs.check_against_signature, parsed(spec), {}, signature(x=want), "M") == message


@pytest.mark.parametrize("spec, dtype, message", [
    ("x=[-1]", "uint8", "input 'x': -1 does not fit in uint8 (0 to 255)"),
    ("x=[1.5, 1e10]", "int32", "input 'x': 10000000000.0 does not fit in int32 (-2147483648 to 2147483647)"),
    ("x=[70000.0]", "float16", "input 'x': 70000.0 does not fit in float16 (-65504 to 65504)"),
])
def test_a_dtype_flag_refuses_values_that_do_not_fit(spec, dtype, message):
    # Before, --dtype x=uint8 sent -1 as 255, and float16 overflow was inf with only numpy's RuntimeWarning.
    assert error(inputs.apply_dtypes, parsed(spec), inputs.parse_dtypes([f"x={dtype}"])) == message


def test_arrays_from_files_and_dtype_flags_are_sent_as_they_are(tmp_path):
    np.save(tmp_path / "x.npy", np.array([1.0], np.float64))
    from_file = parsed(f"x=@{tmp_path}/x.npy")
    assert error(inputs.check_against_signature, from_file, {}, signature(x=T.DT_FLOAT), "M") == (
        "input 'x' is float64 but model M expects float32: convert it with --dtype x=float32")
    same = inputs.check_against_signature(from_file, {}, signature(x=T.DT_DOUBLE), "M")
    assert same["x"].dtype == np.float64
    dtypes = inputs.parse_dtypes(["x=float16"])  # --dtype: the server judges (its own INVALID_ARGUMENT)
    forced = inputs.check_against_signature(inputs.apply_dtypes(from_file, dtypes), dtypes,
                                            signature(x=T.DT_FLOAT), "M")
    assert forced["x"].dtype == np.float16


def test_aliases_must_match_the_signature():
    sig = signature(b=T.DT_FLOAT, a=T.DT_FLOAT)
    assert error(inputs.check_against_signature, parsed("c=[1.0]"), {}, sig, "M") == (
        "model M has no input 'c'; its inputs: a, b")
    assert error(inputs.check_against_signature, parsed("a=[1.0]"), {}, sig, "M") == (
        "model M needs input 'b' too: add -i b=...")
    assert error(inputs.check_against_signature, parsed("a=[1.0]"), {}, signature(), "M") == (
        "model M has no input 'a'; its inputs: none")


def test_npz_files_give_every_array_by_name_unconverted(tmp_path):
    np.savez(tmp_path / "in.npz", b=np.array([[1, 2]], np.int16), a=np.array([True, False]))
    found = parsed(f"@{tmp_path}/in.npz")
    assert sorted(found) == ["a", "b"]
    assert found["b"][0].dtype == np.int16 and found["b"][0].tolist() == [[1, 2]] and found["b"][1] is False
    assert found["a"][0].dtype == np.bool_ and found["a"][0].tolist() == [True, False] and found["a"][1] is False
    assert error(parsed, f"x=@{tmp_path}/in.npz") == (
        f"-i x=@{tmp_path}/in.npz: {tmp_path}/in.npz holds several arrays; give it as -i @{tmp_path}/in.npz")


@pytest.mark.parametrize("array", [
    np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    np.array([[True, False, True]]),
    np.zeros((0, 2), np.float64),
    np.array(["ab", "é"]),
    np.array(7, np.uint8),
], ids=["fortran", "bool", "empty", "unicode", "scalar"])
@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_npy_files_read_back_exactly(tmp_path, array, version):
    from numpy.lib import format as npy_format

    with open(tmp_path / "x.npy", "wb") as f:
        npy_format.write_array(f, array, version=version)
    (got, from_json), = parsed(f"x=@{tmp_path}/x.npy").values()
    assert from_json is False and got.dtype == array.dtype and got.shape == array.shape
    assert got.tolist() == array.tolist()


def test_a_bool_npy_byte_of_2_is_true_and_sent_as_1(tmp_path):
    np.save(tmp_path / "b.npy", np.array([0, 1, 2], np.uint8).view(np.bool_))
    (got, _), = parsed(f"x=@{tmp_path}/b.npy").values()
    assert got.dtype == np.bool_ and got.view(np.uint8).tolist() == [0, 1, 1]


def test_the_file_size_limit_applies_to_every_kind_of_file(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(3.0))
    np.savez(tmp_path / "x.npz", x=np.arange(3.0))
    (tmp_path / "x.json").write_text('{"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}')
    for spec, kind in ((f"x=@{tmp_path}/x.npy", r"an? \.npy"), (f"@{tmp_path}/x.npz", r"an? \.npz"),
                       (f"@{tmp_path}/x.json", "a JSON")):
        with pytest.raises(InputError, match=rf"more than the 10 {kind} file may be"):
            inputs.parse_inputs([spec], max_size=10)


def test_json_edges(tmp_path):
    assert parsed("x=[-9223372036854775808]")["x"][0].tolist() == [-2**63]  # int64's least value fits
    assert parsed('x=["a=b"]')["x"][0].tolist() == [b"a=b"]  # the name ends at the first "="
    assert inputs.parse_dtypes(["x=bfloat16"])["x"].name == "bfloat16"
    # strings mixed with numbers: each number as Python writes it
    assert parsed('x=["a", 1.5, true, 7]')["x"][0].tolist() == [b"a", b"1.5", b"True", b"7"]
