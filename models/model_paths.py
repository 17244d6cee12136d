"""Where the toy model builder reads and writes: the weights file, the output folder and the config templates."""

from pathlib import Path

SCRIPT_DIR = Path(__file__).resolve().parent  # models/
REPO_DIR = SCRIPT_DIR.parent
DEFAULT_WEIGHTS = REPO_DIR.parent / "shared" / "toy_models.json"
DEFAULT_OUT = SCRIPT_DIR / "save"
CONFIG_TEMPLATES = SCRIPT_DIR / "config"
