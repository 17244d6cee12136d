"""grpcReloadModel's configs: a text ModelServerConfig read and checked as TF Serving would, or the one-model
config that -m NAME builds."""

import os
import re
import types

from . import cli, files, protos
from .errors import InputError
from .text import cut, printable

# A version is a ServableId's int64, which "Must be non-negative" (TF Serving's core/servable_id.h): what
# model_version_policy.specific asks for, and what version_labels (map<string, int64>,
# config/model_server_config.proto) point at. TF Serving has no version that means "the latest".
MAX_VERSION = 2**63 - 1
# --latest N is Latest.num_versions, a uint32 (config/file_system_storage_path_source.proto) that
# AspireLatestVersions (sources/storage_path/file_system_storage_path_source.cc) copies into an int32: from 2**31 up it
# is negative there, never reached, and every version on disk is served. 0 is taken as 1 there; refused here.
MAX_LATEST = 2**31 - 1
VERSION_RULE = "a version is a whole number from 0 to 2**63-1, e.g. --versions 1,2"
LATEST_RULE = "--latest N serves the N latest versions, N a whole number from 1 to 2**31-1, e.g. --latest 2"
LABEL_RULE = "a label names a version, a whole number from 0 to 2**63-1, e.g. --label stable=1"
_WHOLE = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() alone takes "1_0" (10) and "٣" (3)


def parse_config_file(path):
    """The ModelServerConfig in `path`; InputError as file:line:col: message if it is not one."""
    from google.protobuf import text_format

    text = files.read_text(path, None, "config", noun="config ")
    config = protos.model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config, descriptor_pool=protos.POOL)  # an Any by name: the bundled schema's
    except text_format.ParseError as e:
        message = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        raise InputError(f"{path}:{e.GetLine() or 1}:{e.GetColumn() or 1}: {message}") from None
    check_config(config, path)
    return config


def check_config(config, where):
    """What TF Serving would refuse, caught before sending."""
    if config.WhichOneof("config") != "model_config_list":
        raise InputError(f"{where}: needs a model_config_list (the only config TF Serving reloads)")
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise InputError(f"{where}: a model config has no name")
        if model.name in seen:
            raise InputError(f"{where}: model {model.name} is listed twice")
        seen.add(model.name)
        if not (model.base_path.startswith("/") or "://" in model.base_path):
            raise InputError(f"{where}: model {model.name}: base_path must be absolute, as TF Serving "
                                    f"requires (got {model.base_path!r})")
        if not model.model_platform:
            raise InputError(f"{where}: model {model.name}: add model_platform: \"tensorflow\"")


def one_model_flags(args):
    """-m's flags, checked before anything is sent (InputError, one line): a namespace of versions (a list, or
    None), latest (an int, or None) and labels ({name: version})."""
    _utf8(args.model, f"-m {_quoted(args.model)}: the model name")
    if args.base_path is not None:
        if not args.base_path:
            raise InputError("--base-path is empty: give the model's folder, or leave the flag out for the default")
        _utf8(args.base_path, f"--base-path {_quoted(args.base_path)}: the path")
    versions = None if args.versions is None else _versions(args.versions)
    latest = None
    if args.latest is not None:
        latest = whole_number(args.latest, "--latest", LATEST_RULE, minimum=1, maximum=MAX_LATEST)
    labels = _labels(args.label)
    for name, version in labels.items():  # TF Serving refuses a label on a version it does not serve
        if versions is not None and version not in versions:
            raise InputError(f"--label {name}={version}: version {version} is not in --versions "
                             f"{','.join(map(str, versions))}: label a version you serve")
    return types.SimpleNamespace(versions=versions, latest=latest, labels=labels)


def whole_number(text, flag, rule, minimum=0, maximum=MAX_VERSION, if_negative=""):
    """text as an int from minimum to maximum written in the digits 0-9 (spaces around it allowed), else
    InputError: "FLAG: what is wrong with it: rule" (and if_negative after it for a number below 0)."""
    item = text.strip()
    if _WHOLE.fullmatch(item):
        value = int(item)
        if minimum <= value <= maximum:
            return value
        if value > maximum:
            problem = f"{value} is more than 2**{maximum.bit_length()}-1"  # (both maximums are 2**N-1)
        elif value < 0:
            problem, rule = f"{value} is negative", rule + if_negative
        else:
            problem = f"{value} is less than {minimum}"
    elif item and all(c.isdigit() or c.isnumeric() or c in "+-" for c in item):  # superscripts, other scripts
        problem = f"{_quoted(item)} is not written in the digits 0-9"
    elif _is_float(item):
        problem = f"{_quoted(item)} is not a whole number"
    else:
        problem = f"{_quoted(item)} is not a number"
    raise InputError(f"{flag}: {problem}: {rule}")


def _is_float(item):
    try:
        float(item)
    except ValueError:
        return False
    return "_" not in item  # float() takes "1_0" too


def _versions(text):
    if not text.strip():
        raise InputError("--versions is empty: give the versions to serve, e.g. --versions 1,2")
    versions = []
    for item in text.split(","):
        if not item.strip():
            raise InputError(f"--versions: an empty item in {_quoted(text)}: give the versions to serve separated by "
                             "commas, e.g. --versions 1,2")
        # -1 was sent: TF Serving found no such version and unloaded the model (and -m unloads every other one)
        version = whole_number(item, "--versions", VERSION_RULE,
                               if_negative=" (for the latest version, give --latest 1)")
        if version in versions:
            raise InputError(f"--versions: version {version} is listed twice in {_quoted(text)}: give each "
                             "version once")
        versions.append(version)
    return versions


def _labels(labels):
    """{name: version} from --label NAME=VERSION flags."""
    found, given = {}, {}
    for label in labels:
        _utf8(label, f"--label {_quoted(label)}: the label")
        name, sep, version = label.partition("=")
        if not sep or not name or not version:
            raise InputError(f"--label wants LABEL=VERSION, e.g. stable=1, not {_quoted(label)}")
        if name in found:  # a map in the config: the last would win
            raise InputError(f"--label {name} is given twice ({given[name]}, then {label}): give each label once")
        found[name] = whole_number(version, f"--label {cut(label, 100)}", LABEL_RULE)
        given[name] = label
    return found


def _utf8(text, what):
    """InputError when text (from argv: bytes that are not UTF-8 are surrogates) cannot go in a protobuf string."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not valid UTF-8") from None


def _quoted(text):
    return repr(cut(printable(text), 100))


def one_model_config(args, flags, client, models_dir):
    """-m NAME's config: base path from --base-path or models_dir/NAME; versions from --versions, --latest or
    the ones the server has available now (asked through client; None: do not ask, and serve the latest).
    flags: one_model_flags(args)."""
    config = protos.model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=args.model, base_path=os.path.abspath(args.base_path or os.path.join(models_dir, args.model)),
        model_platform="tensorflow")
    if flags.versions is not None:
        model.model_version_policy.specific.versions.extend(flags.versions)
    elif flags.latest is not None:
        model.model_version_policy.latest.num_versions = flags.latest
    elif client is not None:
        available = available_versions(client, args)
        if available:
            model.model_version_policy.specific.versions.extend(available)
    for name, version in flags.labels.items():
        model.version_labels[name] = version
    return config


def available_versions(client, args):
    import grpc

    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = args.model
    try:
        response = client.GetModelStatus(request, timeout=cli.time_left(args))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return []
        raise
    available = protos.get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
    return sorted(v.version for v in response.model_version_status if v.state == available)
