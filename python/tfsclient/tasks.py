"""--task KIND[:SIGNATURE]: the example-based calls (Classify, Regress; several make one MultiInference)."""

from .errors import InputError

METHODS = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}


def parse_tasks(specs):
    """[(kind, signature)] from the --task specs; the signature is "" for the server's default."""
    if not specs:
        raise InputError("give at least one --task classify[:SIGNATURE] or --task regress[:SIGNATURE]")
    tasks = []
    for spec in specs:
        kind, _, signature = spec.partition(":")
        if kind not in METHODS:
            raise InputError(f"--task wants classify[:SIGNATURE] or regress[:SIGNATURE], not {spec!r}")
        tasks.append((kind, signature))
    return tasks
