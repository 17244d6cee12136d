"""tfsclient.output: the text format the scripts print, written as it is made."""

import io

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
