#!/usr/bin/env python3
"""HandleReloadConfigRequest: replace the set of models TF Serving serves.

TF Serving serves exactly the config it is sent: models left out are unloaded. -c FILE sends a
whole config (the text ModelServerConfig the server reads, checked here first); -m NAME sends a
one-model config and warns that every other model will be unloaded.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    import startup
    startup.quiet_interrupts()

import os
import sys

import common
from tfsclient import files

PROGRAM = "grpcReloadModel.py"
MODELS_DIR = os.environ.get("TFS_MODELS_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "save")


def build_parser():
    parser = common.parser(
        "Tell TF Serving which models to serve (HandleReloadConfigRequest). The config sent replaces the "
        "whole served set.",
        "python3 grpcReloadModel.py -c ../models/save/toy_labels.config", model=False, versions=False)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="a text ModelServerConfig, as for tensorflow_model_server --model_config_file")
    parser.add_argument("--base-path", metavar="PATH",
                        help="with -m: the model's folder of numbered versions, as the server sees it "
                             "(default: $TFS_MODELS_DIR/NAME, else this repo's models/save/NAME)")
    parser.add_argument("--versions", metavar="N,N", help="with -m: serve these versions (default: the "
                        "versions available now, or the latest if the model is not served yet)")
    parser.add_argument("--latest", type=int, metavar="N", help="with -m: serve the N latest versions")
    parser.add_argument("--label", action="append", default=[], metavar="LABEL=N",
                        help="with -m: version label, e.g. stable=1 (repeatable; the version must be available)")
    return parser


def parse_config_file(path):
    """The ModelServerConfig in `path`; InputError as file:line:col: message if it is not one."""
    from google.protobuf import text_format

    text = files.read_text(path, None, "config", noun="config ")
    config = common.protos.model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        message = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        raise common.InputError(f"{path}:{e.GetLine() or 1}:{e.GetColumn() or 1}: {message}") from None
    check_config(config, path)
    return config


def check_config(config, where):
    """What TF Serving would refuse, caught before sending."""
    if config.WhichOneof("config") != "model_config_list":
        raise common.InputError(f"{where}: needs a model_config_list (the only config TF Serving reloads)")
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise common.InputError(f"{where}: a model config has no name")
        if model.name in seen:
            raise common.InputError(f"{where}: model {model.name} is listed twice")
        seen.add(model.name)
        if not (model.base_path.startswith("/") or "://" in model.base_path):
            raise common.InputError(f"{where}: model {model.name}: base_path must be absolute, as TF Serving "
                                    f"requires (got {model.base_path!r})")
        if not model.model_platform:
            raise common.InputError(f"{where}: model {model.name}: add model_platform: \"tensorflow\"")


def one_model_config(args, model_stub):
    config = common.protos.model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=args.model, base_path=os.path.abspath(args.base_path or os.path.join(MODELS_DIR, args.model)),
        model_platform="tensorflow")
    if args.versions:
        try:
            versions = [int(v) for v in args.versions.split(",") if v.strip()]
        except ValueError:
            raise common.InputError(f"--versions wants numbers like 1,2, not {args.versions!r}") from None
        model.model_version_policy.specific.versions.extend(versions)
    elif args.latest is not None:
        if args.latest < 1:
            raise common.InputError("--latest wants a number >= 1")
        model.model_version_policy.latest.num_versions = args.latest
    else:
        available = available_versions(model_stub, args)
        if available:
            model.model_version_policy.specific.versions.extend(available)
    for label in args.label:
        name, sep, version = label.partition("=")
        if not sep or not name or not version.isdigit():
            raise common.InputError(f"--label wants LABEL=VERSION, e.g. stable=1, not {label!r}")
        model.version_labels[name] = int(version)
    return config


def available_versions(model_stub, args):
    import grpc

    request = common.protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = args.model
    try:
        response = model_stub.GetModelStatus(request, timeout=common.time_left(args))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return []
        raise
    available = common.protos.get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
    return sorted(v.version for v in response.model_version_status if v.state == available)


def check_served(model_stub, config, args):
    """After a reload that answered OK: every model in the config serves a version (or is loading one).

    TF Serving accepts a config that asks for versions not on disk and unloads the versions it served: the
    model is then gone. That is an error here (exit 1) that says what the status shows.
    """
    import grpc

    states = common.protos.get_model_status_pb2.ModelVersionStatus.State
    for model in config.model_config_list.config:
        request = common.protos.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model.name
        try:
            versions = model_stub.GetModelStatus(request, timeout=common.time_left(args)).model_version_status
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            versions = []
        if any(v.state in (states.AVAILABLE, states.START, states.LOADING) for v in versions):
            continue
        asked = list(model.model_version_policy.specific.versions)
        known = sorted({v.version for v in versions})
        missing = [v for v in asked if v not in known]
        what = f"version {', '.join(map(str, missing))} is not on disk" if missing else "no version loaded"
        errors = "; ".join(f"version {v.version}: {' '.join(v.status.error_message.split())[:200]}"
                           for v in versions if v.status.error_message)
        shown = ", ".join(f"{v.version} {states.Name(v.state)}" for v in sorted(versions, key=lambda v: v.version))
        hint = f" (reload with one that is, e.g. --versions {known[-1]})" if missing and known and args.model else ""
        raise common.ServerError(f"model {model.name} is not served after the reload: {what}{hint}; "
                                 f"the status shows {'versions ' + shown if shown else 'no version'}"
                                 f"{'; ' + errors if errors else ''}")


def reload(args):
    if bool(args.config) == bool(args.model):
        raise common.InputError("give -c FILE (a whole config) or -m NAME (one model)")
    if args.config and (args.base_path or args.versions or args.label or args.latest is not None):
        raise common.InputError("--base-path, --versions, --latest and --label go with -m, not -c")
    if args.versions and args.latest is not None:
        raise common.InputError("--versions and --latest are exclusive")
    config = parse_config_file(args.config) if args.config else None
    with common.channel(args) as channel:
        stub = common.protos.model_service_pb2_grpc.ModelServiceStub(channel)
        if config is None:
            config = one_model_config(args, stub)
            print(f"{PROGRAM}: warning: TF Serving will serve only model {args.model} now; every other model "
                  "is unloaded (use -c FILE to keep several)", file=sys.stderr)
        request = common.protos.model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        response = stub.HandleReloadConfigRequest(request, timeout=common.time_left(args))
        if response.status.error_code:  # servers that answer OK with the error in the body
            raise common.ServerError(f"reload failed: {response.status.error_message}")
        check_served(stub, config, args)
    names = [m.name for m in config.model_config_list.config]
    if args.format == "json":
        common.dump_json({"reloaded": names})
    elif args.model:
        print(f"model {args.model} reloaded successfully")
    else:
        print(f"config reloaded successfully: {', '.join(names)}")


def main(argv=None) -> int:
    parser = build_parser()
    parser.add_argument("-m", "--model", help="reload this one model (every other model is unloaded)")
    args = parser.parse_args(argv)
    return common.run(reload, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
