"""The reference client, written the guide's way: import TensorFlow, tf.make_tensor_proto, print the response."""

import sys

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

channel = grpc.insecure_channel(sys.argv[1])
stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
request = predict_pb2.PredictRequest()
request.model_spec.name = "Toy"
request.model_spec.version.value = 1
request.model_spec.signature_name = "serving_default"
request.inputs["input_1"].CopyFrom(tf.make_tensor_proto([[1.0, 2.0], [1.0, 3.0]], dtype=tf.float32))
print(stub.Predict(request, timeout=30))
