"""TF Serving's API schema, bundled: the .proto files (written by python/tools/emit_schema.py from the wire facts)
and the modules protoc made from them (python/tools/regenerate_schema.sh), e.g.
``tfsclient.schema.tensorflow_serving.apis.predict_pb2``. Import them through ``tfsclient.protos``.

The modules register their files in POOL, a descriptor pool of their own, not protobuf's default one, where
TensorFlow's and tensorflow-serving-api's modules register the same message names: a process may import both,
in either order. Their classes are therefore not TensorFlow's; a message crosses over as bytes
(``tf_class.FromString(ours.SerializeToString())``). Printing or parsing an ``Any`` by name needs this pool:
``text_format.MessageToString(message, descriptor_pool=POOL)``.

protobuf's own messages that the schema uses (``Any``, ``Int64Value`` and the other wrappers) are therefore this
pool's too, and here by name: ``ModelSpec(version=tfsclient.schema.Int64Value(value=1))``, not
``google.protobuf.wrappers_pb2.Int64Value`` (whose class is the default pool's).
"""

from google.protobuf import any_pb2, descriptor_pool, message_factory, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
# protobuf's own files that the schema imports, taken from protobuf itself; their classes named here (so that
# they pickle, and can be made), the classes the schema's fields hold.
for _module in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
    for _name in _module.DESCRIPTOR.message_types_by_name:
        _class = message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"google.protobuf.{_name}"))
        _class.__module__, _class.__qualname__ = __name__, _name
        globals()[_name] = _class
del _module, _name, _class
