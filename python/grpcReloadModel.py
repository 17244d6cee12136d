#!/usr/bin/env python3
"""HandleReloadConfigRequest: replace the set of models TF Serving serves.

TF Serving serves exactly the config it is sent: models left out are unloaded. -c FILE sends a
whole config (the text ModelServerConfig the server reads, checked here first); -m NAME sends a
one-model config and warns that every other model will be unloaded.

--fleet sends the config to every replica behind -s (tfsclient/fleet.py) and says what each did: reloaded
and serving it, failed (it kept its config), not served after the reload, or unknown (no answer in time: it
may have taken it). A reload is never retried. When the config does not land everywhere, --rollback OLD
sends OLD to the replicas that took the new one or may have.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    import startup
    startup.quiet_interrupts()

import argparse
import os
import shlex
import sys
import time

import common
from tfsclient import files, fleet, transport
from tfsclient.text import one_line

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
    parser.add_argument("--rollback", metavar="OLD_CONFIG",
                        help="with --fleet: when the new config does not land on every replica, send OLD_CONFIG "
                             "(checked like -c before anything is sent) to those that took the new one or may "
                             "have; the rollback has a -t of its own")
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
    if args.rollback and not args.fleet:
        raise common.InputError("--rollback goes with --fleet (it puts back the replicas that took a config "
                                "others did not); on one server, reload the old config with -c")
    if args.fleet:
        return reload_fleet(args)
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


# --fleet ---------------------------------------------------------------------------------------------------

RELOADED, FAILED, NOT_SERVED, UNKNOWN = "reloaded", "failed", "not_served", "unknown"
TOOK = (RELOADED, NOT_SERVED)  # the replica runs the config sent
SHOWN = {FAILED: "FAILED", NOT_SERVED: "NOT SERVED", UNKNOWN: "UNKNOWN"}
NOTE = {FAILED: "it kept its config", NOT_SERVED: "it took {}", UNKNOWN: "it may have taken {}"}


class ReplicaOutcome(common.ServerError):
    """What a reload did to one replica when it did not end reloaded and serving: state is one of the above."""

    def __init__(self, state, message):
        super().__init__(message)
        self.state = state


def send_config(args, config):
    """Send config to the one server at args.server and check it serves it; ReplicaOutcome says what went wrong."""
    import grpc

    with common.channel(args) as channel:
        stub = common.protos.model_service_pb2_grpc.ModelServiceStub(channel)
        request = common.protos.model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(config)
        timeout = common.time_left(args)  # a ServerError here: nothing was sent
        try:
            response = stub.HandleReloadConfigRequest(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ReplicaOutcome(unsent_or_unknown(e), common.rpc_error_message(e, args)) from None
        if response.status.error_code:
            raise ReplicaOutcome(FAILED, f"reload failed: {response.status.error_message}")
        try:
            check_served(stub, config, args)
        except common.ServerError as e:
            raise ReplicaOutcome(NOT_SERVED, one_line(e)) from None
        except grpc.RpcError as e:
            raise ReplicaOutcome(NOT_SERVED, "the reload answered OK but the status check failed: "
                                             f"{common.rpc_error_message(e, args)}") from None
    return [m.name for m in config.model_config_list.config]


def unsent_or_unknown(error):
    """FAILED when the reload surely did not reach the server (no connection, or it answered an error);
    UNKNOWN when it may have been applied (no answer in time, the connection lost during the call)."""
    import grpc

    code, details = error.code(), (error.details() or "").lower()
    if code == grpc.StatusCode.UNAVAILABLE:
        return FAILED if ("failed to connect" in details or "dns resolution failed" in details) else UNKNOWN
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return UNKNOWN
    return FAILED


def state_of(outcome):
    if outcome.ok:
        return RELOADED
    if isinstance(outcome.exception, ReplicaOutcome):
        return outcome.exception.state
    if isinstance(outcome.exception, (common.InputError, common.ServerError)):
        return FAILED  # before the reload was sent (TLS files, the deadline)
    return UNKNOWN  # a bug of ours: say nothing sure


def fleet_config(args):
    """The one config every replica gets, and the rollback's, both checked before anything is sent."""
    if args.model and args.versions is None and args.latest is None:
        raise common.InputError("with --fleet, -m needs --versions or --latest: the versions a server has now "
                                "may differ from replica to replica, and each would get a different config")
    config = parse_config_file(args.config) if args.config else one_model_config(args, None)
    old = None
    if args.rollback:
        try:
            old = parse_config_file(args.rollback)
        except common.InputError as e:
            raise common.InputError(f"--rollback: {e}") from None
    return config, old


def reload_fleet(args):
    config, old = fleet_config(args)
    replicas = fleet.resolve_within(args.server, args)  # within -t, as fleet.run does
    if args.model:
        print(f"{PROGRAM}: warning: TF Serving will serve only model {args.model} now on every replica; every "
              "other model is unloaded (use -c FILE to keep several)", file=sys.stderr)
    outcomes = fleet.each(replicas, lambda a: send_config(a, config), args)
    states = [state_of(o) for o in outcomes]
    back = [o for o, state in zip(outcomes, states) if state in TOOK + (UNKNOWN,)]
    rollbacks = None
    if old is not None and any(state != RELOADED for state in states) and back:
        rollback_args = argparse.Namespace(**vars(args))
        rollback_args.model = None  # check_served's hints are for -m
        rollback_args.deadline = None if args.deadline is None else time.monotonic() + args.timeout
        rollbacks = fleet.each([o.replica for o in back], lambda a: send_config(a, old), rollback_args)
    if args.format == "json":
        common.dump_json(fleet_document(args, config, outcomes, states, rollbacks))
    else:
        sys.stdout.write(fleet_text(args, config, outcomes, states, rollbacks))
    if any(state != RELOADED for state in states):
        raise common.ServerError(fleet_failure(args, outcomes, states, rollbacks))


