"""Sending a config to TF Serving (HandleReloadConfigRequest): to one server (reload_one), checked served after; to a
fleet, with each replica's outcome, the rollback and the report.

TF Serving accepts a config that asks for versions not on disk and unloads what it served: an OK answer is
not enough, so check_served asks the status of every model after it.
"""

import argparse
import shlex
import sys
import time

import grpc

from . import cli, fleet, output, protos, transport
from .client import Client
from .errors import InputError, ServerError
from .text import enum_name, one_line


class StatusCheckFailed(ServerError):
    """The reload answered OK (the server took the config), but the status check after it failed: no answer, an
    error other than NOT_FOUND, or no time left."""


def reload_one(client, config, args):
    """Send config to the one server of client and check it serves it: ServerError (exit 1) otherwise.

    Never retried. A reload cut short (no answer within -t, the connection lost during the call) may have been
    applied or not: its error says so, as --fleet's UNKNOWN does, and how to look.
    """
    try:
        send(client, config, args)
    except grpc.RpcError as e:
        if unsent_or_unknown(e) != UNKNOWN:
            raise  # it kept its config: the usual line
        raise ServerError(f"{transport.rpc_error_message(e, args)} (it may have taken the config; to check, run: "
                          f"{status_command(args, config)})") from None
    try:
        check_served(client, config, args)
    except StatusCheckFailed as e:
        raise ServerError(f"{e} (it took the config; to check, run: {status_command(args, config)})") from None


class ReloadRefused(ServerError):
    """The reload answered OK with an error in its status (it kept its config): reload_failure's line."""


def send(client, config, args):
    """HandleReloadConfigRequest with config, within what is left of -t (ServerError, nothing sent, when none is).
    The call's grpc.RpcError as it comes; ReloadRefused when the server answers OK with the error in the body."""
    request = protos.model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(config)
    response = client.HandleReloadConfigRequest(request, timeout=cli.time_left(args))
    if response.status.error_code:
        raise ReloadRefused(reload_failure(response.status))


def reload_failure(status):
    """A reload answered OK with an error in its StatusProto: "reload failed: CODE: message", the code named as
    tensorflow.error.Code names it (a number this client does not know as "unknown error code N")."""
    code = enum_name(status.DESCRIPTOR.fields_by_name["error_code"].enum_type, status.error_code, "error code")
    message = transport.server_message(status.error_message)
    return f"reload failed: {code}: {message}" if message else f"reload failed: {code} (no message)"


def status_command(args, config, limit=5):
    """The command that shows what the server at args.server serves of config's models."""
    names = [m.name for m in config.model_config_list.config]
    command = f"python3 grpcModelStatus.py -s {shlex.quote(args.server)}"
    tls = " (with this command's TLS flags)" if transport.wants_tls(args) else ""
    if len(names) == 1:
        return f"{command} -m {shlex.quote(names[0])}{tls}"
    if not names:
        return f"{command} -m NAME for a model it served before{tls}"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{command} -m NAME for each of {', '.join(names[:limit])}{more}{tls}"


def warn_if_empty(config, args, program, who="TF Serving"):
    """A config that lists no model: TF Serving takes it and unloads every model (server_core.cc's ReloadConfig
    takes no action only for a config with no model_config_list at all: "Taking no action for empty config")."""
    if not config.model_config_list.config:
        print(f"{program}: warning: {args.config} lists no model: {who} will unload every model and serve none "
              "(list the models to serve in its model_config_list)", file=sys.stderr)


def check_served(client, config, args):
    """After a reload that answered OK: every model in the config serves a version (or is loading one).

    TF Serving accepts a config that asks for versions not on disk and unloads the versions it served: the
    model is then gone. That is an error here (exit 1) that says what the status shows. StatusCheckFailed when
    the status cannot be had (no answer, an error other than NOT_FOUND, no time left).
    """
    states = protos.get_model_status_pb2.ModelVersionStatus.State
    for model in config.model_config_list.config:
        request = protos.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model.name
        try:
            versions = client.GetModelStatus(request, timeout=cli.time_left(args)).model_version_status
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise StatusCheckFailed("the reload answered OK but the status check failed: "
                                        f"{transport.rpc_error_message(e, args)}") from None
            versions = []
        except ServerError as e:  # time_left: -t is over
            raise StatusCheckFailed(f"the reload answered OK but the status check failed: {e}") from None
        asked = list(model.model_version_policy.specific.versions)
        # Only a version the config asks for counts: one it drops may still be AVAILABLE for a moment, as TF Serving
        # answers the reload before its unloads end. A state this client does not know counts as not serving.
        if any(v.state in (states.AVAILABLE, states.START, states.LOADING) and (not asked or v.version in asked)
               for v in versions):
            continue
        known = sorted({v.version for v in versions})
        missing = [v for v in asked if v not in known]
        what = f"version {', '.join(map(str, missing))} is not on disk" if missing else "no version loaded"
        errors = "; ".join(f"version {v.version}: {' '.join(v.status.error_message.split())[:200]}"
                           for v in versions if v.status.error_message)
        shown = ", ".join(f"{v.version} {enum_name(states, v.state, 'state')}"
                          for v in sorted(versions, key=lambda v: v.version))
        hint = f" (reload with one that is, e.g. --versions {known[-1]})" if missing and known and args.model else ""
        raise ServerError(f"model {model.name} is not served after the reload: {what}{hint}; "
                                 f"the status shows {'versions ' + shown if shown else 'no version'}"
                                 f"{'; ' + errors if errors else ''}")



# --fleet ---------------------------------------------------------------------------------------------------

