"""tfsclient.output: the text format the scripts print, written as it is made."""

import io
import json

import numpy as np
from google.protobuf import text_format

from tfsclient import codec, output, protos


def _response(array):
    response = protos.predict_pb2.PredictResponse()
    response.model_spec.name = "Toy"
    response.outputs["y"].CopyFrom(codec.make_tensor_proto(array))
    return response


def test_a_large_bytes_field_is_written_in_escaped_chunks_and_reads_back_the_same():
    # 3 MB of tensor_content, every byte value: escaped a chunk at a time, the text is what protobuf's own printer
    # makes, and parses back to the same message. (Before, the whole escaped text was held, and copied once more.)
    array = np.frombuffer(bytes(range(256)) * (3 * 4096), dtype=np.uint8).copy()
    response = _response(array)
    out = io.StringIO()
    output.write_text(response, out)
    assert out.getvalue() == text_format.MessageToString(response, descriptor_pool=protos.POOL)
    back = text_format.Parse(out.getvalue(), protos.predict_pb2.PredictResponse(), descriptor_pool=protos.POOL)
    assert back == response


class Writes(io.StringIO):
    """A stream that records the size of each write."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def write(self, text):
        self.sizes.append(len(text))
        return super().write(text)


def test_the_text_reaches_the_stream_a_megabyte_at_a_time():
    # 2 million floats print 12 million small pieces: gathered, they reach stdout in pieces of about 1 MB, never
    # the whole text at once (and not one slow call each).
    response = protos.predict_pb2.PredictResponse()
    tensor = response.outputs["y"]
    tensor.dtype = protos.types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=2_000_000)
    tensor.float_val.extend(np.ones(2_000_000, np.float32))  # as TF Serving answers half_plus_two
    stream = Writes()
    output.write_text(response, stream)
    assert stream.getvalue() == output.to_text(response)
    assert len(stream.sizes) > 10 and max(stream.sizes) < 2 << 20, (len(stream.sizes), max(stream.sizes))


def _large_response():
    """A response with every kind of field write_json treats apart, beside small ones of each kind."""
    response = protos.predict_pb2.PredictResponse()
    response.model_spec.name = "Toy"
    response.model_spec.version.value = 3
    floats = response.outputs["a"]
    floats.dtype = protos.types_pb2.DT_FLOAT
    floats.float_val.extend(np.linspace(-1, 1, 300_000, dtype=np.float32))
    floats.float_val.extend([float("nan"), float("inf"), float("-inf")])
    response.outputs["b"].tensor_content = bytes(range(256)) * 12_289  # 3 MB and a bit, not a multiple of 3
    response.outputs["c"].int64_val.extend(range(-100_000, 100_000))  # int64: JSON strings
    response.outputs["d"].string_val.extend([bytes(range(256)) * 5000, b"small", b"\xff" * 2_000_001])
    response.outputs["e"].bool_val.extend([True, False] * 50_000)
    response.outputs["f"].dtype = protos.types_pb2.DT_STRING
    return response


def test_json_is_written_as_made_and_is_protobufs_own():
    # --format json built the whole answer as Python values (a float in a list: 34x the answer in memory). Now long
    # repeated fields are converted a slice at a time and long bytes base64-encoded a chunk at a time, into the
    # same text json_format makes.
    from google.protobuf import json_format

    for response in (_large_response(), protos.predict_pb2.PredictResponse()):
        stream = Writes()
        output.write_json(response, stream)
        assert stream.getvalue() == output.to_json(response) + "\n"
        assert json.loads(stream.getvalue()) == json.loads(json_format.MessageToJson(
            response, preserving_proto_field_name=True, descriptor_pool=protos.POOL))  # the same, but a map's order
    assert len(stream.sizes) <= 2  # a small message: its text, then the newline
    stream = Writes()
    output.write_json(_large_response(), stream)
    assert len(stream.sizes) > 10 and max(stream.sizes) < 4 << 20, (len(stream.sizes), max(stream.sizes))


def test_values_are_written_a_block_at_a_time_as_json_dumps_writes_them():
    # --values converted each whole array to Python lists (14x the answer). Now a block of at most 65536 values at
    # a time, whatever the shape, into the text json.dumps makes of json_values (NaN and Infinity bare, as
    # Python's json and TF Serving's REST API write them).

    arrays = {
        "f32": np.linspace(-1, 1, 300_001, dtype=np.float32),
        "specials": np.array([np.nan, np.inf, -np.inf] * 30_000, np.float32),
        "rows": np.arange(600_000, dtype=np.int64).reshape(200_000, 3),
        "tall": np.ones((140_000, 1, 1), np.float16),
        "wide": np.ones((2, 3, 70_000), np.float64),
        "small": np.array([[1, 2]], np.int32),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 5), np.float32),
        "no columns": np.zeros((100_000, 0), np.float32),
        "bool": np.array([True, False] * 50_000),
        "complex": (np.arange(100_000) * (1 + 2j)).astype(np.complex64).reshape(1000, 100),
        "strings": np.array([b"a\xff", b"x"] * 40_000, dtype=object).reshape(2, 40_000),
    }
    for name, array in arrays.items():
        stream = Writes()
        output.write_values([(name, array), ("next", array)], stream)
        expected = json.dumps({name: output.json_values(array), "next": output.json_values(array)}) + "\n"
        assert stream.getvalue() == expected, name
        assert max(stream.sizes) < 4 << 20, (name, max(stream.sizes))
    stream = Writes()
    output.write_values([("f32", arrays["f32"])], stream)
    assert len(stream.sizes) > 3


def test_a_complex_value_is_its_pair_in_the_arrays_shape():
    # (json_values flattened a complex array, and a complex64 one failed: numpy's float32 is not JSON)
    stream = io.StringIO()
    output.write_values([("c", np.array([[1 + 2j, 3j]], np.complex64))], stream)
    assert stream.getvalue() == '{"c": [[[1.0, 2.0], [0.0, 3.0]]]}\n'


def test_a_maps_keys_are_sorted_in_json():
    # upb's map order changes from run to run (and with it --format json's, in TensorFlow's classes too): sorted, as
    # the text format sorts them, so two runs can be compared with diff.
    response = protos.predict_pb2.PredictResponse()
    names = [f"output_{i}" for i in (3, 10, 1, 7, 2)]
    for name in names:
        response.outputs[name].dtype = protos.types_pb2.DT_FLOAT
    for text in (output.to_json(response), json.dumps(output.to_data(response))):
        assert list(json.loads(text)["outputs"]) == sorted(names), text
