"""``--check``: run the built models as the server would and compare with the json's expected values or numpy."""

from __future__ import annotations

from pathlib import Path

from load_like_server import run_multitask_v1, run_v1
from multitask_spec import MULTITASK, MULTITASK_EXAMPLES, multitask_numpy
from serving_names import CLASSIFY_METHOD, PREDICT_METHOD, REGRESS_METHOD, SIGNATURE_KEY
from weights_file import ToyModel


def _close(got, want, ulps: int = 4) -> bool:
    """Whether float32 arrays agree within ``ulps`` units in the last place (TF's and
    numpy's exp and summation order may differ in the last digits)."""
    import numpy as np

    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    return got.shape == want.shape and bool(
        np.all(np.abs(got - want) <= ulps * np.spacing(np.abs(want))))


def check_one(model: ToyModel, out_dir: Path, x, verbose: bool = False) -> tuple[bool, str]:
    """Run a built model through the TF1 loader and compare with ``expected``.

    Linear models must match exactly; sigmoid ones within 1 float32 ulp (the
    json notes that CPU kernels may differ in the last digit).
    """
    import numpy as np

    target = out_dir / model.name / str(model.version)
    _, outputs = run_v1(target, x, verbose)
    if set(outputs) != {model.output}:
        return False, f"outputs {sorted(outputs)} instead of [{model.output!r}]"
    got = [float(v) for v in outputs[model.output].reshape(-1)]
    if model.expected is None:
        return True, f"{got!r} (no expected values)"
    want = np.asarray(model.expected, dtype=np.float32)
    diff = np.abs(np.asarray(got, dtype=np.float32) - want)
    tolerance = 0 if model.activation == "linear" else np.spacing(np.abs(want))
    ok = len(got) == len(want) and bool(np.all(diff <= tolerance))
    exact = ok and bool(np.all(diff == 0))
    return ok, f"{got!r} " + ("== expected" if exact else
                              f"{'~=' if ok else '!='} expected {list(model.expected)!r}")


def check_multitask(out_dir: Path, verbose: bool = False) -> tuple[bool, str]:
    """Run MultiTask's signatures on MULTITASK_EXAMPLES and compare with numpy."""
    import numpy as np

    target = out_dir / MULTITASK.name / str(MULTITASK.version)
    meta_graph, results = run_multitask_v1(target, MULTITASK_EXAMPLES, verbose)
    methods = {k: s.method_name for k, s in meta_graph.signature_def.items()}
    want_methods = {SIGNATURE_KEY: PREDICT_METHOD, "classify": CLASSIFY_METHOD,
                    "regress": REGRESS_METHOD}
    if methods != want_methods:
        return False, f"signatures {methods} instead of {want_methods}"
    predict = results[SIGNATURE_KEY]
    want = multitask_numpy([e["age"] for e in MULTITASK_EXAMPLES],
                           [e["income"] for e in MULTITASK_EXAMPLES])
    problems = []
    for alias in ("scores", "prediction"):
        if not _close(predict.get(alias), want[alias]):
            problems.append(f"{alias} {predict.get(alias)!r} != numpy {want[alias]!r}")
    if predict.get("classes") is None or predict["classes"].tolist() != want["classes"].tolist():
        problems.append(f"classes {predict.get('classes')!r}")
    for key, alias, same in (("classify", "scores", "scores"), ("classify", "classes", "classes"),
                             ("regress", "outputs", "prediction")):
        if not np.array_equal(results[key].get(alias), predict.get(same)):
            problems.append(f"{key} {alias} differs from predict {same}")
    if problems:
        return False, "; ".join(problems)
    scores = [[float(v) for v in row] for row in predict["scores"]]
    prediction = [float(v) for v in predict["prediction"].ravel()]
    return True, (f"scores {scores!r}, prediction {prediction!r} ~= numpy; "
                  "classify and regress == predict")
