#!/usr/bin/env python3
"""Predict: send inputs to a model served by TF Serving and print the response."""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import sys

from tfsclient import common, compare, fleet, predict_inputs

PROGRAM = "grpcRequest.py"


def build_parser():
    parser = common.parser("Send a Predict request to TF Serving and print the PredictResponse.",
                           "python3 grpcRequest.py -m Toy -v 1 -i 'input_1=[[1.0, 2.0]]'", signature=True)
    predict_inputs.add_arguments(parser)
    parser.add_argument("--values", action="store_true",
                        help="print only the output arrays, as one JSON object of output name to nested lists "
                             "(with --fleet and --format json: each replica's)")
    compare.add_arguments(parser)
    return parser


def predict_response(args):
    with common.client(args) as client:
        request = predict_inputs.predict_request(args, client)
        return client.Predict(request, timeout=common.time_left(args))


class PredictView(compare.OutputsView):
    """--fleet: the same request to each replica (built with its own channel, checked against its signature);
    their outputs must agree within --atol."""

    def __init__(self, tolerance, values):
        super().__init__(tolerance)
        self.values = values

    def call(self, args):
        response = predict_response(args)
        return compare.Answer(response, compare.tensors(response.outputs), response.model_spec.version.value)

    def data(self, answer):
        if self.values:
            return {alias: common.json_values(array) for alias, array in sorted(answer.outputs.items())}
        return common.to_data(answer.message)


def predict(args):
    tolerance = compare.atol(args)
    if args.fleet:
        return fleet.run(args, PredictView(tolerance, args.values))
    response = predict_response(args)
    if args.values:
        # every output made an array before any is written: one that cannot be is one line, nothing on stdout
        common.write_values(sorted(compare.tensors(response.outputs).items()), sys.stdout)
    else:
        common.show(response, args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(predict, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
