"""Put a built model into ``<out>/<name>/<version>/`` without a half-written folder ever showing, and skip a version
that is already complete (the builder's up-to-date check: the files are there; the weights are not compared)."""

import os
import shutil
import tempfile
from pathlib import Path

from saved_model_export import export_saved_model


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_complete(path) -> bool:
    """Whether ``path`` holds a fully written SavedModel."""
    path = Path(path)
    variables = path / "variables"
    return ((path / "saved_model.pb").is_file()
            and (variables / "variables.index").is_file()
            and any(variables.glob("variables.data-*")))


def build_one(model, out_dir: Path, force: bool = False,
              verbose: bool = False, sigmoid_op: bool = False) -> str:
    """Build one model unless already there; return 'built', 'rebuilt' or 'skipped'.

    The model is written in a temporary folder next to its target and renamed into place
    (TF Serving ignores the temporary folders: their names are not numbers).
    """
    model_dir = out_dir / model.name
    target = model_dir / str(model.version)
    exists = target.exists()
    if exists and not force and is_complete(target):
        return "skipped"
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.version}.tmp-", dir=model_dir))
    try:
        export_saved_model(model, tmp, verbose, sigmoid_op)
        if not is_complete(tmp):
            raise RuntimeError(f"export of {model.key} in {tmp} is incomplete")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        if exists:
            # Directories cannot be replaced atomically: move the old one
            # aside, move the new one in, then delete the old one.
            old = Path(tempfile.mkdtemp(prefix=f".{model.version}.old-", dir=model_dir))
            os.rename(target, old / "v")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return "rebuilt" if exists else "built"
