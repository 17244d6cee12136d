"""The manager and the server core in-process, with fake loaders (as TF Serving's core/test_util).

A fake loader counts its calls and fails, or blocks until released, so the tests see how many loads
the manager starts and what stays responsive while one hangs.
"""

import os
import threading

import pytest
from tensorflow_serving.config import model_server_config_pb2

from server.core import source
from server.util import status
from server.core.server_core import ServerCore
from server.core.manager import Manager, State
from testing.server import wait_until


class FakeServable:
    def __init__(self, name, version):
        self.name, self.version, self.closed = name, version, False

    def close(self):
        self.closed = True


class FakeLoader:
    """load_servable(name, version, path): fails for versions in `failing`, blocks on `gates`."""

    def __init__(self, failing=(), gates=None):
        self.failing = set(failing)
        self.gates = gates or {}  # (name, version) -> threading.Event to wait for
        self.calls = []
        self.started = threading.Condition()

    def __call__(self, name, version, path):
        with self.started:
            self.calls.append((name, version))
            self.started.notify_all()
        gate = self.gates.get((name, version))
        if gate is not None:
            gate.wait(30)
        if (name, version) in self.failing:
            raise status.unknown(f"fake load failure of {name} {version}")
        return FakeServable(name, version)

    def count(self, name, version):
        with self.started:
            return self.calls.count((name, version))


