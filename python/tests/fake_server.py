"""A test-only peer for the scripts: a gRPC server that speaks TF Serving's PredictionService badly on purpose.

python fake_server.py MODE [SECONDS] prints its port on a line once it listens, then serves until killed:
  slow SECONDS   GetModelMetadata and Predict each answer after SECONDS (Toy's signature, a 1x1 output)
  die            Predict ends the process in the middle of the call (the connection drops)
  garbage        Predict answers bytes that are not a PredictResponse
  loading [SECONDS]  GetModelStatus answers Toy version 1 LOADING (after SECONDS), and prints "status" on a line
                 for each call
  odd            answers that are valid on the wire but odd, chosen by the model name asked for (ODD_MODELS)
"""

import os
import sys
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # python/, for tfsclient.protos

import grpc  # noqa: E402

from tfsclient import protos  # noqa: E402


def metadata_response():
    signatures = protos.get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    entry = signature.inputs["input_1"]
    entry.name, entry.dtype = "serving_default_input_1:0", protos.types_pb2.DT_FLOAT
    entry.tensor_shape.dim.add(size=-1)
    entry.tensor_shape.dim.add(size=2)
    out = signature.outputs["output_1"]
    out.name, out.dtype = "StatefulPartitionedCall:0", protos.types_pb2.DT_FLOAT
    response = protos.get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "Toy"
    response.model_spec.version.value = 1
    response.metadata["signature_def"].Pack(signatures)
    return response.SerializeToString()


def predict_response():
    response = protos.predict_pb2.PredictResponse()
    response.model_spec.name = "Toy"
    response.model_spec.version.value = 1
    tensor = response.outputs["output_1"]
    tensor.dtype = protos.types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=1)
    tensor.tensor_shape.dim.add(size=1)
    tensor.float_val.append(1.5)
    return response.SerializeToString()


def loading_response():
    response = protos.get_model_status_pb2.GetModelStatusResponse()
    version = response.model_version_status.add()
    version.version = 1
    version.state = protos.get_model_status_pb2.ModelVersionStatus.State.LOADING
    return response.SerializeToString()


def odd_answer(method, request):
    """mode odd: the answer for the model named in the request (bytes), or a status to end the call with.

    Predict outputs: variant (DT_VARIANT), unknown_dtype (dtype 999), negative_dim (a dim of -3), short_content
    (tensor_content shorter than its shape), non_ascii (a string output "é"); Predict of multiline: UNIMPLEMENTED with
    a detail on several lines. GetModelMetadata: garbage_any (an Any that does not parse), other_any (an Any holding
    another type). GetModelStatus: a state and an error code no client knows. Health Check: a status no client
    knows."""
    if method == "Check":
        return b"\x08\x2a"  # HealthCheckResponse.status = 42
    # (GetModelStatusRequest holds only the model_spec, field 1 of every request here: the rest is unknown fields)
    name = protos.get_model_status_pb2.GetModelStatusRequest.FromString(request).model_spec.name
    if method == "GetModelStatus":
        response = protos.get_model_status_pb2.GetModelStatusResponse()
        version = response.model_version_status.add()
        version.version, version.state = 1, 42
        version.status.error_code, version.status.error_message = 99, "odd"
        return response.SerializeToString()
    if method == "GetModelMetadata":
        response = protos.get_model_metadata_pb2.GetModelMetadataResponse.FromString(metadata_response())
        response.model_spec.name = name
        signature = response.metadata["signature_def"]
        if name == "garbage_any":
            signature.value = b"\xff\xff\xff\xff"
        elif name == "other_any":
            signature.Pack(protos.tensor_pb2.TensorProto(dtype=1))
        return response.SerializeToString()
    if name == "multiline":
        return grpc.StatusCode.UNIMPLEMENTED, "first line\nsecond line\n  third"
    response = protos.predict_pb2.PredictResponse.FromString(predict_response())
    tensor = response.outputs["output_1"]
    if name == "variant":
        tensor.dtype = protos.types_pb2.DT_VARIANT
    elif name == "unknown_dtype":
        tensor.dtype = 999
    elif name == "negative_dim":
        tensor.tensor_shape.dim[0].size = -3
    elif name == "short_content":
        tensor.ClearField("float_val")
        tensor.tensor_content = b"\0\0"
    elif name == "non_ascii":
        tensor.Clear()
        tensor.dtype = protos.types_pb2.DT_STRING
        tensor.tensor_shape.dim.add(size=1)
        tensor.string_val.append("é".encode())
    return response.SerializeToString()


def main():
    mode = sys.argv[1]
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    metadata, answer = metadata_response(), predict_response()

    def odd(method):
        def answer(request, context):
            result = odd_answer(method, request)
            if isinstance(result, tuple):
                context.abort(*result)
            return result
        return answer

    def get_metadata(request, context):
        time.sleep(delay)
        return metadata

    def predict(request, context):
        if mode == "die":
            os._exit(3)
        time.sleep(delay)
        return b"\xff\xff\xff\xff" if mode == "garbage" else answer

    def get_status(request, context):
        print("status", flush=True)
        time.sleep(delay)
        return loading_response()

    if mode == "odd":
        get_metadata, predict, get_status = odd("GetModelMetadata"), odd("Predict"), odd("GetModelStatus")

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "GetModelMetadata": grpc.unary_unary_rpc_method_handler(get_metadata),
        "Predict": grpc.unary_unary_rpc_method_handler(predict),
    })
    models = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "GetModelStatus": grpc.unary_unary_rpc_method_handler(get_status),
    })
    health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(odd("Check")),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler, models, health))
    port = server.add_insecure_port("localhost:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
