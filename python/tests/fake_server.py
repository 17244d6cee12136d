"""A test-only peer for the scripts: a gRPC server that speaks TF Serving's PredictionService badly on purpose.

python fake_server.py MODE [SECONDS] prints its port on a line once it listens, then serves until killed:
  slow SECONDS   GetModelMetadata and Predict each answer after SECONDS (Toy's signature, a 1x1 output)
  die            Predict ends the process in the middle of the call (the connection drops)
  garbage        Predict answers bytes that are not a PredictResponse
  loading        GetModelStatus answers Toy version 1 LOADING, and prints "status" on a line for each call
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


def main():
    mode = sys.argv[1]
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    metadata, answer = metadata_response(), predict_response()

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
        return loading_response()

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "GetModelMetadata": grpc.unary_unary_rpc_method_handler(get_metadata),
        "Predict": grpc.unary_unary_rpc_method_handler(predict),
    })
    models = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "GetModelStatus": grpc.unary_unary_rpc_method_handler(get_status),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler, models))
    port = server.add_insecure_port("localhost:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
