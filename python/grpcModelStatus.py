#!/usr/bin/env python3
"""GetModelStatus: the state of a model's versions; --wait polls until they are AVAILABLE."""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import sys
import time

from tfsclient import argtypes, common, fleet
from tfsclient.text import enum_name

import grpc

PROGRAM = "grpcModelStatus.py"


def build_parser():
    parser = common.parser("Ask TF Serving for the state of a model's versions (GetModelStatus).",
                           "python3 grpcModelStatus.py -m Toy_double -v 1 --wait 60")
    parser.add_argument("--wait", type=argtypes.seconds("the wait", allow_minimum=True), metavar="SECONDS",
                        help="poll until the version (or, without -v, every version listed) is AVAILABLE; "
                             "exit 1 with the last state seen if that takes longer than SECONDS (-t then bounds "
                             "each poll)")
    parser.add_argument("--health", nargs="?", const="", metavar="SERVICE",
                        help="ask the gRPC health service instead (grpc.health.v1; TF Serving's "
                             "--enable_grpc_healthcheck_service): the whole server by default, or SERVICE such "
                             "as PredictionService; prints SERVING and exits 0, else prints the status, exits 1")
    return parser


def health_status(args):
    """The health service's answer for args.health, by name (SERVING, NOT_SERVING, ...)."""
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ModuleNotFoundError:  # requirements.txt has it; the guide's own setup line does not
        raise common.InputError("--health needs grpcio-health-checking, which is not installed "
                                "(pip install grpcio-health-checking)") from None

    with common.client(args) as client:
        stub = health_pb2_grpc.HealthStub(client.channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=args.health), timeout=common.time_left(args))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise common.ServerError(f"the server at {args.server} has no health service (TF Serving starts "
                                         "it with --enable_grpc_healthcheck_service)") from None
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise common.ServerError(f"the health service at {args.server} knows no service "
                                         f"{args.health!r} (try PredictionService or ModelService)") from None
            raise
    return enum_name(health_pb2.HealthCheckResponse.ServingStatus, response.status, "status")


def health(args):
    state = health_status(args)
    if args.format == "json":
        common.dump_json({"service": args.health, "status": state})
    else:
        print(state)
    return state == "SERVING"


class HealthView(fleet.View):
    """--health --fleet: every replica must answer SERVING."""

    def call(self, args):
        state = health_status(args)
        if state != "SERVING":
            raise common.ServerError(f"the health service says {state}")
        return state


def status(args):
    """One server's GetModelStatusResponse; with --wait, once every version asked for is AVAILABLE."""
    request = common.protos.get_model_status_pb2.GetModelStatusRequest()
    common.set_model_spec(request.model_spec, args)
    with common.client(args) as client:
        if args.wait is None:
            return client.GetModelStatus(request, timeout=common.time_left(args))
        return wait_until_available(client, request, args)


class StatusView(fleet.View):
    """--fleet: the versions' states on each replica (with --wait: a rollout check); they must agree."""

    call = staticmethod(status)

    def text(self, response):
        return versions_text(response.model_version_status) or "no version"

    def data(self, response):
        return common.to_data(response)

    def differences(self, reference, response):
        states = common.protos.get_model_status_pb2.ModelVersionStatus.State
        ours = {v.version: v for v in response.model_version_status}
        theirs = {v.version: v for v in reference.model_version_status}
        said = [f"no version {n}" for n in sorted(theirs.keys() - ours.keys())]
        said += [f"version {n} too" for n in sorted(ours.keys() - theirs.keys())]
        for n in sorted(ours.keys() & theirs.keys()):
            a, b = ours[n], theirs[n]
            if (a.state, a.status.error_code) != (b.state, b.status.error_code):
                said.append(f"version {n} {enum_name(states, a.state, 'state')}, "
                            f"not {enum_name(states, b.state, 'state')}")
        return ", ".join(said) or None


def versions_text(versions):
    states = common.protos.get_model_status_pb2.ModelVersionStatus.State
    return ", ".join(f"version {v.version} {enum_name(states, v.state, 'state')}"
                     + (f" ({v.status.error_message})" if v.status.error_message else "") for v in versions)


def model_status(args):
    if args.health is not None:
        if args.fleet:
            return fleet.run(args, HealthView())
        return None if health(args) else common.ExitStatus.RPC_ERROR  # the status is printed: no error line
    if args.version_label:
        raise common.InputError("GetModelStatus takes a version number, not a label (TF Serving ignores "
                                "labels here): use -v")
    if args.fleet:
        return fleet.run(args, StatusView())
    common.show(status(args), args)


def wait_until_available(client, request, args):
    states = common.protos.get_model_status_pb2.ModelVersionStatus.State
    started = time.monotonic()
    deadline = started + args.wait
    last = "no answer"
    while True:
        try:
            # -t bounds each poll, and so does the wait: a poll begun just before the end of --wait 3 could run
            # on to 4.7 s (the message said "after 3s")
            left = max(deadline - time.monotonic(), 0.1)
            response = client.GetModelStatus(request, timeout=min(args.timeout, left))
            versions = response.model_version_status
            live = [v for v in versions if v.state != states.END] or list(versions)
            if live and all(v.state == states.AVAILABLE for v in live):
                return response
            last = versions_text(versions)
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND,
                                grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED or left >= args.timeout:
                last = common.rpc_error_message(e, args)  # (a poll cut short by the wait keeps what was seen)
        if time.monotonic() >= deadline:
            took = time.monotonic() - started  # the time it really took, when it rounds to more than --wait
            said = f"{args.wait:g}s" if round(took, 1) <= args.wait else f"{took:.1f}s (--wait {args.wait:g})"
            raise common.ServerError(f"model {args.model} not AVAILABLE after {said}; last seen: {last}")
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(model_status, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
