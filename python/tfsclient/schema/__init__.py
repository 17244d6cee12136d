"""TF Serving's API schema, bundled: the .proto files (written by python/tools/emit_schema.py from the wire facts)
and the modules protoc made from them (python/tools/regenerate_schema.sh), e.g.
``tfsclient.schema.tensorflow_serving.apis.predict_pb2``. Import them through ``tfsclient.protos``.

The modules register their files in POOL, a descriptor pool of their own, not protobuf's default one, where
TensorFlow's and tensorflow-serving-api's modules register the same message names: a process may import both,
in either order. Their classes are therefore not TensorFlow's; a message crosses over as bytes
(``tf_class.FromString(ours.SerializeToString())``). Printing or parsing an ``Any`` by name needs this pool:
``text_format.MessageToString(message, descriptor_pool=POOL)``.
"""

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
# protobuf's own files that the schema imports, taken from protobuf itself.
for _module in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
