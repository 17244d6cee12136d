"""Load a built SavedModel the way the server does (TF1 loader, tag 'serve', session) and run its signatures."""

from multitask_spec import MULTITASK_EXAMPLES
from serving_names import CLASSIFY_METHOD, INPUT_ALIAS, PREDICT_METHOD, REGRESS_METHOD, SIGNATURE_KEY
from tf_import import import_tf


def run_v1(path, x, verbose: bool = False):
    """Load a SavedModel as TF Serving does (TF1 loader, tag 'serve', session).

    Returns ``(meta_graph_def, outputs)`` where ``outputs`` maps each output
    alias of ``serving_default`` to a numpy array for the input ``x``.
    """
    tf = import_tf(verbose)
    import numpy as np

    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        sig = meta_graph.signature_def[SIGNATURE_KEY]
        feed = {sig.inputs[INPUT_ALIAS].name: np.asarray(x, dtype=np.float32)}
        aliases = sorted(sig.outputs)
        values = sess.run([sig.outputs[a].name for a in aliases], feed)
    return meta_graph, dict(zip(aliases, values))


def serialize_examples(examples) -> list:
    """Serialized tf.Example protos, one per {feature: float} dict (float_list features)."""
    from tensorflow.core.example import example_pb2

    out = []
    for features in examples:
        example = example_pb2.Example()
        for name, value in features.items():
            example.features.feature[name].float_list.value.append(value)
        out.append(example.SerializeToString())
    return out


def run_multitask_v1(path, examples=MULTITASK_EXAMPLES, verbose: bool = False):
    """Load MultiTask as the server does and run its three signatures on ``examples``.

    Returns ``(meta_graph_def, {signature: {alias: numpy array}})``: serving_default
    fed the features as float tensors, classify and regress fed the examples
    serialized as tf.Examples.
    """
    tf = import_tf(verbose)
    import numpy as np

    serialized = np.array(serialize_examples(examples), dtype=object)
    results = {}
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        for key, sig in meta_graph.signature_def.items():
            if sig.method_name == PREDICT_METHOD:
                feed = {sig.inputs[name].name: np.array([e[name] for e in examples], np.float32)
                        for name in sig.inputs}
            elif sig.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
                feed = {sig.inputs["inputs"].name: serialized}
            else:
                continue
            aliases = sorted(sig.outputs)
            values = sess.run([sig.outputs[a].name for a in aliases], feed)
            results[key] = dict(zip(aliases, values))
    return meta_graph, results
