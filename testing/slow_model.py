"""A model that sleeps as long as asked, for the server tests of signals, deadlines and timeouts: no CPU spent
while it sleeps, and TensorFlow can cancel it mid-sleep."""

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


def slept_double(x, sleep_us):
    """2x, after sleeping twice `sleep_us` (a tf.data SleepDataset, no CPU spent: each of the reduce's two
    reads sleeps), in a traced function; TensorFlow can cancel it mid-sleep."""
    from tensorflow.python.data.experimental.ops import testing as data_testing

    dataset = tf.data.Dataset.from_tensors(x).apply(data_testing.sleep(sleep_us))
    return 2.0 * dataset.reduce(tf.zeros_like(x), lambda acc, value: acc + value)


def build_slow_model(path):
    """A SavedModel whose Predict writes `marker` (the request is running), then answers y = 2x after
    slept_double's sleep."""

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                      tf.TensorSpec([], tf.int64, name="sleep_us"),
                                      tf.TensorSpec([], tf.string, name="marker")])
        def serve(self, x, sleep_us, marker):
            started = tf.io.write_file(marker, "started")
            with tf.control_dependencies([started]):
                return {"y": slept_double(x, sleep_us)}

    model = Slow()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


def slow_request(sleep_us, marker):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "Slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0], np.float32)))
    request.inputs["sleep_us"].CopyFrom(tf.make_tensor_proto(np.int64(sleep_us)))
    request.inputs["marker"].CopyFrom(tf.make_tensor_proto(str(marker).encode()))
    return request
