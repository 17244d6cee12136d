"""ServerCore: the served config, version labels, and the reload that recomputes the wanted set."""

import logging
import os
import threading

from tensorflow_serving.config import model_server_config_pb2

from ..util import status
from .manager import STOP_POLL_SECONDS, Manager, State, servable_id
from .source import aspired_versions

log = logging.getLogger("tensorflow_serving.model_servers")
SUPPORTED_PLATFORM = "tensorflow"


class ServerCore:
    def __init__(self, load_servable, allow_labels_for_unavailable=False, max_load_retries=5,
                 retry_interval_seconds=60.0, num_load_threads=0, num_unload_threads=0,
                 num_initial_load_threads=None, config_readers=()):
        """server_core.h: loads on num_load_threads threads (0: in the manager's own loop), unloads on
        num_unload_threads, and the initial load on num_initial_load_threads (None: 4 x CPUs).

        `config_readers`: what else serves a part of the config (the request logger, for the models'
        logging_config): each one's validate(config) runs before a reload changes anything, and its
        update(config) once the config is served."""
        self.manager = Manager(load_servable, max_load_retries, retry_interval_seconds,
                               num_load_threads, num_unload_threads)
        self._num_load_threads = num_load_threads
        self._num_initial_load_threads = (4 * (os.cpu_count() or 1) if num_initial_load_threads is None
                                          else num_initial_load_threads)
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.config = None  # the ModelServerConfig being served
        self._labels = {}  # model name -> {label: version}
        self.config_readers = tuple(config_readers)
        self._lock = threading.Lock()  # one reload or file-system poll at a time

    # -- requests -----------------------------------------------------------------------------

    def handle(self, model_spec):
        """A handle on the servable a ModelSpec asks for (version, label or latest)."""
        name = model_spec.name
        if not name:
            raise status.invalid_argument("ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        version = None
        if choice == "version":
            version = model_spec.version.value
        elif choice == "version_label":
            version = self._labels.get(name, {}).get(model_spec.version_label)
            if version is None:
                raise status.invalid_argument(
                    f"Unrecognized servable version label: {model_spec.version_label}")
        return self.manager.handle(name, version)

    def model_names(self):
        return [] if self.config is None else [c.name for c in self.config.model_config_list.config]

    # -- config -------------------------------------------------------------------------------

    def reload(self, config, initial=False, wait_for_versions=True):
        """Serve `config` in place of the current one; an invalid or failing config changes nothing.

        Validates everything first (as TF Serving: list type, duplicates, absolute paths, platform,
        labels on available versions), loads what is new, then swaps the config and labels in and
        unloads what is no longer wanted. A model new in the config that does not become available
        fails the reload and what it loaded is unloaded again.

        It waits for the versions it asks to load and for the unloads of the models it drops; not for
        a load already under way (a load waiting to retry goes on in the manager meanwhile).
        """
        if initial:  # load_servables_fast.cc: the initial load on its own, larger pool
            self.manager.set_num_load_threads(self._num_initial_load_threads)
        try:
            self._reload(config, initial, wait_for_versions)
        finally:
            if initial:
                self.manager.set_num_load_threads(self._num_load_threads)

    def _reload(self, config, initial, wait_for_versions):
        with self._lock:
            self._validate(config, initial)
            if config.WhichOneof("config") is None:
                log.info("Taking no action for empty config.")
                return
            log.info("Adding/updating models.")
            models = list(config.model_config_list.config)
            wanted = {}
            for model in models:
                log.info(" (Re-)adding model: %s", model.name)
                wanted[model.name] = aspired_versions(model)
            if initial and wait_for_versions:
                wanted = self._wait_for_versions(models, wanted)
            old_names = set(self.model_names())
            started = []
            for model in models:
                started += self.manager.set_aspired(model.name, wanted[model.name])
            self.manager.wait(started)
            failed = [m.name for m in models
                      if m.name not in old_names and not self.manager.available_versions(m.name)]
            if failed:
                error = self._unavailable_error(failed, wanted, initial)
                if self.config is not None:  # put the old wanted set back
                    self._apply_policy(self.config, unload=set(wanted) - old_names)
                    self.manager.wait(unloaded=set(wanted) - old_names)
                raise error
            self.config = config
            self._labels = {m.name: dict(m.version_labels) for m in models}
            for reader in self.config_readers:
                reader.update(config)
            for name in old_names - set(wanted):
                self.manager.set_aspired(name, {})
            self.manager.wait(unloaded=old_names - set(wanted))
            log.info("Finished adding/updating models")

    def poll_file_system(self):
        """Pick up version folders added or removed since the last poll."""
        with self._lock:
            if self.config is not None:
                self._apply_policy(self.config)

    def _apply_policy(self, config, unload=()):
        for model in config.model_config_list.config:
            try:
                wanted = aspired_versions(model)
            except status.ServingError as e:
                log.error("FileSystemStoragePathSource encountered a filesystem access error: %s", e.message)
                continue
            self.manager.set_aspired(model.name, wanted)  # the manager loads and unloads in its own time
        for name in unload:
            self.manager.set_aspired(name, {})

    def _wait_for_versions(self, models, wanted):
        """At start-up TF Serving waits for a model with no version folder yet; so do we."""
        polls = round(1.0 / STOP_POLL_SECONDS)
        while any(not wanted[m.name] for m in models):
            for _ in range(polls):  # a second between looks, watching for a stop (request_stop: a plain flag)
                if self.manager.stop_requested or self.manager.stopping.wait(STOP_POLL_SECONDS):
                    return wanted
            for model in models:
                if not wanted[model.name]:
                    wanted[model.name] = aspired_versions(model)
        return wanted

    def _unavailable_error(self, names, wanted, initial):
        parts = []
        for name in names:
            states = self.manager.states(name)
            versions = sorted(wanted[name]) or [None]
            for version in versions:
                if version is None:
                    parts.append(f"{{name: {name}}}")
                    continue
                error = states.get(version, (None, None))[1]
                detail = "" if (initial or error is None) else f" due to error: {error}"
                parts.append(f"{{{servable_id(name, version)[1:-1]}{detail}}}")
        if initial:
            return status.unknown("Some models did not become available: {" +
                                  "".join(f"{p}, " for p in parts) + "}")
        return status.unknown(f"{len(names)} model(s) did not become available: {{" +
                              "".join(f"{p}, " for p in parts) + "}")

    def _validate(self, config, initial):
        kind = config.WhichOneof("config")
        if not initial and kind != "model_config_list":
            raise status.invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported")
        if kind == "custom_model_config":
            raise status.failed_precondition(
                "Cannot transition to requested config. It is only legal to transition from one "
                "ModelConfigList to another.")
        if kind is None:
            return
        seen = set()
        old = {} if self.config is None else {c.name: c for c in self.config.model_config_list.config}
        for model in config.model_config_list.config:
            if model.name in seen:
                raise status.invalid_argument(
                    f"Illegal to list model {model.name} multiple times in config list")
            seen.add(model.name)
            if not _is_absolute(model.base_path):
                raise status.invalid_argument(
                    f"Expected model {model.name} to have an absolute path or URI; "
                    f"got base_path()={model.base_path}")
            platform = _platform(model)
            if model.name in old and _platform(old[model.name]) != platform:
                raise status.invalid_argument(
                    f"Illegal to change a model's platform. For model {model.name} platform was "
                    f"{_platform(old[model.name])} and new platform requested is {platform}")
            if platform != SUPPORTED_PLATFORM:
                raise status.invalid_argument(
                    f"Model {model.name} requests unsupported platform {platform}")
        for model in config.model_config_list.config:
            current = self._labels.get(model.name, {})
            for label, version in sorted(model.version_labels.items()):
                allow = self.allow_labels_for_unavailable and current.get(label, version) == version
                if not allow and self.manager.state(model.name, version) != State.AVAILABLE:
                    raise status.failed_precondition(
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference")
        for model in config.model_config_list.config:  # checked last: it reads the file system
            aspired_versions(model)
        for reader in self.config_readers:
            reader.validate(config)


def _is_absolute(path):
    return os.path.isabs(path) or "://" in path


def _platform(model):
    if model.model_type and model.model_platform:
        raise status.invalid_argument(
            "Illegal setting both ModelServerConfig::model_type (deprecated) and "
            "ModelServerConfig::model_platform.")
    if model.model_platform:
        return model.model_platform
    if model.model_type == model_server_config_pb2.TENSORFLOW:
        return SUPPORTED_PLATFORM
    if model.model_type:
        raise status.invalid_argument(f"ModelServerConfig::model_type choice {model.model_type} not supported.")
    raise status.invalid_argument(
        "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
        "ModelServerConfig::model_platform.")
