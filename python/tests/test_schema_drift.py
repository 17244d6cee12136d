"""The bundled schema (tfsclient.schema) against tensorflow-serving-api's installed descriptors: every message,
enum and service tfsclient bundles must match TF Serving's in names, numbers, types, labels, oneofs, nested types
and map entries, and every type of TF Serving's `apis` and `config` packages must be bundled. After an upgrade of
tensorflow-serving-api, a failure here lists what changed: run python/tools/emit_schema.py, then
python/tools/regenerate_schema.sh. Runs where tensorflow-serving-api is installed (the full dev venv)."""

import importlib
import pkgutil

import pytest

from tfsclient import protos

serving = pytest.importorskip("tensorflow_serving")
from google.protobuf import descriptor_pool  # noqa: E402

SCHEMA_PREFIX = "tfsclient/schema/"


def _field(field):
    target = field.message_type or field.enum_type
    return {
        "number": field.number, "type": field.type, "repeated": field.is_repeated, "required": field.is_required,
        "target": target.full_name if target is not None else None,
        "oneof": field.containing_oneof.name if field.containing_oneof is not None else None,
        "json_name": field.json_name, "presence": field.has_presence, "packed": field.is_packed,
    }


def _message(message):
    return {
        "fields": {field.name: _field(field) for field in message.fields},
        "oneofs": {oneof.name: sorted(f.name for f in oneof.fields) for oneof in message.oneofs},
        "nested": sorted(nested.name for nested in message.nested_types),
        "enums": sorted(enum.name for enum in message.enum_types),
        "map_entry": message.GetOptions().map_entry,
    }


def _enum(enum):
    return {"values": {value.name: value.number for value in enum.values}}


def _service(service):
    return {"methods": {m.name: (m.input_type.full_name, m.output_type.full_name,
                                 getattr(m, "client_streaming", False), getattr(m, "server_streaming", False))
                        for m in service.methods}}


def _types(file):
    """{full name: facts} of every message (nested ones too), enum and service of a file."""
    found = {}

    def walk(message):
        found[message.full_name] = _message(message)
        for nested in message.nested_types:
            walk(nested)
        for enum in message.enum_types:
            found[enum.full_name] = _enum(enum)

    for message in file.message_types_by_name.values():
        walk(message)
    for enum in file.enum_types_by_name.values():
        found[enum.full_name] = _enum(enum)
    for service in file.services_by_name.values():
        found[service.full_name] = _service(service)
    return found


def _lookup(pool, full_name, kind):
    finder = {"message": pool.FindMessageTypeByName, "enum": pool.FindEnumTypeByName,
              "service": pool.FindServiceByName}[kind]
    return finder(full_name)


def _kind(facts):
    return "message" if "fields" in facts else "enum" if "values" in facts else "service"


def _serving_files():
    files = []
    for name in ("tensorflow_serving.apis", "tensorflow_serving.config"):
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.endswith("_pb2"):
                files.append(importlib.import_module(f"{name}.{info.name}").DESCRIPTOR)
    return files


def differences():
    """Each way the bundled schema differs from the installed tensorflow-serving-api's, as a line."""
    theirs_files = _serving_files()
    default = descriptor_pool.Default()
    ours_files = {module.DESCRIPTOR.name for module in _bundled_modules()}
    lines = []
    for file_name in sorted(ours_files):
        for full_name, facts in _types(protos.POOL.FindFileByName(file_name)).items():
            try:
                theirs = _lookup(default, full_name, _kind(facts))
            except KeyError:
                lines.append(f"{full_name}: bundled, but not in tensorflow-serving-api")
                continue
            their_facts = (_message(theirs) if _kind(facts) == "message" else _enum(theirs)
                           if _kind(facts) == "enum" else _service(theirs))
            lines += [f"{full_name}: {line}" for line in _compare(facts, their_facts)]
    for file in theirs_files:  # all of TF Serving's own types are bundled
        for full_name, facts in _types(file).items():
            try:
                _lookup(protos.POOL, full_name, _kind(facts))
            except KeyError:
                lines.append(f"{full_name}: in tensorflow-serving-api ({file.name}), not bundled")
    return lines


def _compare(ours, theirs, where=""):
    lines = []
    for key in sorted(set(ours) | set(theirs)):
        if key not in theirs:
            lines.append(f"{where}{key}: only bundled ({ours[key]})")
        elif key not in ours:
            lines.append(f"{where}{key}: missing from the bundle ({theirs[key]})")
        elif isinstance(ours[key], dict) and isinstance(theirs[key], dict):
            lines += _compare(ours[key], theirs[key], f"{where}{key}.")
        elif ours[key] != theirs[key]:
            lines.append(f"{where}{key}: bundled {ours[key]!r}, tensorflow-serving-api {theirs[key]!r}")
    return lines


def _bundled_modules():
    import tfsclient.schema

    modules = []
    for info in pkgutil.walk_packages(tfsclient.schema.__path__, "tfsclient.schema."):
        if info.name.endswith("_pb2"):
            modules.append(importlib.import_module(info.name))
    return modules


def test_the_bundled_schema_is_tensorflow_servings():
    found = differences()
    assert not found, "the bundled schema differs from tensorflow-serving-api's:\n" + "\n".join(found)


def test_the_comparison_sees_a_changed_field():
    # The walk itself: a field number changed in a copy of TF Serving's facts is reported.
    theirs = _message(protos.predict_pb2.PredictRequest.DESCRIPTOR)
    changed = {**theirs, "fields": {**theirs["fields"], "output_filter": {**theirs["fields"]["output_filter"],
                                                                          "number": 4}}}
    assert _compare(changed, theirs) == ["fields.output_filter.number: bundled 4, tensorflow-serving-api 3"]


def test_every_bundled_file_is_under_the_schema_and_in_its_own_pool():
    modules = _bundled_modules()
    assert len(modules) >= 40
    for module in modules:
        assert module.DESCRIPTOR.name.startswith(SCHEMA_PREFIX)
        assert module.DESCRIPTOR.pool is protos.POOL
