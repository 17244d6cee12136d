"""Render the model server config templates (``models/config/*.config.in``) into the output folder."""

from pathlib import Path

from model_paths import CONFIG_TEMPLATES


def write_configs(out_dir: Path) -> list:
    """Render models/config/*.config.in into out_dir with ${MODELS_DIR} = out_dir.

    TF Serving requires absolute base paths, so the configs are written per checkout; the same
    file works for a Docker TF Serving that mounts out_dir at the same path. A config whose text
    is already right is left alone (not rewritten).
    """
    written = []
    for template in sorted(CONFIG_TEMPLATES.glob("*.config.in")):
        target = out_dir / template.name[: -len(".in")]
        text = template.read_text(encoding="utf-8").replace("${MODELS_DIR}", str(out_dir))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
        written.append(target)
    return written
