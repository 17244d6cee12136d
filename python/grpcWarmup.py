#!/usr/bin/env python3
"""Build a SavedModel warmup file (assets.extra/tf_serving_warmup_requests) from many inputs at once.

From a file of inputs (Predict), from tf.Examples (Classify, Regress, MultiInference), or from a
server's request log sampled down to N records. Records are added after those already in the file, and
the file is replaced whole (a temporary file in the same folder, renamed over it): a failure leaves it as
it was. TF Serving reads at most 1000. No server is needed.
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import io
import os
import random
import sys

from tfsclient import codec, common, files, predict_inputs, tasks, tf_examples, tfrecord

import grpc  # after tfsclient.common, which quiets gRPC's C core before its first import

PROGRAM = "grpcWarmup.py"
MAX_RECORDS = 1000  # TF Serving refuses to load a version whose warmup file holds more


def build_parser():
    parser = common.parser(
        "Append warmup records (PredictionLog TFRecords) for TF Serving's --enable_model_warmup.",
        "python3 grpcWarmup.py -o ../models/save/Toy/2/assets.extra/tf_serving_warmup_requests "
        "--inputs rows.npz --batch 2", signature=True)
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the warmup file to add the records to (created if missing)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", metavar="FILE", help="Predict inputs: .npz, or .json (an object of names to "
                        "arrays; a .npy has no names); rows along the first axis become requests of --batch rows")
    source.add_argument("--task", action="append", metavar="KIND[:SIGNATURE]",
                        help="classify or regress requests from --example/--examples (repeat: MultiInference)")
    source.add_argument("--from-log", action="append", metavar="LOG",
                        help="requests from PredictionLog files (a server's request log, another warmup file)")
    parser.add_argument("--batch", type=int, default=1, help="rows or examples per request (default: 1)")
    parser.add_argument("--sample", type=int, metavar="N", help="keep N records, chosen at random (with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for --sample (default: 0)")
    tf_examples.add_arguments(parser)
    return parser


def predict_records(args):
    if args.inputs.endswith(".npy"):
        raise common.InputError(f"--inputs {args.inputs}: a .npy file holds one array without its input's name: "
                                "save the inputs by name with numpy.savez(FILE.npz, NAME=array), or as .json")
    loaded = predict_inputs.parse_inputs([f"@{args.inputs}"], args.max_file_size)
    if any(from_json for _, from_json in loaded.values()):
        arrays = typed_by_signature(args, loaded)
    else:  # .npz: the arrays' own dtypes, as grpcRequest.py sends them
        arrays = {name: array for name, (array, _) in loaded.items()}
    sizes = {len(a) if getattr(a, "ndim", 0) else None for a in arrays.values()}
    if len(sizes) != 1 or None in sizes:
        raise common.InputError(f"{args.inputs}: every input needs the same number of rows (first axis) to be split")
    rows = sizes.pop()
    for start in range(0, rows, args.batch):
        entry = common.protos.prediction_log_pb2.PredictionLog()
        request = entry.predict_log.request
        common.set_model_spec(request.model_spec, args, args.signature)
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(codec.make_tensor_proto(array[start:start + args.batch]))
        yield entry


def typed_by_signature(args, loaded):
    """JSON values typed as the model's signature wants them, as grpcRequest.py sends the same JSON: the signature
    is asked of the server. Before, [[1, 2]] went into the file as int32 for a float32 input, and TF Serving then
    refused to load the model (its warmup failed)."""
    try:
        with common.client(args) as client:
            signature = predict_inputs.signature_of(client, args)
    except grpc.RpcError as e:
        raise common.ServerError(
            f"--inputs {args.inputs}: JSON values are typed by the model's signature, which the server did not give "
            f"({common.rpc_error_message(e, args)}); start a server with the model (-s), or save the inputs with "
            "their dtypes in a .npz") from None
    if signature is None:
        raise common.InputError(f"model {args.model} has no signature {args.signature!r}")
    return predict_inputs.check_against_signature(loaded, {}, signature, args.model)


def example_records(args):
    specs = tasks.parse_tasks(args.task)
    holder = common.protos.input_pb2.Input()
    tf_examples.build_input(args, holder)
    kind = holder.WhichOneof("kind")
    all_examples = list(getattr(holder, kind).examples)
    for start in range(0, len(all_examples), args.batch):
        entry = common.protos.prediction_log_pb2.PredictionLog()
        if len(specs) == 1:
            name, signature = specs[0]
            body = entry.classify_log if name == "classify" else entry.regress_log
            request = body.request
            common.set_model_spec(request.model_spec, args, signature)
        else:
            request = entry.multi_inference_log.request
            for name, signature in specs:
                task = request.tasks.add(method_name=tasks.METHODS[name])
                common.set_model_spec(task.model_spec, args, signature)
        target = getattr(request.input, kind)
        if kind == "example_list_with_context":
            target.context.CopyFrom(holder.example_list_with_context.context)
        target.examples.extend(all_examples[start:start + args.batch])
        yield entry


def log_records(args):
    for path in args.from_log:
        for offset, data in tfrecord.read_file(path, None, args.max_file_size):
            source = common.protos.prediction_log_pb2.PredictionLog()
            try:
                source.ParseFromString(data)
            except Exception:
                raise common.InputError(f"{path}: the record at offset {offset} is not a PredictionLog") from None
            kind = source.WhichOneof("log_type")
            if kind is None:  # an empty record, or another message that parsed as unknown fields
                raise common.InputError(f"{path}: the record at offset {offset} is not a PredictionLog (it holds "
                                        "none of its logs)")
            if kind not in ("predict_log", "classify_log", "regress_log", "multi_inference_log"):
                continue
            entry = common.protos.prediction_log_pb2.PredictionLog()
            getattr(entry, kind).request.CopyFrom(getattr(source, kind).request)  # warmup replays requests only
            yield entry


def check_output(path):
    """-o names a file (new or not), not a folder."""
    if os.path.isdir(path):
        raise common.InputError(f"-o {path} is a directory: give the warmup file in it, e.g. "
                                f"-o {os.path.join(path, 'tf_serving_warmup_requests')}")


def existing_records(path, max_size):
    """The bytes of the warmup file already at path (b"" if none) and how many records they hold."""
    if not os.path.lexists(path):
        return b"", 0
    data = files.read_input(path, "-o", "tfrecord", max_size)
    try:
        return data, sum(1 for _ in tfrecord.read(io.BytesIO(data)))
    except tfrecord.CorruptRecord as e:
        raise common.InputError(f"{path} already exists and is damaged: {e}") from None


def build(args):
    if args.fleet:
        raise common.InputError("--fleet asks every replica, but grpcWarmup.py writes a file and sends nothing")
    check_output(args.output)
    if args.batch < 1:
        raise common.InputError("--batch must be >= 1")
    if args.task is None and (args.example or args.examples or args.context):
        raise common.InputError("--example, --examples and --context go with --task")
    if args.inputs:
        records = list(predict_records(args))
    elif args.task:
        records = list(example_records(args))
    else:
        records = list(log_records(args))
    if args.sample is not None:
        if args.sample < 1:
            raise common.InputError("--sample must be >= 1")
        if args.sample < len(records):
            picked = sorted(random.Random(args.seed).sample(range(len(records)), args.sample))
            records = [records[i] for i in picked]
    if not records:
        raise common.InputError("no records to write")
    existing, before = existing_records(args.output, args.max_file_size)
    if before + len(records) > MAX_RECORDS:
        raise common.InputError(f"{args.output} would hold {before + len(records)} records; TF Serving loads at most "
                                f"{MAX_RECORDS} (use --sample or a larger --batch)")
    try:
        tfrecord.replace(args.output, existing + b"".join(tfrecord.frame(r.SerializeToString()) for r in records))
    except OSError as e:
        raise common.OutputError(f"cannot write {args.output}: {e.strerror or e} (the file is unchanged)") from None
    print(f"appended {len(records)} warmup records to {args.output} ({before + len(records)} in all)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(build, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
