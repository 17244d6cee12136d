"""A Predict's request and answer as the servable reads and writes them, whatever transport carried them.

- `SplitPredictRequest`: a PredictRequest whose large tensor_content fields may be held aside, as buffers
  into the bytes a transport received (gRPC's codec leaves them there: model_servers/grpc/wire.py).
- `Prediction`: a PredictResponse's model_spec and its outputs still as numpy arrays. Each transport
  writes them its own way: gRPC straight into the answer's bytes, REST as JSON from `full_message()`.
"""

from tensorflow_serving.apis import predict_pb2

from . import tensors


class SplitPredictRequest:
    """A parsed PredictRequest (`message`, its held-aside tensor_content fields empty) and, per input alias,
    the tensor_content bytes held aside (`contents`). Reads anything else through to the message.

    Unless `keep` is set (the request log will want the whole request), `take` gives each content up as it
    is decoded, so the received bytes are freed before the model runs, not after the answer.
    """

    __slots__ = ("message", "contents", "keep", "held_aside")

    def __init__(self, message, contents=None):
        self.message = message
        self.contents = contents or {}
        self.keep = False
        self.held_aside = bool(self.contents)  # some input's tensor_content is held aside: a large request

    def take(self, alias):
        """The tensor_content of input `alias` held aside (None if the message holds it), given up unless
        `keep`."""
        return self.contents.get(alias) if self.keep else self.contents.pop(alias, None)

    def full_message(self):
        """The whole PredictRequest, tensor_content copied back in, for the request log; None if a content
        was given up (the log was configured while the request ran: see `keep`)."""
        if not self.held_aside:
            return self.message
        if not self.keep:
            return None
        message = predict_pb2.PredictRequest()
        message.CopyFrom(self.message)
        for alias, content in self.contents.items():
            message.inputs[alias].tensor_content = bytes(content)
        return message

    def __getattr__(self, name):
        return getattr(self.message, name)


class Prediction:
    """A Predict's answer: `message` (a PredictResponse with its model_spec, no outputs) and `outputs`,
    [(alias, array)] in answer order; `tensor_content`: whether the outputs are written as tensor_content
    (--prefer_tensor_content)."""

    __slots__ = ("message", "outputs", "tensor_content")

    def __init__(self, message, outputs, tensor_content=False):
        self.message = message
        self.outputs = outputs
        self.tensor_content = tensor_content

    @property
    def model_spec(self):
        return self.message.model_spec

    def full_message(self):
        """The whole PredictResponse, every output written into it."""
        message = predict_pb2.PredictResponse()
        message.CopyFrom(self.message)
        for alias, array in self.outputs:
            tensors.write_proto(message.outputs[alias], array, self.tensor_content)
        return message


def full_message(message):
    """The protobuf message itself, whether given as one, a SplitPredictRequest or a Prediction (None: see
    SplitPredictRequest.full_message)."""
    return message.full_message() if isinstance(message, (SplitPredictRequest, Prediction)) else message
