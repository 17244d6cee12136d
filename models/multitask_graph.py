"""MultiTask's TF1 graph: shared variables, a predict tower and an examples tower, and its three signatures."""

from multitask_spec import (
    MULTITASK_B1,
    MULTITASK_B2,
    MULTITASK_B3,
    MULTITASK_CLASSES,
    MULTITASK_FEATURES,
    MULTITASK_W1,
    MULTITASK_W2,
    MULTITASK_W3,
)
from serving_names import EXAMPLES_INPUT, SIGNATURE_KEY


def build_multitask_graph(tf):
    """MultiTask as ``(graph, signature_def_map)``, for TF1's SavedModelBuilder.

    The variables are shared by two towers, one on the float placeholders ``age:0`` and ``income:0``
    (``serving_default``), one on the features parsed from ``input_example_tensor:0``, serialized
    tf.Examples with required float features age and income (``classify`` and ``regress`` share it,
    so MultiInference runs one parse for both).
    """
    import numpy as np

    v1 = tf.compat.v1
    f32 = np.float32
    graph = tf.Graph()
    with graph.as_default():
        def variable(name, value):
            return v1.get_variable(name, initializer=np.array(value, f32), use_resource=True)

        with v1.variable_scope("shared"):
            w1, b1 = variable("kernel", MULTITASK_W1), variable("bias", MULTITASK_B1)
        with v1.variable_scope("classification"):
            w2, b2 = variable("kernel", MULTITASK_W2), variable("bias", MULTITASK_B2)
        with v1.variable_scope("regression"):
            w3, b3 = variable("kernel", MULTITASK_W3), variable("bias", MULTITASK_B3)
        labels = tf.constant([list(MULTITASK_CLASSES)], tf.string, name="class_names")

        def heads(age, income):
            x = tf.stack([age, income], axis=1, name="x")
            h = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1), name="shared")
            logits = tf.nn.bias_add(tf.matmul(h, w2), b2, name="logits")
            scores = tf.nn.softmax(logits, name="scores")
            classes = tf.tile(labels, [tf.shape(scores)[0], 1], name="classes")
            prediction = tf.nn.bias_add(tf.matmul(h, w3), b3, name="prediction")
            return scores, classes, prediction

        age = v1.placeholder(tf.float32, [None], name="age")
        income = v1.placeholder(tf.float32, [None], name="income")
        with tf.name_scope("predict"):
            scores, classes, prediction = heads(age, income)

        serialized = v1.placeholder(tf.string, [None], name=EXAMPLES_INPUT)
        with tf.name_scope("examples"):
            # No default_value: a missing feature is an error (INVALID_ARGUMENT).
            features = tf.io.parse_example(
                serialized, {name: tf.io.FixedLenFeature([], tf.float32)
                             for name in MULTITASK_FEATURES})
            ex_scores, ex_classes, ex_prediction = heads(features["age"], features["income"])

        sigs = v1.saved_model.signature_def_utils
        signature_def_map = {
            SIGNATURE_KEY: sigs.predict_signature_def(
                inputs={"age": age, "income": income},
                outputs={"scores": scores, "classes": classes, "prediction": prediction}),
            "classify": sigs.classification_signature_def(
                examples=serialized, classes=ex_classes, scores=ex_scores),
            "regress": sigs.regression_signature_def(
                examples=serialized, predictions=ex_prediction),
        }
    return graph, signature_def_map
