"""TF Serving config messages that the tensorflow-serving-api package does not ship, declared here.

Each is declared with its real full name, field names and numbers, so TF Serving's text files parse
the same (BatchingParameters from session_bundle_config.proto, SSLConfig from ssl_config.proto,
MonitoringConfig from monitoring_config.proto).
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_FieldProto = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"bool": _FieldProto.TYPE_BOOL, "string": _FieldProto.TYPE_STRING, "int64": _FieldProto.TYPE_INT64}


def declare(file_name, messages):
    """Message classes tensorflow.serving.<name> for {name: fields}; fields are (name, kind, number), where
    kind is a scalar ("bool", "string", "int64", "repeated int64"), a google.protobuf wrapper
    ("Int64Value") or another message of the same file ("message PrometheusConfig")."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(name=f"local/{file_name}", package="tensorflow.serving",
                                               dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, kind, number in fields:
            field = message.field.add(name=name, number=number, label=_FieldProto.LABEL_OPTIONAL)
            qualifier, _, kind = kind.rpartition(" ")
            if qualifier == "repeated":
                field.label = _FieldProto.LABEL_REPEATED
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif qualifier == "message":
                field.type, field.type_name = _FieldProto.TYPE_MESSAGE, f".tensorflow.serving.{kind}"
            else:
                field.type, field.type_name = _FieldProto.TYPE_MESSAGE, f".google.protobuf.{kind}"
    pool.Add(proto)
    return [message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
            for name in messages]


[BatchingParameters] = declare("session_bundle_config.proto", {"BatchingParameters": [
    ("max_batch_size", "Int64Value", 1), ("batch_timeout_micros", "Int64Value", 2),
    ("max_enqueued_batches", "Int64Value", 3), ("num_batch_threads", "Int64Value", 4),
    ("thread_pool_name", "StringValue", 5), ("allowed_batch_sizes", "repeated int64", 6),
    ("pad_variable_length_inputs", "bool", 7), ("enable_large_batch_splitting", "BoolValue", 8),
    ("max_execution_batch_size", "Int64Value", 9)]})  # session_bundle_config.proto's numbers

[SSLConfig] = declare("ssl_config.proto", {"SSLConfig": [
    ("server_key", "string", 1), ("server_cert", "string", 2), ("custom_ca", "string", 3),
    ("client_verify", "bool", 4)]})

PrometheusConfig, MonitoringConfig = declare("monitoring_config.proto", {
    "PrometheusConfig": [("enable", "bool", 1), ("path", "string", 2)],
    "MonitoringConfig": [("prometheus_config", "message PrometheusConfig", 1)]})
