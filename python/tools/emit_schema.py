"""Write tfsclient's .proto schema from the wire facts of an installed tensorflow-serving-api.

Run in a venv that has tensorflow-serving-api (the full dev .venv), when TF Serving's API changes (the drift test,
python/tests/test_schema_drift.py, says when):

    .venv/bin/python python/tools/emit_schema.py && python/tools/regenerate_schema.sh

The schema holds every message, enum and service of TF Serving's `apis` and `config` packages, and every TensorFlow
message and enum they reach, each whole. Each is written from its descriptor alone: package, names, field numbers,
types, labels, oneofs, map fields, JSON names that differ from the default, enum values. No comment or option of
the original files is carried over, and no file is copied. A TensorFlow file gets only the types reached from TF
Serving's (a nested type brings its top-level message whole). The files live under tfsclient/schema/ and import
each other by that path, so the modules protoc makes from them import each other there, never TensorFlow's.
"""

import importlib
import os
import pkgutil
import sys

from google.protobuf import descriptor, descriptor_pb2

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfsclient", "schema")
PREFIX = "tfsclient/schema/"  # the schema's files import each other by this path (protoc runs with -I python)
ROOT_PACKAGES = ("tensorflow_serving.apis", "tensorflow_serving.config")
WELL_KNOWN = "google/protobuf/"  # protoc's own (any.proto, wrappers.proto): imported as they are

_SCALARS = {
    descriptor.FieldDescriptor.TYPE_DOUBLE: "double", descriptor.FieldDescriptor.TYPE_FLOAT: "float",
    descriptor.FieldDescriptor.TYPE_INT64: "int64", descriptor.FieldDescriptor.TYPE_UINT64: "uint64",
    descriptor.FieldDescriptor.TYPE_INT32: "int32", descriptor.FieldDescriptor.TYPE_FIXED64: "fixed64",
    descriptor.FieldDescriptor.TYPE_FIXED32: "fixed32", descriptor.FieldDescriptor.TYPE_BOOL: "bool",
    descriptor.FieldDescriptor.TYPE_STRING: "string", descriptor.FieldDescriptor.TYPE_BYTES: "bytes",
    descriptor.FieldDescriptor.TYPE_UINT32: "uint32", descriptor.FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    descriptor.FieldDescriptor.TYPE_SFIXED64: "sfixed64", descriptor.FieldDescriptor.TYPE_SINT32: "sint32",
    descriptor.FieldDescriptor.TYPE_SINT64: "sint64",
}


def _root_files():
    files = []
    for package_name in ROOT_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.endswith("_pb2"):
                files.append(importlib.import_module(f"{package_name}.{info.name}").DESCRIPTOR)
    return files


def _top(type_descriptor):
    while type_descriptor.containing_type is not None:
        type_descriptor = type_descriptor.containing_type
    return type_descriptor


def _walk(message):
    """message and every message nested in it."""
    yield message
    for nested in message.nested_types:
        yield from _walk(nested)


def reached(files):
    """{file name: set of top-level type full names to write}: all of `files`, and what their types reach."""
    wanted, todo = {}, []

    def want(type_descriptor):
        top = _top(type_descriptor)
        if top.file.name.startswith(WELL_KNOWN):
            return
        names = wanted.setdefault(top.file.name, set())
        if top.full_name not in names:
            names.add(top.full_name)
            if isinstance(top, descriptor.Descriptor):
                todo.append(top)

    for file in files:
        wanted.setdefault(file.name, set())
        for message in file.message_types_by_name.values():
            want(message)
        for enum in file.enum_types_by_name.values():
            want(enum)
        for service in file.services_by_name.values():
            for method in service.methods:
                want(method.input_type)
                want(method.output_type)
    while todo:
        for message in _walk(todo.pop()):
            for field in message.fields:
                if field.message_type is not None:
                    want(field.message_type)
                if field.enum_type is not None:
                    want(field.enum_type)
    return wanted


def _type_name(field):
    if field.type in _SCALARS:
        return _SCALARS[field.type]
    target = field.message_type or field.enum_type
    return "." + target.full_name  # fully qualified: no scope rules to get wrong


def _field_line(field, proto3):
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        text = f"map<{_type_name(key)}, {_type_name(value)}> {field.name} = {field.number}"
    else:
        if field.is_repeated:
            label = "repeated "
        elif proto3:
            label = "optional " if field.containing_oneof is not None and _synthetic(field.containing_oneof) else ""
        elif field.containing_oneof is not None:
            label = ""  # a proto2 oneof's member has no label
        else:
            label = "required " if field.is_required else "optional "
        text = f"{label}{_type_name(field)} {field.name} = {field.number}"
    options = []
    if field.json_name != _default_json_name(field.name):
        options.append(f'json_name = "{field.json_name}"')
    if not proto3 and field.has_default_value:
        raise SystemExit(f"{field.full_name}: a proto2 default value; teach emit_schema.py to write it")
    if field.GetOptions().HasField("packed"):
        options.append(f"packed = {str(field.GetOptions().packed).lower()}")
    return text + (f" [{', '.join(options)}]" if options else "") + ";"


