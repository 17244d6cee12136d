"""Write tf.Example TFRecord files for the tests with TensorFlow itself (the reference writer)."""

import pytest


def write_examples(path, feature_maps):
    tf = pytest.importorskip("tensorflow")  # the oracle: skipped where TensorFlow is not installed

    with tf.io.TFRecordWriter(str(path)) as writer:
        for features in feature_maps:
            example = tf.train.Example()
            for name, value in features.items():
                example.features.feature[name].float_list.value.append(value)
            writer.write(example.SerializeToString())
    return path
