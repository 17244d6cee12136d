#!/usr/bin/env python3
"""Predict: send inputs to a model served by TF Serving and print the response."""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    import startup
    startup.quiet_interrupts()

import sys

import common
from tfsclient import codec, predict_inputs

PROGRAM = "grpcRequest.py"


def build_parser():
    parser = common.parser("Send a Predict request to TF Serving and print the PredictResponse.",
                           "python3 grpcRequest.py -m Toy -v 1 -i 'input_1=[[1.0, 2.0]]'", signature=True)
    predict_inputs.add_arguments(parser)
    parser.add_argument("--values", action="store_true",
                        help="print only the output arrays, as one JSON object of output name to nested lists")
    return parser


def predict(args):
    with common.channel(args) as channel:
        stub = common.protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_inputs.predict_request(args, stub)
        response = stub.Predict(request, timeout=common.time_left(args))
    if args.values:
        common.dump_json({alias: common.json_values(codec.make_ndarray(tensor))
                          for alias, tensor in sorted(response.outputs.items())})
    else:
        common.show(response, args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(predict, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
