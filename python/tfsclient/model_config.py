"""grpcReloadModel's configs: a text ModelServerConfig read and checked as TF Serving would, or the one-model
config that -m NAME builds."""

import os

from . import cli, files, protos
from .errors import InputError


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


def one_model_config(args, client, models_dir):
    """-m NAME's config: base path from --base-path or models_dir/NAME; versions from --versions, --latest or
    the ones the server has available now (asked through client; None: do not ask, and serve the latest)."""
    config = protos.model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=args.model, base_path=os.path.abspath(args.base_path or os.path.join(models_dir, args.model)),
        model_platform="tensorflow")
    if args.versions:
        try:
            versions = [int(v) for v in args.versions.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--versions wants numbers like 1,2, not {args.versions!r}") from None
        model.model_version_policy.specific.versions.extend(versions)
    elif args.latest is not None:
        if args.latest < 1:
            raise InputError("--latest wants a number >= 1")
        model.model_version_policy.latest.num_versions = args.latest
    elif client is not None:
        available = available_versions(client, args)
        if available:
            model.model_version_policy.specific.versions.extend(available)
    for label in args.label:
        name, sep, version = label.partition("=")
        if not sep or not name or not version.isdigit():
            raise InputError(f"--label wants LABEL=VERSION, e.g. stable=1, not {label!r}")
        model.version_labels[name] = int(version)
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
