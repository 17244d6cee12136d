#!/usr/bin/env python3
"""GetModelMetadata: a model's signatures, readable by default, as the guide prints with --raw."""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import sys

from tfsclient import common, fleet
from tfsclient.text import enum_name, one_line

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
    if args.fleet:
        if args.raw:
            raise common.InputError("--raw prints one server's response as it comes; with --fleet, each replica's "
                                    "is in --format json")
        return fleet.run(args, MetadataView(args.summary))
    response = fetch(args)
    if args.summary:
        sys.stdout.write(summary(response, signature_map(response, strict=True)))
    else:  # text format shows the Any unpacked, as [type_url] { ... }, unless --raw
        common.show(response, args, expand_any=not args.raw)


def fetch(args):
    request = common.protos.get_model_metadata_pb2.GetModelMetadataRequest()
    common.set_model_spec(request.model_spec, args)
    request.metadata_field.append("signature_def")
    with common.client(args) as client:
        return client.GetModelMetadata(request, timeout=common.time_left(args))


def signature_map(response, strict=False):
    """The response's SignatureDefMap; strict: a ServerError when it holds none (else an empty map). One that does
    not parse is a ServerError either way."""
    signatures = common.protos.get_model_metadata_pb2.SignatureDefMap()
    packed = response.metadata.get("signature_def")
    try:
        unpacked = packed is not None and packed.Unpack(signatures)
    except Exception as e:  # protobuf's DecodeError: bytes that are not a SignatureDefMap
        raise common.ServerError("the metadata's signature_def does not parse as a SignatureDefMap "
                                 f"({one_line(e, 200, fold=True)})") from None
    if not unpacked and strict:
        held = f"a {packed.type_url}" if packed is not None and packed.type_url else "no signature_def"
        raise common.ServerError(f"the metadata holds {held}, not a SignatureDefMap")
    return signatures


class MetadataView(fleet.View):
    """--fleet: each replica's version and signatures (with --summary, its table); a replica with another
    version, or whose signatures differ (a missing signature, input or output; another method, dtype or shape;
    tensor names are not compared), is flagged with what differs."""

    def __init__(self, table=False):
        self.table = table

    def call(self, args):
        response = fetch(args)
        return response, signature_map(response, strict=True)

    def text(self, answer):
        response, signatures = answer
        if self.table:
            return summary(response, signatures)
        names = sorted(name for name in signatures.signature_def if not name.startswith("__"))
        return f"version {response.model_spec.version.value}: " + (", ".join(names) or "no signatures")

    def data(self, answer):
        return common.to_data(answer[0])

    def differences(self, reference, answer):
        return "\n".join(differences(reference, answer)) or None


def differences(reference, answer):
    """Lines saying how answer's (response, SignatureDefMap) differs from reference's."""
    (ref_response, ref_map), (response, signatures) = reference, answer
    lines = []
    version, ref_version = response.model_spec.version.value, ref_response.model_spec.version.value
    if version != ref_version:
        lines.append(f"version {version}, not {ref_version}")
    ours, theirs = signatures.signature_def, ref_map.signature_def
    lines += [f"no signature {name!r}" for name in sorted(set(theirs) - set(ours))]
    lines += [f"signature {name!r} too" for name in sorted(set(ours) - set(theirs))]
    for name in sorted(set(ours) & set(theirs)):
        a, b = ours[name], theirs[name]
        said = []
        if a.method_name != b.method_name:
            said.append(f"method {a.method_name or 'none'}, not {b.method_name or 'none'}")
        for kind, mine, others in (("input", a.inputs, b.inputs), ("output", a.outputs, b.outputs)):
            said += [f"no {kind} {alias!r}" for alias in sorted(set(others) - set(mine))]
            said += [f"{kind} {alias!r} too" for alias in sorted(set(mine) - set(others))]
            for alias in sorted(set(mine) & set(others)):
                if _tensor(mine[alias]) != _tensor(others[alias]):
                    said.append(f"{kind} {alias!r} {' '.join(_tensor(mine[alias]))}, not "
                                f"{' '.join(_tensor(others[alias]))}")
        lines += [f"signature {name!r}: {line}" for line in said]
    return lines


def _tensor(info):
    """A TensorInfo as the summary shows it: (dtype, shape)."""
    return _dtype(info.dtype), _shape(info.tensor_shape)


def summary(response, signatures):
    out = [f"model {response.model_spec.name} version {response.model_spec.version.value}"]
    for name in sorted(signatures.signature_def, key=lambda k: (k.startswith("__"), k)):
        signature = signatures.signature_def[name]
        out.append(f"\nsignature {name!r} ({signature.method_name or 'no method'}):")
        rows = []
        for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            for alias in sorted(tensors):
                info = tensors[alias]
                rows.append((kind, alias, _dtype(info.dtype),
                             _shape(info.tensor_shape), info.name))
        if not rows:
            out.append("  (no inputs or outputs)")
            continue
        widths = [max(len(str(r[i])) for r in rows + [("", "alias", "dtype", "shape", "tensor")]) for i in range(5)]
        header = ("", "alias", "dtype", "shape", "tensor")
        for row in [header] + rows:
            out.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(out) + "\n"


def _dtype(dtype):
    """float32 for DT_FLOAT; "unknown dtype 999" for a number this client does not know."""
    name = enum_name(common.protos.types_pb2.DataType, dtype, "dtype")
    return name.replace("DT_", "").lower() if name.startswith("DT_") else name


def _shape(shape):
    if shape.unknown_rank:
        return "unknown"
    return ("(" + ", ".join("-1" if d.size < 0 else str(d.size) for d in shape.dim)
            + ("," if len(shape.dim) == 1 else "") + ")")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(metadata, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
