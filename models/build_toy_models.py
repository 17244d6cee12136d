#!/usr/bin/env python3
"""Rebuild the guide's toy models as TensorFlow SavedModels.

Reads the weights in ``<repo>/../shared/toy_models.json`` (``--weights``) and
writes one SavedModel per entry into ``<out>/<name>/<version>/`` (``--out``,
default ``models/save`` next to this script), e.g. ``models/save/Toy/2``.

Every model is one Dense(1) layer in float32::

    y = activation(x @ kernel + bias)      x: float32 [-1, 2], y: [-1, 1]

(sigmoid computed as ``1 / (1 + exp(-y))`` in float32, which reproduces the
guide's outputs to the digit; ``--sigmoid-op`` uses TF's fused Sigmoid op as
Keras does, which may differ in the last float32 digit), exported so that TF
Serving's GetModelMetadata shows what the guide's original
Keras exports showed: signature ``serving_default`` (method
``tensorflow/serving/predict``, input alias ``input_1`` -> tensor
``serving_default_input_1:0``, output alias from the json -> tensor
``StatefulPartitionedCall:0``) plus ``__saved_model_init_op``.

After the toy models the same run builds ``MultiTask/1``, a small multi-task
model with fixed weights (constants in multitask_spec.py, not from the json; see
multitask_graph.py): features ``age`` and ``income``, one shared ReLU layer,
a classification head over the classes ``low``, ``medium``, ``high`` and a
regression head, with the signatures ``serving_default`` (predict),
``classify`` and ``regress`` that TF Serving's Predict, Classify, Regress and
MultiInference use.

A version folder that already exists and is complete is skipped unless
``--force``. Each model is built in a temporary folder next to its target and
renamed into place, so a half-written model never appears as a version folder
(TF Serving ignores the temporary folders: their names are not numbers).
``--check`` loads every model the way the server does (TF1 loader, session)
and compares its outputs with the json's ``expected`` values (MultiTask: with
the same computation in numpy, and classify/regress with predict).

Exit status: 0 ok, 1 build or check failure, 2 bad usage or weights file.

The work is split by job into the modules beside this script (this one is the command line):

    weights_file.py        read and validate the weights file
    multitask_spec.py      MultiTask's fixed weights and its outputs in numpy
    toy_graph.py           the toy models' graph (a tf.Module)
    multitask_graph.py     MultiTask's TF1 graph and signatures
    saved_model_export.py  write either as a SavedModel
    version_folders.py     the up-to-date check (is_complete) and renaming a build into place
    config_files.py        render models/config/*.config.in into the output folder
    load_like_server.py    load a SavedModel as the server does and run its signatures
    output_checks.py       --check: compare the outputs with the json or numpy
    tf_import.py, model_paths.py, serving_names.py   the lazy TensorFlow import, the paths, the serving names
"""

import argparse
import os
import sys
from pathlib import Path

from config_files import write_configs
from model_paths import DEFAULT_OUT, DEFAULT_WEIGHTS
from multitask_spec import MULTITASK, MultiTaskModel
from output_checks import check_multitask, check_one
from serving_names import SIGNATURE_KEY
from version_folders import build_one
from weights_file import WeightsError, load_weights


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_toy_models.py",
        description="Rebuild the guide's toy models (and MultiTask) as TensorFlow SavedModels.")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                        help=f"weights file (default: {_show(DEFAULT_WEIGHTS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {_show(DEFAULT_OUT)})")
    parser.add_argument("--force", action="store_true",
                        help="rebuild versions that already exist")
    parser.add_argument("--check", action="store_true",
                        help="afterwards, load each model with the TF1 loader and "
                             "compare its outputs with the json's expected values "
                             "(MultiTask: with numpy)")
    parser.add_argument("--sigmoid-op", action="store_true",
                        help="compute sigmoid with TF's fused Sigmoid op (as Keras does) "
                             "instead of 1/(1+exp(-x)), which matches the guide's outputs "
                             "exactly; applies to models built in this run")
    parser.add_argument("--verbose", action="store_true",
                        help="do not hide TensorFlow's start-up messages")
    args = parser.parse_args(argv)

    try:
        weights = load_weights(args.weights)
    except WeightsError as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    out_dir = args.out.resolve()
    models = list(weights.models) + [MULTITASK]
    status = 0
    for model in models:
        target = out_dir / model.name / str(model.version)
        try:
            result = build_one(model, out_dir, force=args.force, verbose=args.verbose,
                               sigmoid_op=args.sigmoid_op)
        except Exception as e:  # report and go on with the other models
            print(f"FAILED  {model.key}: {type(e).__name__}: {' '.join(str(e).split())}",
                  file=sys.stderr)
            status = 1
            continue
        if result == "skipped":
            print(f"skipped {model.key}: {_show(target)} exists (--force to rebuild)", flush=True)
        elif isinstance(model, MultiTaskModel):
            print(f"{result:7} {model.key} -> {_show(target)} "
                  f"(signatures {SIGNATURE_KEY}, classify, regress)", flush=True)
        else:
            print(f"{result:7} {model.key} -> {_show(target)} "
                  f"({model.activation}, output {model.output!r})", flush=True)

    if status == 0:
        for written in write_configs(out_dir):
            print(f"config  {_show(written)}", flush=True)

    if args.check and status == 0:
        for model in models:
            try:
                if isinstance(model, MultiTaskModel):
                    ok, msg = check_multitask(out_dir, args.verbose)
                else:
                    ok, msg = check_one(model, out_dir, weights.input, args.verbose)
            except Exception as e:
                ok, msg = False, f"{type(e).__name__}: {' '.join(str(e).split())}"
            print(f"{'checked' if ok else 'MISMATCH'} {model.key}: {msg}", flush=True)
            if not ok:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
