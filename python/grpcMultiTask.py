#!/usr/bin/env python3
"""Classify, Regress and MultiInference: TF Serving's example-based calls.

One --task calls Classify or Regress; several call MultiInference (all tasks on one model and
version, over the same examples).
"""

if __name__ == "__main__":  # started as a command: Ctrl-C while it starts up exits 130 quietly
    from tfsclient import startup
    startup.quiet_interrupts()

import sys

import numpy as np

from tfsclient import common, compare, fleet, tf_examples
from tfsclient import tasks as task_specs

PROGRAM = "grpcMultiTask.py"


def build_parser():
    parser = common.parser(
        "Run classification and regression tasks on tf.Examples (Classify, Regress, MultiInference).",
        "python3 grpcMultiTask.py -m MultiTask --task classify:classify --task regress:regress "
        "-e 'age=31.0,income=5.2'")
    parser.set_defaults(model="MultiTask")
    parser.add_argument("--task", action="append", default=[], metavar="KIND[:SIGNATURE]",
                        help="classify or regress, on SIGNATURE (default: the server's, serving_default); "
                             "repeat to run several tasks in one MultiInference call")
    tf_examples.add_arguments(parser)
    parser.add_argument("--values", action="store_true",
                        help="print a compact table of each example's results instead of the response")
    compare.add_arguments(parser)
    return parser


def multi_task(args):
    tolerance = compare.atol(args)
    if args.fleet:
        task_specs.parse_tasks(args.task)  # a bad --task is one usage error, not one per replica
        return fleet.run(args, TaskView(tolerance))
    response, results = ask(args)
    if args.values:
        sys.stdout.write(table(results))
    else:
        common.show(response, args)


def ask(args):
    """The call the tasks make on args.server: its response and [(kind, signature, result)]."""
    tasks = task_specs.parse_tasks(args.task)
    protos = common.protos
    with common.client(args) as client:
        if len(tasks) == 1:
            kind, signature = tasks[0]
            if kind == "classify":
                request = protos.classification_pb2.ClassificationRequest()
            else:
                request = protos.regression_pb2.RegressionRequest()
            common.set_model_spec(request.model_spec, args, signature)
            tf_examples.build_input(args, request.input)
            call = client.Classify if kind == "classify" else client.Regress
            response = call(request, timeout=common.time_left(args))
            results = [(kind, signature, response.result)]
        else:
            request = protos.inference_pb2.MultiInferenceRequest()
            for kind, signature in tasks:
                task = request.tasks.add(method_name=task_specs.METHODS[kind])
                common.set_model_spec(task.model_spec, args, signature)
            tf_examples.build_input(args, request.input)
            response = client.MultiInference(request, timeout=common.time_left(args))
            results = [(kind, signature,
                        getattr(r, f"{'classification' if kind == 'classify' else 'regression'}_result"))
                       for (kind, signature), r in zip(tasks, response.results)]
    return response, results


class TaskView(compare.OutputsView):
    """--fleet: the tasks on each replica (one line per example, as --values prints); the classes must be the
    same and the scores and regression values agree within --atol."""

    what = ""  # the arrays' names say what they are ("classify:classify scores")

    def call(self, args):
        response, results = ask(args)
        answer = compare.Answer(response, result_arrays(results))
        answer.results = results
        return answer

    def text(self, answer):
        return table(answer.results) or "no results"

    def data(self, answer):
        return common.to_data(answer.message)


def result_arrays(results):
    """The results as named arrays to compare: per classify task its classes (labels) and scores, [examples,
    classes] (flat, with the number per example, when examples have different numbers of classes); per regress
    task its values."""
    arrays = {}
    for kind, signature, result in results:
        name = f"{kind}:{signature}" if signature else kind
        if kind == "regress":
            arrays[f"{name} values"] = np.array([r.value for r in result.regressions], dtype=np.float32)
            continue
        rows = [list(c.classes) for c in result.classifications]
        counts = {len(row) for row in rows}
        labels = [[c.label for c in row] for row in rows]
        scores = [[c.score for c in row] for row in rows]
        if len(counts) > 1:
            arrays[f"{name} classes per example"] = np.array([len(row) for row in rows])
            labels, scores = [sum(labels, [])], [sum(scores, [])]
        arrays[f"{name} classes"] = _strings(labels)
        arrays[f"{name} scores"] = np.array(scores, dtype=np.float32).reshape(len(labels), -1)
    return arrays


def _strings(rows):
    array = np.empty((len(rows), len(rows[0]) if rows else 0), dtype=object)
    for i, row in enumerate(rows):
        array[i, :] = row
    return array


def table(results):
    """One line per example: each task's classes and scores, or regression value."""
    if not results:
        return ""
    rows = max(len(r.classifications) if k == "classify" else len(r.regressions) for k, _, r in results)
    out = []
    for i in range(rows):
        cells = []
        for kind, signature, result in results:
            name = f"{kind}:{signature}" if signature else kind
            if kind == "classify":
                classes = result.classifications[i].classes if i < len(result.classifications) else []
                cells.append(f"{name} " + " ".join(f"{c.label or '#' + str(n)}={c.score:.6g}"
                                                   for n, c in enumerate(classes)))
            else:
                value = result.regressions[i].value if i < len(result.regressions) else float("nan")
                cells.append(f"{name} {value:.6g}")
        out.append(f"example {i}: " + "  ".join(cells))
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return common.run(multi_task, args, PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
