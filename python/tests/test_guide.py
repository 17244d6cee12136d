"""Every command of the guide, run as written from python/, prints what the guide shows."""

import os
import re
import shlex

import pytest
from script_helpers import GUIDE, run_script

from testing.paths import need_shared
from testing.server import ServerProcess


def guide_commands():
    """[(argv, expected stdout)] in the guide's order, read from the guide itself (none without ../shared:
    test_the_guide_is_read then skips and says why)."""
    if not os.path.exists(GUIDE):
        return []
    commands, current = [], None
    for line in open(GUIDE, encoding="utf-8").read().splitlines():
        stripped = line.strip()
        if stripped.startswith("$ python"):
            current = [shlex.split(stripped[2:], comments=True), []]
            commands.append(current)
        elif current and stripped.startswith("#"):
            current[1].append(re.sub(r"^# ?", "", stripped))
        elif stripped.startswith("```") or not stripped:
            current = None if stripped.startswith("```") else current
    return [(argv, "\n".join(out) + "\n") for argv, out in commands]


COMMANDS = guide_commands()


def test_the_guide_is_read():
    need_shared(GUIDE)
    scripts = [argv[1] for argv, _ in COMMANDS]
    assert scripts == ["grpcRequest.py"] * 6 + ["grpcModelStatus.py", "grpcMetadata.py", "grpcReloadModel.py",
                                                 "grpcRequestLog.py"]


@pytest.fixture(scope="module")
def guide_server(toy_models):
    """A server of its own: the guide's reload changes what is served."""
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models") as server:
        yield server


def expected_output(argv, shown):
    if argv[1] == "grpcReloadModel.py":
        return shown.replace("sucessfully", "successfully")  # the guide's typo
    return shown


@pytest.mark.parametrize("argv, shown", COMMANDS, ids=[" ".join(a[1:]) for a, _ in COMMANDS])
def test_guide_command(guide_server, argv, shown):
    args = argv[2:]
    if argv[1] == "grpcMetadata.py":
        args = args + ["--raw"]  # the guide prints the packed bytes; by default the map is expanded
    result = run_script(argv[1], *args, server=guide_server.target)
    assert result.code == 0, result
    assert result.out == expected_output(argv, shown)
    if argv[1] == "grpcReloadModel.py":
        assert result.err == ("grpcReloadModel.py: warning: TF Serving will serve only model Toy now; every other "
                              "model is unloaded (use -c FILE to keep several)\n")
    else:
        assert result.err == ""
