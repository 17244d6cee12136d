#!/usr/bin/env python3
"""GetModelMetadata: a model's signatures, readable by default, as the guide prints with --raw."""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    import startup
    startup.quiet_interrupts()

import sys

import common

PROGRAM = "grpcMetadata.py"


def build_parser():
    parser = common.parser("Ask TF Serving for a model's signatures (GetModelMetadata).",
                           "python3 grpcMetadata.py -m Toy --summary")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--raw", action="store_true",
                       help="print the response as it comes, the SignatureDefMap packed in bytes (as the guide shows)")
    shape.add_argument("--summary", action="store_true",
                       help="a compact table per signature: alias, dtype, shape, tensor name")
    return parser


def metadata(args):
    request = common.protos.get_model_metadata_pb2.GetModelMetadataRequest()
    common.set_model_spec(request.model_spec, args)
    request.metadata_field.append("signature_def")
    with common.channel(args) as channel:
        stub = common.protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.GetModelMetadata(request, timeout=common.time_left(args))
    if args.summary:
        signatures = common.protos.get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        sys.stdout.write(summary(response, signatures))
    else:  # text format shows the Any unpacked, as [type_url] { ... }, unless --raw
        common.show(response, args, expand_any=not args.raw)


def summary(response, signatures):
    types = common.protos.types_pb2.DataType
    out = [f"model {response.model_spec.name} version {response.model_spec.version.value}"]
    for name in sorted(signatures.signature_def, key=lambda k: (k.startswith("__"), k)):
        signature = signatures.signature_def[name]
        out.append(f"\nsignature {name!r} ({signature.method_name or 'no method'}):")
        rows = []
        for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            for alias in sorted(tensors):
                info = tensors[alias]
                rows.append((kind, alias, types.Name(info.dtype).replace("DT_", "").lower(),
                             _shape(info.tensor_shape), info.name))
        if not rows:
            out.append("  (no inputs or outputs)")
            continue
        widths = [max(len(str(r[i])) for r in rows + [("", "alias", "dtype", "shape", "tensor")]) for i in range(5)]
        header = ("", "alias", "dtype", "shape", "tensor")
        for row in [header] + rows:
            out.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(out) + "\n"


def _shape(shape):
    if shape.unknown_rank:
        return "unknown"
    return "(" + ", ".join("-1" if d.size < 0 else str(d.size) for d in shape.dim) + ("," if len(shape.dim) == 1 else "") + ")"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(metadata, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
