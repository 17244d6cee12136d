"""The manager: loads and unloads servable versions and hands them out to requests.

Each version moves START -> LOADING -> AVAILABLE -> UNLOADING -> END (or LOADING -> END with
the load error), the states of ModelVersionStatus. Requests hold a handle on an AVAILABLE
version; unloading waits for the handles to be released, so a reload never fails a request
already running. Entries are never forgotten (as TF Serving's ServableStateMonitor): an
unloaded version stays listed as END.
"""

import contextlib
import logging
import threading

from tensorflow_serving.apis import get_model_status_pb2

from . import status

log = logging.getLogger("tensorflow_serving.core")
State = get_model_status_pb2.ModelVersionStatus.State


def servable_id(name, version):
    return f"{{name: {name} version: {version}}}"


class VersionRecord:
    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.state = State.START
        self.error = None  # ServingError of a failed load
        self.servable = None
        self.handles = 0
        self.released = threading.Condition()


class Manager:
    def __init__(self, load_servable, max_load_retries=5, retry_interval_seconds=60.0):
        self._load_servable = load_servable  # (name, version, path) -> servable with .close()
        self._max_load_retries = max(0, max_load_retries)
        self._retry_interval = retry_interval_seconds
        self._records = {}  # name -> {version: VersionRecord}
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # cancels load retries

    # -- requests -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def handle(self, name, version=None):
        """The servable for Specific(name, version), or Latest(name) when version is None."""
        with self._lock:
            available = [r for r in self._records.get(name, {}).values() if r.state == State.AVAILABLE]
            if version is None:
                record = max(available, key=lambda r: r.version, default=None)
            else:
                record = next((r for r in available if r.version == version), None)
            if record is None:
                request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
                raise status.not_found(f"Servable not found for request: {request}")
            with record.released:
                record.handles += 1
        try:
            yield record.servable
        finally:
            with record.released:
                record.handles -= 1
                record.released.notify_all()

    # -- state --------------------------------------------------------------------------------

    def states(self, name):
        """{version: (state, error)} of every version ever seen for the model."""
        with self._lock:
            return {v: (r.state, r.error) for v, r in self._records.get(name, {}).items()}

    def state(self, name, version):
        with self._lock:
            record = self._records.get(name, {}).get(version)
            return None if record is None else record.state

    def available_versions(self, name):
        return sorted(v for v, (s, _) in self.states(name).items() if s == State.AVAILABLE)

    def _set(self, record, state, error=None):
        with self._lock:
            record.state = state
            record.error = error

    # -- load / unload (called by one thread at a time: the server core holds its lock) --------

    def load(self, name, version, path):
        """Load one version; on failure retry as TF Serving does, then end in END with the error."""
        record = VersionRecord(name, version)
        with self._lock:
            self._records.setdefault(name, {})[version] = record
        sid = servable_id(name, version)
        log.info("Approving load for servable version %s", sid)
        self._set(record, State.LOADING)
        log.info("Loading servable version %s", sid)
        attempt = 0
        while True:
            try:
                servable = self._load_servable(name, version, path)
                break
            except Exception as e:  # a broken SavedModel must not take the server down
                error = e if isinstance(e, status.ServingError) else _load_error(e)
                log.error("Loading servable: %s failed: %s", sid, error)
                if attempt >= self._max_load_retries or self.stopping.is_set():
                    if attempt:
                        log.info("Retrying of Loading servable: %s exhausted max_num_retries: %d",
                                 sid, self._max_load_retries)
                    log.error("Encountered an error for servable version %s: %s", sid, error)
                    self._set(record, State.END, error)
                    return False
                attempt += 1
                if self.stopping.wait(self._retry_interval):
                    log.info("Retrying of Loading servable: %s was cancelled.", sid)
                    self._set(record, State.END, error)
                    return False
                log.info("Retrying of Loading servable: %s retry: %d", sid, attempt)
        with self._lock:
            record.servable = servable
            record.state = State.AVAILABLE
        log.info("Successfully loaded servable version %s", sid)
        return True

    def unload(self, name, version):
        with self._lock:
            record = self._records.get(name, {}).get(version)
            if record is None or record.state != State.AVAILABLE:
                return
            record.state = State.UNLOADING  # no new handles from here on
        sid = servable_id(name, version)
        log.info("Quiescing servable version %s", sid)
        with record.released:
            record.released.wait_for(lambda: record.handles == 0)
        log.info("Done quiescing servable version %s", sid)
        log.info("Unloading servable version %s", sid)
        record.servable.close()
        with self._lock:
            record.servable = None
            record.state = State.END
        log.info("Done unloading servable version %s", sid)

    def reconcile(self, name, aspired):
        """Make the model's served versions match `aspired` ({version: path}), availability first.

        New versions load highest first; versions no longer aspired unload only once an aspired
        version is available (or none is aspired), keeping the newest old one otherwise, as TF
        Serving's AvailabilityPreservingPolicy does.
        """
        states = self.states(name)
        for version in sorted(aspired, reverse=True):
            if states.get(version, (None,))[0] not in (State.AVAILABLE, State.LOADING):
                self.load(name, version, aspired[version])
        available = self.available_versions(name)
        old = [v for v in available if v not in aspired]
        if aspired and not any(v in aspired for v in available):
            old = old[:-1]  # nothing aspired is serving: keep the newest old version serving
        for version in old:
            self.unload(name, version)

    def unload_all(self):
        log.info("Unload all remaining servables in the manager.")
        with self._lock:
            names = list(self._records)
        for name in names:
            for version in self.available_versions(name):
                self.unload(name, version)


def _load_error(error):
    """A load failure as TF Serving reports it: a TF error keeps its code, anything else is UNKNOWN."""
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        return status.from_tf_error(error)
    if isinstance(error, OSError):
        return status.not_found(str(error))
    return status.unknown(f"{type(error).__name__}: {error}")
