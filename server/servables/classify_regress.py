"""Classify, Regress and MultiInference on a loaded SavedModel, as TF Serving runs them.

The request's Input becomes one [N] string tensor of serialized tf.Examples (with a context, each
element is the context's bytes then the example's, so the example wins on a shared feature);
the signature's structure is checked (and its method name, with --enable_signature_method_name_check);
one session run fetches what every task needs; the outputs are checked and shaped into results.
"""

import grpc
import numpy as np
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from ..util import status
from . import tensors
from .saved_model import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD


def examples_tensor(input_proto):
    kind = input_proto.WhichOneof("kind")
    context = b""
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        examples = [e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        raise status.invalid_argument("Input is empty.")
    # The context is copied into every example: a large one times many examples must not exhaust memory.
    size = len(context) * len(examples) + sum(len(e) for e in examples)
    if size > tensors.MAX_TENSOR_BYTES:
        raise status.invalid_argument(
            f"Input is too large: its {len(examples)} serialized examples would take {size} bytes, more than "
            f"the {tensors.MAX_TENSOR_BYTES} a request tensor may take")
    if context:
        examples = [context + e for e in examples]
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _debug_string(signature):
    return text_format.MessageToString(signature)


def _check_method(signature, method, what, check):
    if check and signature.method_name != method:
        raise status.invalid_argument(
            f"Expected {what} signature method_name to be {method}. Was: {signature.method_name}")


def classification_signature(signature, check):
    """(input tensor name, [(alias, tensor name)] of classes/scores) of a classification signature."""
    _check_method(signature, CLASSIFY_METHOD, "classification", check)
    if len(signature.inputs) != 1:
        raise status.invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise status.invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise status.invalid_argument(f"No classification inputs found in SignatureDef: {_debug_string(signature)}")
    outputs = [(alias, signature.outputs[alias].name) for alias in ("classes", "scores") if alias in signature.outputs]
    if not outputs:
        raise status.invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" or "scores". '
            f"Signature was: {_debug_string(signature)}")
    return _examples_input(signature), outputs


def regression_signature(signature, check):
    _check_method(signature, REGRESS_METHOD, "regression", check)
    if len(signature.inputs) != 1:
        raise status.invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise status.invalid_argument("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise status.invalid_argument(f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
    if "outputs" not in signature.outputs:
        raise status.invalid_argument(f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
    return _examples_input(signature), [("outputs", signature.outputs["outputs"].name)]


def _examples_input(signature):
    """The input tensor fed the serialized examples. One of another type (half_plus_two's regress_x2_to_y3
    takes floats) is refused as TF Serving's runtime refuses the string feed (TF's FunctionCallFrame), the
    text a Predict of the wrong type gets too, before a session run that would word it otherwise."""
    info = signature.inputs["inputs"]
    if info.dtype not in (types_pb2.DT_INVALID, types_pb2.DT_STRING):
        raise tensors.error_from_dtype(0, info.dtype, types_pb2.DT_STRING)
    return info.name


def _shape(array):
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _dtype_name(array):
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    try:
        return types_pb2.DataType.Name(tensors.dtype_of(array))
    except KeyError:
        return "DT_INVALID"


def classification_result(values, count, result):
    """Fill a ClassificationResult from {'classes': array, 'scores': array} (either may be missing)."""
    classes, scores = values.get("classes"), values.get("scores")
    for name, array, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if array is None:
            continue
        if array.ndim != 2:
            raise status.invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape(array)}")
        if _dtype_name(array) != dtype:
            raise status.invalid_argument(f"Expected {name} Tensor of {dtype}. Got: {_dtype_name(array)}")
        if array.shape[0] != count:
            raise status.invalid_argument(f"Expected {name} output batch size of {count}. Got: {array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise status.invalid_argument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(count):
        entry = result.classifications.add()
        for c in range(num_classes):
            item = entry.classes.add()
            if classes is not None:
                label = classes[i, c]
                item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                item.score = float(scores[i, c])


def regression_result(values, count, result):
    output = values["outputs"]
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise status.invalid_argument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape(output)}")
    if output.shape[0] != count:
        raise status.invalid_argument(
            f"Input batch size did not match output batch size: {count} vs. {output.shape[0]}")
    if _dtype_name(output) != "DT_FLOAT":
        raise status.invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(output)}")
    result.regressions.extend(regression_pb2.Regression(value=float(v)) for v in output.ravel())


def _signature(servable, name, missing_message):
    name = name or DEFAULT_SIGNATURE
    if name not in servable.signatures:
        raise status.invalid_argument(f"{missing_message}{name}")
    return name, servable.signatures[name]


def _model_spec(spec, name, signature_name, version):
    spec.name = name
    spec.signature_name = signature_name
    spec.version.value = version


# Each API is a generator of steps (servable.SavedModelServable.complete): it yields its session run's
# (feeds, fetch_names) and is sent back the fetched arrays.

def _one_steps(servable, request, shape_signature, fill, response):
    name, signature = _signature(servable, request.model_spec.signature_name, "No signature was found with the name: ")
    input_name, outputs = shape_signature(signature, servable.method_name_check)
    examples = examples_tensor(request.input)
    fetched = yield [(input_name, examples)], [tensor for _, tensor in outputs]
    _model_spec(response.model_spec, request.model_spec.name, name, servable.version)
    fill({alias: np.asarray(v) for (alias, _), v in zip(outputs, fetched)}, len(examples), response.result)
    return response


def classify_steps(servable, request):
    return _one_steps(servable, request, classification_signature, classification_result,
                      classification_pb2.ClassificationResponse())


def regress_steps(servable, request):
    return _one_steps(servable, request, regression_signature, regression_result, regression_pb2.RegressionResponse())


def multi_inference_steps(servable, request):
    """Several tasks on one input, one session run; the servable is the first task's (as TF Serving)."""
    model_name, seen, plans = "", set(), []
    for task in request.tasks:
        if not task.model_spec.name:
            raise status.invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif task.model_spec.name != model_name:
            raise status.invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise status.invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        if name not in servable.signatures:
            raise status.invalid_argument(f"Requested signature not found in model graph: {name}")
        signature = servable.signatures[name]
        if task.method_name == CLASSIFY_METHOD:
            input_name, outputs = classification_signature(signature, servable.method_name_check)
            fill = classification_result
        elif task.method_name == REGRESS_METHOD:
            input_name, outputs = regression_signature(signature, servable.method_name_check)
            fill = regression_result
        else:
            raise status.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                      f"Unsupported signature method_name: {task.method_name}")
        plans.append((task, name, input_name, outputs, fill))
    examples = examples_tensor(request.input)
    # Every task's input tensor is fed the same examples (TF2 exports give each signature its own).
    input_names = sorted({plan[2] for plan in plans})
    fetch_names = sorted({tensor for plan in plans for _, tensor in plan[3]})
    fetched = dict(zip(fetch_names, (yield [(n, examples) for n in input_names], fetch_names)))
    response = inference_pb2.MultiInferenceResponse()
    for task, name, _, outputs, fill in plans:
        result = response.results.add()
        target = result.classification_result if fill is classification_result else result.regression_result
        fill({alias: np.asarray(fetched[tensor]) for alias, tensor in outputs}, len(examples), target)
        _model_spec(result.model_spec, task.model_spec.name, name, servable.version)
    return response
