"""grpcReloadModel.py against a server of its own: reloads change what is served."""

import pytest
from script_helpers import run_script

from testing.server import ServerProcess


@pytest.fixture(scope="module")
def server(toy_models):
    with ServerProcess(f"--model_config_file={toy_models}/toy_labels.config",
                       "--allow_version_labels_for_unavailable_models", "--max_num_load_retries=0") as s:
        yield s


def script(server, *args):
    return run_script(*args, server=server.target)


def test_one_model_keeps_its_versions_and_warns(server):
    result = script(server, "grpcReloadModel.py", "-m", "Toy")
    assert (result.code, result.out) == (0, "model Toy reloaded successfully\n")
    assert "every other model is unloaded" in result.err
    status = script(server, "grpcModelStatus.py", "-m", "Toy").out
    assert status.count("AVAILABLE") == 2  # versions 1 and 2, as before
    assert script(server, "grpcRequest.py", "-m", "Toy_double").code == 1  # unloaded


def test_versions_labels_and_latest(server, toy_models):
    result = script(server, "grpcReloadModel.py", "-m", "Toy", "--versions", "1,2", "--label", "stable=1",
                    "--label", "canary=2")
    assert result.code == 0
    assert "value: 1" in script(server, "grpcRequest.py", "-l", "stable").out
    assert script(server, "grpcReloadModel.py", "-m", "Toy", "--latest", "1").code == 0
    assert "value: 3" in script(server, "grpcRequest.py", "--output-filter", "dense").out


def test_whole_config_and_json(server, toy_models):
    script(server, "grpcReloadModel.py", "-m", "Toy", "--versions", "1,2")
    result = script(server, "grpcReloadModel.py", "-c", f"{toy_models}/toy_labels.config")
    assert (result.code, result.out, result.err) == (
        0, "config reloaded successfully: Toy, Toy_double, MultiTask\n", "")
    result = script(server, "grpcReloadModel.py", "-c", f"{toy_models}/toy_labels.config", "--format", "json")
    assert result.out == '{"reloaded": ["Toy", "Toy_double", "MultiTask"]}\n'
    assert script(server, "grpcRequest.py", "-l", "canary").code == 0


@pytest.mark.parametrize("args, code, message", [
    (("-m", "Toy", "--label", "stable=3", "--latest", "1"), 1,  # moving a label needs an available version
     "grpcReloadModel.py: error: FAILED_PRECONDITION: Request to assign label to version 3 of model Toy, which is "
     "not currently available for inference\n"),
    (("-m", "Nope"), 1, None),
    (("-m", "Toy", "--versions", "x"), 2, "grpcReloadModel.py: error: --versions: 'x' is not a number: a version is a "
     "whole number from 0 to 2**63-1, e.g. --versions 1,2\n"),
    (("-m", "Toy", "--label", "stable"), 2,
     "grpcReloadModel.py: error: --label wants LABEL=VERSION, e.g. stable=1, not 'stable'\n"),
    (("-m", "Toy", "-c", "x.config"), 2,
     "grpcReloadModel.py: error: give -c FILE (a whole config) or -m NAME (one model)\n"),
])
def test_bad_reloads_change_nothing(server, toy_models, args, code, message):
    script(server, "grpcReloadModel.py", "-c", f"{toy_models}/toy_labels.config")
    result = script(server, "grpcReloadModel.py", *args)
    assert (result.code, result.out) == (code, "")
    if message:
        assert result.err.splitlines()[-1] + "\n" == message
    else:
        assert result.err.splitlines()[-1].startswith("grpcReloadModel.py: error: INVALID_ARGUMENT: Could not find "
                                                      "base path")
    assert script(server, "grpcRequest.py", "-m", "Toy_double").code == 0  # still served
