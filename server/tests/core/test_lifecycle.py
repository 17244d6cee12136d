"""Versions coming and going: version policies, file-system polls, reloads, config-file polls, failed loads."""

import os
import re
import shutil
import threading

import pytest
from testing.server_client import Client, model_config, rpc_error, values

from testing.server import ServerProcess, wait_until


def break_version(path):
    """A version folder whose SavedModel does not parse."""
    os.makedirs(path)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"not a saved model")


@pytest.fixture(scope="module")
def models_dir(toy_models, tmp_path_factory):
    """A private copy of the toy models that tests may change."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(os.path.join(toy_models, "Toy"), root / "Toy", ignore=shutil.ignore_patterns("3"))
    shutil.copytree(os.path.join(toy_models, "Toy_double"), root / "Toy_double")
    return root


@pytest.fixture(scope="module")
def server(models_dir):
    with ServerProcess("--model_name=Toy", f"--model_base_path={models_dir}/Toy",
                       "--file_system_poll_wait_seconds=1", "--max_num_load_retries=0") as s:
        yield s


@pytest.fixture
def client(server, models_dir):
    with Client(server.target) as c:
        yield c


def test_single_model_flags_serve_the_latest_version(client, server):
    assert client.predict().model_spec.version.value == 2
    assert client.states("Toy") == {2: "AVAILABLE"}
    assert "Building single TensorFlow model file config:  model_name: Toy model_base_path: " in server.log()


def test_new_version_folder_is_served_and_old_one_unloaded(client, server, models_dir, toy_models):
    shutil.copytree(os.path.join(toy_models, "Toy", "3"), models_dir / "Toy" / "3")
    wait_until(lambda: client.states("Toy") == {3: "AVAILABLE", 2: "END", 1: "END"} or
               client.states("Toy") == {3: "AVAILABLE", 2: "END"}, what="version 3 to replace 2")
    response = client.predict()
    assert response.model_spec.version.value == 3
    assert values(response, "dense") == [0.9901617765426636, 0.9934704303741455]
    server.wait_for_log(r"Successfully loaded servable version \{name: Toy version: 3\}")
    server.wait_for_log(r"Done unloading servable version \{name: Toy version: 2\}")
    # Removed again: version 2 comes back, 3 ends.
    shutil.rmtree(models_dir / "Toy" / "3")
    wait_until(lambda: client.states("Toy").get(3) == "END" and client.states("Toy").get(2) == "AVAILABLE",
               what="version 3 to be unloaded")
    assert client.predict().model_spec.version.value == 2


def test_a_broken_new_version_ends_with_its_error_and_the_old_keeps_serving(client, models_dir):
    break_version(models_dir / "Toy" / "4")
    try:
        wait_until(lambda: client.states("Toy").get(4) == "END", what="version 4 to fail")
        status = {s.version: s for s in client.status("Toy").model_version_status}[4].status
        assert status.error_code != 0 and status.error_message
        assert client.predict().model_spec.version.value == 2
    finally:
        shutil.rmtree(models_dir / "Toy" / "4")


@pytest.mark.parametrize("policy, served", [
    ("all", {1, 2}),
    ([1], {1}),
    ([1, 2, 9], {1, 2}),
    (2, {1, 2}),
    (1, {2}),
])
def test_version_policies(client, models_dir, policy, served):
    client.reload(model_config(("Toy", models_dir / "Toy", policy)))
    wait_until(lambda: {v for v, s in client.states("Toy").items() if s == "AVAILABLE"} == served,
               what=f"versions {served}")
    for version in served:
        assert client.predict(version=version).model_spec.version.value == version
    assert client.predict().model_spec.version.value == max(served)


def test_reload_replaces_the_served_set(client, models_dir):
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2])))  # labels need available versions
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2], {"stable": 1}),
                               ("Toy_double", models_dir / "Toy_double")))
    assert client.predict("Toy_double").model_spec.version.value == 1  # answered after loading
    assert client.predict(label="stable").model_spec.version.value == 1
    response = client.reload(model_config(("Toy_double", models_dir / "Toy_double")))
    assert response.status.error_code == 0 and not response.status.error_message
    assert set(client.states("Toy").values()) == {"END"}
    assert rpc_error(client.predict) == ("NOT_FOUND", "Servable not found for request: Latest(Toy)")
    client.reload(model_config(("Toy", models_dir / "Toy")))
    assert client.predict().model_spec.version.value == 2
    assert client.states("Toy_double") == {1: "END"}


def test_labels_move_between_available_versions(client, models_dir):
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2])))
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2], {"stable": 1, "canary": 2})))
    assert client.predict(label="canary").model_spec.version.value == 2
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2], {"stable": 1, "canary": 1})))
    assert client.predict(label="canary").model_spec.version.value == 1
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2])))
    assert rpc_error(client.predict, label="canary") == (
        "INVALID_ARGUMENT", "Unrecognized servable version label: canary")


def invalid_configs(models_dir):
    from tensorflow_serving.config import model_server_config_pb2
    toy = ("Toy", models_dir / "Toy")
    twice = model_config(toy, ("Toy", models_dir / "Toy_double"))
    relative = model_config(("Toy", "models/save/Toy"))
    other_platform = model_config(toy)
    other_platform.model_config_list.config[0].model_platform = "tensorflow_lite"
    no_platform = model_config(("New", models_dir / "Toy_double"))
    no_platform.model_config_list.config[0].model_platform = ""
    unsupported = model_config(("New", models_dir / "Toy_double"))
    unsupported.model_config_list.config[0].model_platform = "pytorch"
    return [
        (model_server_config_pb2.ModelServerConfig(), "INVALID_ARGUMENT",
         "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is "
         "currently supported"),
        (twice, "INVALID_ARGUMENT", "Illegal to list model Toy multiple times in config list"),
        (relative, "INVALID_ARGUMENT",
         "Expected model Toy to have an absolute path or URI; got base_path()=models/save/Toy"),
        (other_platform, "INVALID_ARGUMENT",
         "Illegal to change a model's platform. For model Toy platform was tensorflow and new platform "
         "requested is tensorflow_lite"),
        (no_platform, "INVALID_ARGUMENT", "Illegal setting neither ModelServerConfig::model_type (deprecated) "
         "nor ModelServerConfig::model_platform."),
        (unsupported, "INVALID_ARGUMENT", "Model New requests unsupported platform pytorch"),
        (model_config(("Toy", models_dir / "Toy", [1, 2], {"beta": 3})), "FAILED_PRECONDITION",
         "Request to assign label to version 3 of model Toy, which is not currently available for inference"),
        (model_config(("Missing", models_dir / "missing")), "INVALID_ARGUMENT",
         f"Could not find base path {models_dir}/missing for servable Missing with error No such file or "
         "directory"),
    ]


def test_invalid_reloads_change_nothing(client, models_dir):
    client.reload(model_config(("Toy", models_dir / "Toy", [1, 2], {"stable": 1})))
    before = client.states("Toy")
    for config, code, message in invalid_configs(models_dir):
        assert rpc_error(client.reload, config) == (code, message)
        assert client.states("Toy") == before
        assert client.predict(label="stable").model_spec.version.value == 1


def test_a_new_model_that_fails_to_load_fails_the_reload_and_changes_nothing(client, models_dir, server):
    client.reload(model_config(("Toy", models_dir / "Toy")))
    break_version(models_dir / "Broken" / "1")
    code, message = rpc_error(client.reload, model_config(("Broken", models_dir / "Broken")))
    assert code == "UNKNOWN"
    assert message.startswith("1 model(s) did not become available: {{name: Broken version: 1 due to error: ")
    assert client.predict().model_spec.version.value == 2
    assert client.states("Broken") == {1: "END"}
    server.wait_for_log("ReloadConfig failed: 1 model")


def test_reload_concurrent_with_requests_fails_none(client, models_dir):
    configs = [model_config(("Toy", models_dir / "Toy", [1, 2])), model_config(("Toy", models_dir / "Toy", [1])),
               model_config(("Toy", models_dir / "Toy", "all")), model_config(("Toy", models_dir / "Toy", [2]))]
    client.reload(configs[0])
    stop, errors, served = threading.Event(), [], []

    def requests():
        while not stop.is_set():
            try:
                served.append(client.predict().model_spec.version.value)
            except Exception as e:  # asserted below
                errors.append(e)

    threads = [threading.Thread(target=requests) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for config in configs * 2:
            client.reload(config)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert set(served) == {1, 2} and len(served) > 20


def test_config_file_is_polled(models_dir, tmp_path):
    from google.protobuf import text_format
    config_file = tmp_path / "models.config"
    config_file.write_text(text_format.MessageToString(model_config(("Toy", models_dir / "Toy"))))
    with ServerProcess(f"--model_config_file={config_file}", "--model_config_file_poll_wait_seconds=1") as server:
        client = Client(server.target)
        assert rpc_error(client.predict, "Toy_double")[0] == "NOT_FOUND"
        config_file.write_text("model_config_list { config { name: 'Toy' ")
        server.wait_for_log("Failed to read ModelServerConfig file: Error parsing text-format")
        config_file.write_text(text_format.MessageToString(
            model_config(("Toy", models_dir / "Toy"), ("Toy_double", models_dir / "Toy_double"))))
        wait_until(lambda: client.states("Toy_double").get(1) == "AVAILABLE" if _known(client, "Toy_double")
                   else False, what="Toy_double from the polled config")
        assert client.predict("Toy_double").model_spec.version.value == 1
        assert client.predict().model_spec.version.value == 2
        client.close()


def _known(client, model):
    try:
        client.status(model)
        return True
    except Exception:
        return False


def _poll_tick(server, count):
    """Wait for `count` more file-system polls: each one warns about version 7 of Marker, absent on disk."""
    pattern = r"Version 7 of servable Marker, which was requested"
    server.wait_for_log(pattern, count=len(re.findall(pattern, server.log())) + count)


@pytest.mark.parametrize("retries", [0, 1])
def test_a_failed_version_is_loaded_once_until_it_leaves_and_comes_back(toy_models, tmp_path, retries):
    from google.protobuf import text_format
    shutil.copytree(os.path.join(toy_models, "Toy"), tmp_path / "Toy", ignore=shutil.ignore_patterns("3"))
    config = model_config(("Toy", tmp_path / "Toy"), ("Marker", os.path.join(toy_models, "Toy_double"), [1, 7]))
    (tmp_path / "models.config").write_text(text_format.MessageToString(config))
    loading = r"Loading servable version \{name: Toy version: 4\}"
    failed = r"Loading servable: \{name: Toy version: 4\} failed: "
    with ServerProcess(f"--model_config_file={tmp_path}/models.config", "--file_system_poll_wait_seconds=1",
                       f"--max_num_load_retries={retries}", "--load_retry_interval_micros=100000") as server:
        client = Client(server.target)
        break_version(tmp_path / "Toy" / "4")
        server.wait_for_log(r"Encountered an error for servable version \{name: Toy version: 4\}")
        _poll_tick(server, 3)
        log = server.log()
        assert len(re.findall(loading, log)) == 1
        assert len(re.findall(failed, log)) == 1 + retries
        version_status = {s.version: s for s in client.status("Toy").model_version_status}[4]
        assert version_status.state == version_status.END
        assert version_status.status.error_code != 0 and version_status.status.error_message
        assert client.predict().model_spec.version.value == 2
        # Gone from the folder and back: loaded (and failing) again, once.
        shutil.rmtree(tmp_path / "Toy" / "4")
        _poll_tick(server, 2)
        break_version(tmp_path / "Toy" / "4")
        server.wait_for_log(r"Encountered an error for servable version \{name: Toy version: 4\}", count=2)
        _poll_tick(server, 3)
        assert len(re.findall(loading, server.log())) == 2
        assert len(re.findall(failed, server.log())) == 2 * (1 + retries)
        client.close()


@pytest.mark.parametrize("threads", [None, 2])
def test_a_load_waiting_to_retry_stalls_no_reload_status_or_other_model(toy_models, tmp_path, threads):
    """An empty version folder fails to load and waits (the default 60 s) to retry: the old version keeps
    serving, GetModelStatus and a reload answer at once; with --num_load_threads another model's new
    version loads meanwhile (with the default 0, loads run one at a time, as in TF Serving)."""
    import time
    from google.protobuf import text_format
    shutil.copytree(os.path.join(toy_models, "Toy"), tmp_path / "Toy", ignore=shutil.ignore_patterns("3"))
    shutil.copytree(os.path.join(toy_models, "Toy_double"), tmp_path / "Toy_double")
    config = model_config(("Toy", tmp_path / "Toy"), ("Toy_double", tmp_path / "Toy_double", "all"))
    (tmp_path / "models.config").write_text(text_format.MessageToString(config))
    flags = [f"--model_config_file={tmp_path}/models.config", "--file_system_poll_wait_seconds=1"]
    with ServerProcess(*flags, *([f"--num_load_threads={threads}"] if threads else [])) as server:
        client = Client(server.target)
        os.makedirs(tmp_path / "Toy" / "4")
        server.wait_for_log(r"Loading servable: \{name: Toy version: 4\} failed: ")
        assert client.states("Toy") == {4: "LOADING", 2: "AVAILABLE"}
        assert client.predict().model_spec.version.value == 2
        started = time.monotonic()
        assert client.reload(config).status.error_code == 0
        assert time.monotonic() - started < 20  # the retry is 60 s away
        if threads:
            shutil.copytree(tmp_path / "Toy_double" / "1", tmp_path / "Toy_double" / "2")
            wait_until(lambda: client.states("Toy_double").get(2) == "AVAILABLE", timeout=20,
                       what="Toy_double version 2 to load beside the waiting retry")
            assert client.predict("Toy_double", version=2).model_spec.version.value == 2
        # The folder goes away: its retry is cancelled and it ends with its error.
        os.rmdir(tmp_path / "Toy" / "4")
        wait_until(lambda: client.states("Toy") == {4: "END", 2: "AVAILABLE"}, timeout=20,
                   what="the retry of version 4 to be cancelled")
        server.wait_for_log(r"Retrying of Loading servable: \{name: Toy version: 4\} was cancelled.")
        client.close()


def test_folders_and_files_that_are_not_versions_are_ignored_and_polls_go_on(toy_models, tmp_path):
    """TF Serving takes only children named by a whole int64 (file_system_storage_path_source.cc): v1, assets,
    1.5, latest and a file named 4 beside the versions are passed over, at start-up and at every poll."""
    base = tmp_path / "Toy"
    shutil.copytree(os.path.join(toy_models, "Toy"), base, ignore=shutil.ignore_patterns("3"))
    for name in ("v1", "assets", "1.5", "latest", "9 9"):
        shutil.copytree(base / "1", base / name)
    (base / "4").write_text("a file, not a version folder")
    with ServerProcess("--model_name=Toy", f"--model_base_path={base}", "--file_system_poll_wait_seconds=1") as server:
        with Client(server.target) as client:
            assert client.predict().model_spec.version.value == 2
            assert client.states("Toy") == {2: "AVAILABLE"}
            shutil.copytree(os.path.join(toy_models, "Toy", "3"), base / "3")  # the next poll still sees versions
            wait_until(lambda: client.states("Toy").get(3) == "AVAILABLE", what="version 3 from a later poll")
            assert client.predict().model_spec.version.value == 3
        assert "Traceback" not in server.log()