def make_config(tmp_path, *models):
    """A ModelConfigList of (name, versions on disk, policy) with numbered folders under tmp_path."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, versions, policy in models:
        base = tmp_path / name
        for version in versions:
            os.makedirs(base / str(version), exist_ok=True)
        os.makedirs(base, exist_ok=True)
        model = config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
        if policy == "all":
            model.model_version_policy.all.SetInParent()
    return config


def reconcile(manager, name, aspired):
    """set_aspired, then wait for its loads and for every version it no longer aspires to leave."""
    started = manager.set_aspired(name, aspired)
    manager.wait(started)
    wait_until(lambda: all(state == State.END for version, (state, _) in manager.states(name).items()
                           if version not in aspired),
               timeout=30, what=f"{name}'s versions outside {set(aspired)} to end")


# -- fault: a failed version is loaded again on every poll --------------------------------------------


def test_a_failed_version_is_not_loaded_again_while_it_stays_aspired():
    loader = FakeLoader(failing={("m", 1)})
    manager = Manager(loader, max_load_retries=2, retry_interval_seconds=0)
    for _ in range(5):
        reconcile(manager, "m", {1: "/m/1"})
    assert loader.count("m", 1) == 3  # the load and its two retries, once
    state, error = manager.states("m")[1]
    assert state == State.END and error.message == "fake load failure of m 1"
    # Out of the aspired set and back: loaded again (once more, with its retries).
    reconcile(manager, "m", {})
    for _ in range(3):
        reconcile(manager, "m", {1: "/m/1"})
    assert loader.count("m", 1) == 6


def test_an_unloaded_version_aspired_again_is_loaded_again():
    loader = FakeLoader()
    manager = Manager(loader, max_load_retries=0, retry_interval_seconds=0)
    reconcile(manager, "m", {1: "/m/1"})
    reconcile(manager, "m", {2: "/m/2"})
    assert manager.available_versions("m") == [2]
    reconcile(manager, "m", {1: "/m/1"})
    assert manager.available_versions("m") == [1]
    assert loader.count("m", 1) == 2


def test_file_system_polls_do_not_reload_a_failed_version(tmp_path):
    loader = FakeLoader(failing={("m", 2)})
    core = ServerCore(loader, max_load_retries=1, retry_interval_seconds=0)
    core.reload(make_config(tmp_path, ("m", [1, 2], "all")), initial=True)
    for _ in range(5):
        core.poll_file_system()
    assert loader.count("m", 2) == 2 and loader.count("m", 1) == 1
    assert core.manager.states("m")[2][0] == State.END
    assert core.manager.available_versions("m") == [1]
    os.rmdir(tmp_path / "m" / "2")
    core.poll_file_system()
    os.makedirs(tmp_path / "m" / "2")
    core.poll_file_system()
    wait_until(lambda: loader.count("m", 2) == 4 and core.manager.states("m")[2][0] == State.END,
               what="version 2 loaded again")
    for _ in range(3):
        core.poll_file_system()
    assert loader.count("m", 2) == 4
    core.manager.unload_all()


# -- fault: one slow or failing load stalls everything else -------------------------------------------


def test_loads_run_on_num_load_threads_and_a_blocked_load_stalls_no_other_model():
    gate = threading.Event()
    loader = FakeLoader(gates={("a", 1): gate})
    manager = Manager(loader, num_load_threads=2)
    try:
        manager.set_aspired("a", {1: "/a/1"})
        wait_until(lambda: loader.count("a", 1) == 1, what="the load of a to start")
        manager.set_aspired("b", {1: "/b/1"})
        wait_until(lambda: manager.available_versions("b") == [1], what="b to load beside the blocked a")
        assert manager.states("a") == {1: (State.LOADING, None)}
        gate.set()
        wait_until(lambda: manager.available_versions("a") == [1], what="a once released")
    finally:
        gate.set()
        manager.unload_all()


def test_with_no_load_threads_loads_run_one_at_a_time_in_the_manager():
    """num_load_threads=0 (TF Serving's default): loads run in the manager's loop, one after another."""
    gate = threading.Event()
    loader = FakeLoader(gates={("a", 1): gate})
    manager = Manager(loader, num_load_threads=0)
    try:
        manager.set_aspired("a", {1: "/a/1"})
        wait_until(lambda: loader.count("a", 1) == 1, what="the load of a to start")
        started = manager.set_aspired("b", {1: "/b/1"})  # returns at once
        assert started == [("b", 1)] and loader.count("b", 1) == 0
        assert manager.states("b") == {1: (State.START, None)}
        gate.set()
        assert manager.wait(started, timeout=30)
        assert manager.available_versions("a") == [1] and manager.available_versions("b") == [1]
    finally:
        gate.set()
        manager.unload_all()


def test_a_load_waiting_to_retry_holds_no_lock_and_is_cancelled_when_no_longer_aspired():
    loader = FakeLoader(failing={("a", 1)})
    manager = Manager(loader, max_load_retries=5, retry_interval_seconds=600, num_load_threads=0)
    try:
        manager.set_aspired("a", {1: "/a/1"})
        wait_until(lambda: loader.count("a", 1) == 1, what="the first attempt")
        assert manager.states("a") == {1: (State.LOADING, None)}  # waiting to retry, not blocking this
        manager.set_aspired("a", {})  # gone from the file system: the retries are cancelled
        wait_until(lambda: manager.states("a")[1][0] == State.END, what="the retry to be cancelled")
        assert manager.states("a")[1][1].message == "fake load failure of a 1"
        assert loader.count("a", 1) == 1
        started = manager.set_aspired("b", {1: "/b/1"})
        assert manager.wait(started, timeout=30) and manager.available_versions("b") == [1]
    finally:
        manager.unload_all()


def test_unloads_keep_a_serving_version_until_the_new_one_is_available():
    gate = threading.Event()
    loader = FakeLoader(gates={("a", 2): gate})
    manager = Manager(loader, num_load_threads=1, num_unload_threads=1)
    try:
        reconcile(manager, "a", {1: "/a/1"})
        manager.set_aspired("a", {2: "/a/2"})
        wait_until(lambda: loader.count("a", 2) == 1, what="the load of version 2")
        with manager.handle("a") as servable:
            assert servable.version == 1
        gate.set()
        wait_until(lambda: manager.states("a") == {1: (State.END, None), 2: (State.AVAILABLE, None)},
                   what="version 2 to replace 1")
    finally:
        gate.set()
        manager.unload_all()


@pytest.mark.parametrize("num_load_threads", [0, 2])
def test_a_reload_does_not_wait_for_a_load_waiting_to_retry(tmp_path, num_load_threads):
    """The scenario: version 2 of `a` fails and waits 600 s to retry; the old version keeps serving,
    GetModelStatus, polls and a reload answer at once, and (with load threads) a new model loads."""
    loader = FakeLoader(failing={("a", 2)})
    core = ServerCore(loader, max_load_retries=3, retry_interval_seconds=600,
                      num_load_threads=num_load_threads)
    try:
        config = make_config(tmp_path, ("a", [1], None))
        core.reload(config, initial=True)
        os.makedirs(tmp_path / "a" / "2")
        poll = threading.Thread(target=core.poll_file_system, daemon=True)
        poll.start()
        wait_until(lambda: loader.count("a", 2) == 1, what="the first attempt at a/2")
        poll.join(20)
        assert not poll.is_alive()  # the poll did not wait for the load
        assert core.manager.states("a") == {1: (State.AVAILABLE, None), 2: (State.LOADING, None)}
        with core.manager.handle("a") as servable:
            assert servable.version == 1
        same = threading.Thread(target=core.reload, args=(config,), daemon=True)  # nothing new to load
        same.start()
        same.join(20)
        assert not same.is_alive()
        if num_load_threads:
            bigger = make_config(tmp_path, ("a", [1], None), ("b", [1], None))
            reload = threading.Thread(target=core.reload, args=(bigger,), daemon=True)
            reload.start()
            reload.join(20)
            assert not reload.is_alive()
            assert core.manager.available_versions("b") == [1]
        assert loader.count("a", 2) == 1
    finally:
        core.manager.unload_all()


def test_a_queued_load_no_longer_aspired_is_dropped():
    gate = threading.Event()
    loader = FakeLoader(gates={("a", 1): gate})
    manager = Manager(loader, num_load_threads=0)
    try:
        manager.set_aspired("a", {1: "/a/1"})
        wait_until(lambda: loader.count("a", 1) == 1, what="the load of a to start")
        manager.set_aspired("b", {1: "/b/1"})
        manager.set_aspired("b", {})
        gate.set()
        wait_until(lambda: manager.available_versions("a") == [1], what="a")
        assert manager.states("b") == {1: (State.END, None)} and loader.count("b", 1) == 0
    finally:
        gate.set()
        manager.unload_all()


def test_version_folders_are_whole_int64_names_of_folders(tmp_path):
    """source.version_folders, as TF Serving's safe_strto64 reads folder names: leading zeros and spaces are
    allowed, anything else (v1, 1.5, assets, a number past int64) and files are passed over."""
    for name in ("1", "0002", " 7", "-3", "v1", "1.5", "assets", "9223372036854775808", "9223372036854775807",
                 "-9223372036854775808", "-9223372036854775809"):  # int64's least fits; one less does not
        (tmp_path / name).mkdir()
    (tmp_path / "4").write_text("a file")
    found = source.version_folders("m", str(tmp_path))
    assert found == {1: str(tmp_path / "1"), 2: str(tmp_path / "0002"), 7: str(tmp_path / " 7"),
                     -3: str(tmp_path / "-3"), 2**63 - 1: str(tmp_path / "9223372036854775807"),
                     -2**63: str(tmp_path / "-9223372036854775808")}


@pytest.mark.parametrize("policy, wanted", [
    ("", [3]),  # none set: the latest
    ("latest {}", [3]),  # num_versions 0 counts as 1
    ("latest { num_versions: 2 }", [2, 3]),
    ("latest { num_versions: 9 }", [1, 2, 3]),
    ("all {}", [1, 2, 3]),
    ("specific { versions: 1 versions: 5 }", [1]),  # 5 is not on disk: logged, left out
    ("specific { versions: 3 versions: 2 }", [2, 3]),
])
def test_the_version_policy_picks_from_the_folders_on_disk(tmp_path, policy, wanted, caplog):
    from google.protobuf import text_format

    for version in ("1", "2", "3", "assets"):
        (tmp_path / version).mkdir()
    config = text_format.Parse(f'name: "m" base_path: "{tmp_path}" model_version_policy {{ {policy} }}',
                               model_server_config_pb2.ModelConfig())
    assert source.aspired_versions(config) == {v: str(tmp_path / str(v)) for v in wanted}
    missing = "Version 5 of servable m, which was requested to be served as a 'specific' version"
    assert (missing in caplog.text) == ("versions: 5" in policy)


def test_no_version_on_disk_is_an_empty_set_and_a_warning(tmp_path, caplog):
    config = model_server_config_pb2.ModelConfig(name="m", base_path=str(tmp_path))
    (tmp_path / "v1").mkdir()
    assert source.aspired_versions(config) == {}
    assert f"No versions of servable m found under base path {tmp_path}." in caplog.text


def test_a_version_aspired_again_while_it_unloads_is_loaded_afresh_once_unloaded(caplog):
    """A request holds version 1 while a reload drops it (it stays UNLOADING, quiescing), and the next
    reload wants it back: the old servable is closed once the request ends, then a new load serves it."""
    import logging

    caplog.set_level(logging.INFO, logger="tensorflow_serving")
    loader = FakeLoader()
    manager = Manager(loader, max_load_retries=0, retry_interval_seconds=0)
    reconcile(manager, "m", {1: "/m/1"})
    with manager.handle("m", 1) as first:
        manager.set_aspired("m", {2: "/m/2"})
        wait_until(lambda: manager.states("m").get(1, (None,))[0] == State.UNLOADING, what="version 1 to unload")
        manager.set_aspired("m", {1: "/m/1"})  # wanted again while the request still holds it
        assert manager.states("m")[1][0] == State.UNLOADING and not first.closed
    wait_until(lambda: manager.available_versions("m") == [1], what="version 1 loaded afresh")
    assert first.closed and loader.count("m", 1) == 2
    with manager.handle("m", 1) as second:
        assert second is not first and not second.closed
    assert "Done quiescing servable version {name: m version: 1}" in caplog.text
    assert "Done unloading servable version {name: m version: 1}" in caplog.text