RELOADED, FAILED, NOT_SERVED, UNKNOWN = "reloaded", "failed", "not_served", "unknown"
TOOK = (RELOADED, NOT_SERVED)  # the replica runs the config sent
SHOWN = {FAILED: "FAILED", NOT_SERVED: "NOT SERVED", UNKNOWN: "UNKNOWN"}
NOTE = {FAILED: "it kept its config", NOT_SERVED: "it took {}", UNKNOWN: "it may have taken {}"}


class ReplicaOutcome(ServerError):
    """What a reload did to one replica when it did not end reloaded and serving: state is one of the above."""

    def __init__(self, state, message):
        super().__init__(message)
        self.state = state


def send_config(args, config):
    """Send config to the one server at args.server and check it serves it; ReplicaOutcome says what went wrong."""
    with Client.from_args(args) as client:
        try:
            send(client, config, args)
        except grpc.RpcError as e:
            raise ReplicaOutcome(unsent_or_unknown(e), transport.rpc_error_message(e, args)) from None
        except ReloadRefused as e:
            raise ReplicaOutcome(FAILED, str(e)) from None
        try:
            check_served(client, config, args)
        except ServerError as e:  # StatusCheckFailed too: it took the config either way
            raise ReplicaOutcome(NOT_SERVED, one_line(e)) from None
    return [m.name for m in config.model_config_list.config]


def unsent_or_unknown(error):
    """FAILED when the reload surely did not reach the server (no connection, or it answered an error);
    UNKNOWN when it may have been applied (no answer in time, the connection lost during the call)."""
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
    if isinstance(outcome.exception, (InputError, ServerError)):
        return FAILED  # before the reload was sent (TLS files, the deadline)
    return UNKNOWN  # a bug of ours: say nothing sure


def reload_fleet(args, config, old, program):
    """--fleet: config to every replica, each outcome reported; old (a config, or None) to those that took it
    or may have, when it did not land everywhere. ServerError (exit 1) unless every replica serves config."""
    replicas = fleet.resolve_within(args.server, args)  # within -t, as fleet.run does
    if args.model:
        print(f"{program}: warning: TF Serving will serve only model {args.model} now on every replica; every "
              "other model is unloaded (use -c FILE to keep several)", file=sys.stderr)
    warn_if_empty(config, args, program, "every replica")
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
        output.dump_json(fleet_document(args, config, outcomes, states, rollbacks))
    else:
        sys.stdout.write(fleet_text(args, config, outcomes, states, rollbacks))
    if any(state != RELOADED for state in states):
        raise ServerError(fleet_failure(args, outcomes, states, rollbacks, program))


def outcome_line(outcome, state, done="reloaded", prefix="", config="the config"):
    if state == RELOADED:
        return f"{done}: serving {', '.join(outcome.value) or 'no model'}"
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
        lines.append(f"fleet {args.server}: rollback: "
                     f"{summary(rollbacks, [state_of(o) for o in rollbacks], 'rolled back')}")
    return "\n".join(lines) + "\n"


def summary(outcomes, states, done="reloaded"):
    return fleet.summary(len(outcomes), f"all {done} and serving", f"{states.count(RELOADED)} {done}",
                         [(state.replace("_", " "), [o.address for o, s in zip(outcomes, states) if s == state])
                          for state in (NOT_SERVED, FAILED, UNKNOWN)])


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


def put_back(args, outcomes, config, program):
    """The command that sends `config` to these replicas (the TLS flags of this command still to add)."""
    command = f"python3 {program} --fleet -s {','.join(o.address for o in outcomes)} -c {shlex.quote(config)}"
    if transport.wants_tls(args):
        hosts = {o.replica.host for o in outcomes if o.replica.host}
        if len(hosts) == 1 and not args.server_name:
            command += f" --server-name {shlex.quote(hosts.pop())}"
        command += " (with this command's TLS flags)"
    return command


def fleet_failure(args, outcomes, states, rollbacks, program):
    """The exit-1 line: what went wrong where, which replicas run the new config now, and the way back."""
    by = {state: [o for o, s in zip(outcomes, states) if s == state] for state in (NOT_SERVED, FAILED, UNKNOWN)}
    n = len(outcomes)
    parts = []
    for state, what in ((FAILED, "failed"), (NOT_SERVED, "do not serve it after the reload"),
                        (UNKNOWN, "gave no answer in time (so may have taken it)")):
        if by[state]:
            first = by[state][0]
            others = f"{fleet.addresses(by[state])}; " if len(by[state]) > 1 else ""
            parts.append(f"{len(by[state])} of {n} {what} ({others}{first.address}: {one_line(first.error, 200)})")
    message = "the new config did not land on every replica: " + "; ".join(parts)
    took = [o for o, s in zip(outcomes, states) if s in TOOK]
    maybe = by[UNKNOWN]
    if not took and not maybe:
        return message + "; no replica took it, so the fleet is as it was"
    message += f"; it landed on {fleet.addresses(took) if took else 'no replica for sure'}"
    if maybe:
        message += f" (and maybe on {fleet.addresses(maybe)})"
    if rollbacks is None:
        return (message + f"; to put them back, run: {put_back(args, took + maybe, 'OLD_CONFIG', program)} "
                          "(or give --rollback OLD_CONFIG with the reload)")
    done = [o for o in rollbacks if o.ok]
    left = [o for o in rollbacks if not o.ok]
    if done:
        message += f"; {'all ' if not left else ''}rolled back to {args.rollback}: {fleet.addresses(done)}"
    if left:
        message += (f"; the rollback did not land on {fleet.addresses(left)} "
                    f"({left[0].address}: {one_line(left[0].error, 200)}): "
                    f"run {put_back(args, left, args.rollback, program)}")
    return message
