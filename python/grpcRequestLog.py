#!/usr/bin/env python3
"""Predict with the request shown as a PredictionLog, and PredictionLog files (warmup records, request logs).

--log-file appends request and response as a TFRecord PredictionLog: the format of a SavedModel's
assets.extra/tf_serving_warmup_requests. --read prints the records of such a file.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import errno
import sys

from tfsclient import common, compare, files, fleet, predict_inputs, tfrecord

PROGRAM = "grpcRequestLog.py"
WIDTH = 100


def banner(title):
    return f"{title.center(WIDTH, '*')}\n"


def build_parser():
    parser = common.parser(
        "Send a Predict request, print it as a PredictionLog and print the response; or read PredictionLog files.",
        "python3 grpcRequestLog.py -m Toy --log-file warmup/tf_serving_warmup_requests", signature=True)
    predict_inputs.add_arguments(parser)
    parser.add_argument("--log-file", metavar="FILE",
                        help="append the PredictionLog (request and response) to FILE as a TFRecord record; "
                             "with --fleet, one record per replica that answered, in the replicas' order")
    parser.add_argument("--read", metavar="FILE",
                        help="print the PredictionLog records of FILE (warmup file or request log) and exit")
    compare.add_arguments(parser)
    return parser


def request_log(args):
    if args.read:
        if args.fleet:
            raise common.InputError("--read prints a file and sends nothing: it does not go with --fleet")
        compare.atol(args)  # --atol without --fleet: refused
        return read_log(args)
    tolerance = compare.atol(args)
    if args.log_file:
        files.check_output_file(args.log_file, "--log-file")  # before the Predict is sent
        try:  # (and again under the append's lock)
            tfrecord.check_whole(args.log_file)
        except tfrecord.CorruptRecord as e:
            raise common.InputError(damaged(args.log_file, e)) from None
    if args.fleet:
        return fleet_logs(args, tolerance)
    log = predict_log(args)
    if args.log_file:
        append(args.log_file, [log])
    response = log.predict_log.response
    if args.format == "json":
        common.dump_json({"request": common.to_data(log.predict_log.request), "response": common.to_data(response)})
        return
    request_only = common.protos.prediction_log_pb2.PredictionLog()
    request_only.predict_log.request.CopyFrom(log.predict_log.request)
    sys.stdout.write(banner("request logs") + common.to_text(request_only) + banner("end")
                     + banner("outputs") + common.to_text(response) + banner("end"))


def predict_log(args):
    """The guide's request (or -i's) sent to args.server: request and response as one PredictionLog."""
    log = common.protos.prediction_log_pb2.PredictionLog()
    with common.client(args) as client:
        default_filter = ("output_1",) if not args.input else ()  # the guide's request
        log.predict_log.request.CopyFrom(predict_inputs.predict_request(args, client, default_filter))
        response = client.Predict(log.predict_log.request, timeout=common.time_left(args))
    log.predict_log.response.CopyFrom(response)
    return log


def damaged(path, error):
    return (f"--log-file: {path} is not whole PredictionLog records ({error}): a record appended after it could "
            "never be read back; give a new file (or cut it back to its last whole record)")


def append(path, logs):
    """The logs appended to path as whole records: a path that cannot be opened is bad input (exit 2); a write
    that fails (a full disk) leaves the file as it was (exit 1)."""
    try:
        tfrecord.append(path, [log.SerializeToString() for log in logs])
    except tfrecord.CorruptRecord as e:
        raise common.InputError(damaged(path, e)) from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO):
            raise common.OutputError(f"cannot append to {path}: {e.strerror} (the file is unchanged)") from None
        raise common.InputError(f"cannot append to {path}: {e.strerror}") from None


class LogView(compare.OutputsView):
    """--fleet: the PredictionLog of each replica (its own request, checked against its signature); the
    responses' outputs must agree within --atol."""

    def call(self, args):
        log = predict_log(args)
        response = log.predict_log.response
        return compare.Answer(log, compare.tensors(response.outputs), response.model_spec.version.value)

    def data(self, answer):
        return {"request": common.to_data(answer.message.predict_log.request),
                "response": common.to_data(answer.message.predict_log.response)}


def fleet_logs(args, tolerance):
    """Each replica's PredictionLog; with --log-file, those that answered appended in the replicas' order
    (before the report, so that a log that cannot be written is the error)."""
    view = LogView(tolerance)
    outcomes = fleet.each(fleet.resolve_within(args.server, args), view.call, args)
    answered = [o.value.message for o in outcomes if o.ok]
    if args.log_file and answered:
        append(args.log_file, answered)
    return fleet.report(args, outcomes, view, args.server)


def read_log(args):
    parse = common.protos.prediction_log_pb2.PredictionLog.FromString
    records = 0
    for offset, data in tfrecord.read_file(args.read, None, args.max_file_size):
        try:
            log = parse(data)  # a new message each time: one parsed again keeps every record's memory (upb's arena)
        except Exception:
            raise common.InputError(f"{args.read}: the record at offset {offset} is not a PredictionLog") from None
        if log.WhichOneof("log_type") is None:  # an empty record, or another message that parsed as unknown fields
            raise common.InputError(f"{args.read}: the record at offset {offset} is not a PredictionLog (it holds "
                                    "none of its logs: predict, classify, regress, multi_inference, session_run)")
        records += 1
        if args.format == "json":
            common.dump_json(common.to_data(log))
        else:
            sys.stdout.write(banner(f"record at offset {offset}"))
            common.write_text(log, sys.stdout)  # as it is made: a 33 MB record peaked at 15x its size
    if not records:  # (it printed nothing and exit 0, as if the log were fine)
        raise common.InputError(f"{args.read} is empty: it holds no PredictionLog records")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(request_log, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