def outcome_line(outcome, state, done="reloaded", prefix="", config="the config"):
    if state == RELOADED:
        return f"{done}: serving {', '.join(outcome.value)}"
    return f"{prefix}{SHOWN[state]}: {outcome.error} ({NOTE[state].format(config)})"


def fleet_text(args, config, outcomes, states, rollbacks):
    width = max(len(o.address) for o in outcomes)
    lines = [f"{o.address:<{width}}  {outcome_line(o, state)}" for o, state in zip(outcomes, states)]
    lines.append(f"fleet {args.server}: {summary(outcomes, states)}")
    if rollbacks is not None:
        lines.append(f"rollback to {args.rollback} on the replicas that took the new config or may have:")
        for o in rollbacks:
            shown = outcome_line(o, state_of(o), "rolled back", "rollback ", "the old config")
            lines.append(f"{o.address:<{width}}  {shown}")
        lines.append(f"fleet {args.server}: rollback: {summary(rollbacks, [state_of(o) for o in rollbacks], 'rolled back')}")
    return "\n".join(lines) + "\n"


def summary(outcomes, states, done="reloaded"):
    n = len(outcomes)
    replicas = f"{n} replica{'s' if n != 1 else ''}"
    if all(state == RELOADED for state in states):
        return f"{replicas}, all {done} and serving"
    parts = [f"{states.count(RELOADED)} {done}"]
    for state in (NOT_SERVED, FAILED, UNKNOWN):
        named = [o.address for o, s in zip(outcomes, states) if s == state]
        if named:
            parts.append(f"{len(named)} {state.replace('_', ' ')} ({', '.join(named)})")
    return f"{replicas}: " + ", ".join(parts)


def fleet_document(args, config, outcomes, states, rollbacks):
    rolled = {o.address: o for o in rollbacks or []}
    replicas = {}
    for o, state in zip(outcomes, states):
        entry = {"ok": state == RELOADED, "outcome": state}
        if o.ok:
            entry["reloaded"] = o.value
        else:
            entry["error"] = o.error
        if o.address in rolled:
            r = rolled[o.address]
            entry["rollback"] = {"ok": r.ok, "outcome": "rolled_back" if r.ok else state_of(r)}
            if not r.ok:
                entry["rollback"]["error"] = r.error
        replicas[o.address] = entry
    named = {state: [o.address for o, s in zip(outcomes, states) if s == state]
             for state in (RELOADED, NOT_SERVED, FAILED, UNKNOWN)}
    result = {"target": args.server, "config": [m.name for m in config.model_config_list.config],
              "replicas": replicas, "summary": {"replicas": len(outcomes), **named}}
    if rollbacks is not None:
        result["summary"]["rollback"] = {"config": args.rollback,
                                         "rolled_back": [o.address for o in rollbacks if o.ok],
                                         "failed": [o.address for o in rollbacks if not o.ok]}
    return result


def names(outcomes, limit=5):
    shown = ", ".join(o.address for o in outcomes[:limit])
    return shown + (f" and {len(outcomes) - limit} more" if len(outcomes) > limit else "")


def put_back(args, outcomes, config):
    """The command that sends `config` to these replicas (the TLS flags of this command still to add)."""
    command = f"python3 {PROGRAM} --fleet -s {','.join(o.address for o in outcomes)} -c {shlex.quote(config)}"
    if transport.wants_tls(args):
        hosts = {o.replica.host for o in outcomes if o.replica.host}
        if len(hosts) == 1 and not args.server_name:
            command += f" --server-name {shlex.quote(hosts.pop())}"
        command += " (with this command's TLS flags)"
    return command


def fleet_failure(args, outcomes, states, rollbacks):
    """The exit-1 line: what went wrong where, which replicas run the new config now, and the way back."""
    by = {state: [o for o, s in zip(outcomes, states) if s == state] for state in (NOT_SERVED, FAILED, UNKNOWN)}
    n = len(outcomes)
    parts = []
    for state, what in ((FAILED, "failed"), (NOT_SERVED, "do not serve it after the reload"),
                        (UNKNOWN, "gave no answer in time (so may have taken it)")):
        if by[state]:
            first = by[state][0]
            others = f"{names(by[state])}; " if len(by[state]) > 1 else ""
            parts.append(f"{len(by[state])} of {n} {what} ({others}{first.address}: {one_line(first.error, 200)})")
    message = "the new config did not land on every replica: " + "; ".join(parts)
    took = [o for o, s in zip(outcomes, states) if s in TOOK]
    maybe = by[UNKNOWN]
    if not took and not maybe:
        return message + "; no replica took it, so the fleet is as it was"
    message += f"; it landed on {names(took) if took else 'no replica for sure'}"
    if maybe:
        message += f" (and maybe on {names(maybe)})"
    if rollbacks is None:
        return (message + f"; to put them back, run: {put_back(args, took + maybe, 'OLD_CONFIG')} "
                          "(or give --rollback OLD_CONFIG with the reload)")
    done = [o for o in rollbacks if o.ok]
    left = [o for o in rollbacks if not o.ok]
    if done:
        message += f"; {'all ' if not left else ''}rolled back to {args.rollback}: {names(done)}"
    if left:
        message += (f"; the rollback did not land on {names(left)} ({left[0].address}: {one_line(left[0].error, 200)}): "
                    f"run {put_back(args, left, args.rollback)}")
    return message


def main(argv=None) -> int:
    parser = build_parser()
    parser.add_argument("-m", "--model", help="reload this one model (every other model is unloaded)")
    args = parser.parse_args(argv)
    return common.run(reload, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