def _default_json_name(name):
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _synthetic(oneof):
    """A proto3 `optional` field's own oneof (named _<field>), not one written in the schema."""
    fields = oneof.fields
    return len(fields) == 1 and oneof.name == "_" + fields[0].name and getattr(fields[0], "has_presence", True)


def _message(message, proto3, indent):
    pad = "  " * indent
    lines = [f"{pad}message {message.name} {{"]
    for nested in message.nested_types:
        if not nested.GetOptions().map_entry:
            lines += _message(nested, proto3, indent + 1)
    for enum in message.enum_types:
        lines += _enum(enum, indent + 1)
    written = set()
    for field in message.fields:
        oneof = field.containing_oneof
        if oneof is not None and not _synthetic(oneof):
            if oneof.name in written:
                continue
            written.add(oneof.name)
            lines.append(f"{pad}  oneof {oneof.name} {{")
            lines += [f"{pad}    {_field_line(member, proto3)}" for member in oneof.fields]
            lines.append(f"{pad}  }}")
        else:
            lines.append(f"{pad}  {_field_line(field, proto3)}")
    lines.append(f"{pad}}}")
    return lines


def _enum(enum, indent):
    pad = "  " * indent
    lines = [f"{pad}enum {enum.name} {{"]
    if len({value.number for value in enum.values}) < len(enum.values):
        lines.append(f"{pad}  option allow_alias = true;")
    lines += [f"{pad}  {value.name} = {value.number};" for value in enum.values]
    lines.append(f"{pad}}}")
    return lines


def _service(service):
    lines = [f"service {service.name} {{"]
    for method in service.methods:
        stream_in = "stream " if getattr(method, "client_streaming", False) else ""
        stream_out = "stream " if getattr(method, "server_streaming", False) else ""
        lines.append(f"  rpc {method.name}({stream_in}.{method.input_type.full_name}) "
                     f"returns ({stream_out}.{method.output_type.full_name});")
    lines.append("}")
    return lines


def _syntax(file):
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    if proto.syntax not in ("", "proto2", "proto3"):
        raise SystemExit(f"{file.name}: syntax {proto.syntax!r}; teach emit_schema.py to write it")
    return proto.syntax or "proto2"


def _file_text(file, names):
    syntax = _syntax(file)
    proto3 = syntax == "proto3"
    types = [t for t in list(file.message_types_by_name.values()) + list(file.enum_types_by_name.values())
             if t.full_name in names]
    types.sort(key=lambda t: _position(file, t))
    imports = set()
    for top in types:
        for message in _walk(top) if isinstance(top, descriptor.Descriptor) else ():
            for field in message.fields:
                target = field.message_type or field.enum_type
                if target is not None and not (target.GetOptions().map_entry if field.message_type else False):
                    imports.add(_top(target).file.name)
                elif field.message_type is not None:  # a map: its key and value types
                    value = field.message_type.fields_by_name["value"]
                    if value.message_type or value.enum_type:
                        imports.add(_top(value.message_type or value.enum_type).file.name)
    for service in file.services_by_name.values():
        for method in service.methods:
            imports |= {method.input_type.file.name, method.output_type.file.name}
    imports.discard(file.name)
    lines = ["// Written by python/tools/emit_schema.py from tensorflow-serving-api's descriptors: wire facts only.",
             f'syntax = "{syntax}";', "", f"package {file.package};", ""]
    lines += [f'import "{name if name.startswith(WELL_KNOWN) else PREFIX + name}";' for name in sorted(imports)]
    if not imports:
        lines.pop()  # one blank line between the package and the first type
    for top in types:
        lines.append("")
        lines += _message(top, proto3, 0) if isinstance(top, descriptor.Descriptor) else _enum(top, 0)
    for service in file.services_by_name.values():
        lines.append("")
        lines += _service(service)
    return "\n".join(lines) + "\n"


def _position(file, type_descriptor):
    """A top-level type's place in its file (messages first, then enums, each in the file's order)."""
    messages = list(file.message_types_by_name)
    if type_descriptor.name in messages:
        return (0, messages.index(type_descriptor.name))
    return (1, list(file.enum_types_by_name).index(type_descriptor.name))


def main():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from google.protobuf import descriptor_pool

    from tfsclient import protos  # noqa: F401 (tensorflow-serving-api's modules, without TensorFlow's runtime)

    pool = descriptor_pool.Default()
    wanted = reached(_root_files())
    written = []
    for name, names in sorted(wanted.items()):
        file = pool.FindFileByName(name)
        path = os.path.join(ROOT, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as out:
            out.write(_file_text(file, names))
        written.append(name)
    print(f"{len(written)} files, {sum(len(n) for n in wanted.values())} top-level types, under {ROOT}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
