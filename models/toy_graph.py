"""The toy models' TensorFlow graph: one Dense(1) layer as a tf.Module whose ``serve`` is the serving signature."""

from serving_names import INPUT_ALIAS


def make_toy_module(tf, model, sigmoid_op: bool = False):
    """A tf.Module computing ``activation(x @ kernel + bias)`` for the ToyModel ``model``.

    Sigmoid is ``1 / (1 + exp(-y))`` in float32 unless ``sigmoid_op`` (TF's fused Sigmoid op).
    """
    import numpy as np

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            # Variables (not constants), like Keras: the exported signature's
            # output tensor is then StatefulPartitionedCall:0, as in the guide.
            self.kernel = tf.Variable(np.array(model.kernel, dtype=np.float32), name="kernel")
            self.bias = tf.Variable(np.array(model.bias, dtype=np.float32), name="bias")

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name=INPUT_ALIAS)])
        def serve(self, input_1):
            # The same ops as keras.layers.Dense: MatMul then BiasAdd.
            y = tf.nn.bias_add(tf.matmul(input_1, self.kernel), self.bias)
            if model.activation == "sigmoid":
                if sigmoid_op:
                    y = tf.sigmoid(y)
                else:
                    # 1 / (1 + exp(-y)) in float32 reproduces the guide's
                    # outputs to the digit; today's fused Sigmoid kernel is
                    # correctly rounded and can differ in the last digit.
                    y = tf.math.reciprocal(1.0 + tf.exp(-y))
            return {model.output: y}

    return Toy()
