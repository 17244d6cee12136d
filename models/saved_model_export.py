"""Write a model as a SavedModel into a new or empty folder: TF2's save for a toy model, TF1's builder for MultiTask."""

from multitask_graph import build_multitask_graph
from multitask_spec import MultiTaskModel
from serving_names import SIGNATURE_KEY
from tf_import import import_tf
from toy_graph import make_toy_module


def export_model(model, path, verbose: bool = False,
                 sigmoid_op: bool = False) -> None:
    """Write the ToyModel ``model`` as a SavedModel into the (new or empty) folder ``path``.

    Sigmoid is computed as ``1 / (1 + exp(-y))`` in float32, which gives the
    guide's TF Serving outputs exactly, unless ``sigmoid_op`` (TF's fused
    Sigmoid op, as Keras uses today: may differ in the last float32 digit).
    """
    tf = import_tf(verbose)
    module = make_toy_module(tf, model, sigmoid_op)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_KEY: module.serve})


def export_multitask(path, verbose: bool = False) -> None:
    """Write MultiTask as a SavedModel into the (new or empty) folder ``path``.

    A TF1 graph (see multitask_graph.py) saved with SavedModelBuilder: TF2's
    tf.saved_model.save marks every signature as predict.
    """
    tf = import_tf(verbose)
    v1 = tf.compat.v1
    graph, signature_def_map = build_multitask_graph(tf)
    with graph.as_default(), v1.Session(graph=graph) as sess:
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(
            sess, [v1.saved_model.tag_constants.SERVING],
            signature_def_map=signature_def_map,
            clear_devices=True, strip_default_attrs=True)
        builder.save()


def export_saved_model(model, path, verbose: bool = False, sigmoid_op: bool = False) -> None:
    """Write ``model`` (a ToyModel or MultiTask) as a SavedModel into the (new or empty) folder ``path``."""
    if isinstance(model, MultiTaskModel):
        export_multitask(path, verbose)
    else:
        export_model(model, path, verbose, sigmoid_op)
