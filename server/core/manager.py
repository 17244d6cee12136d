"""The manager: loads and unloads servable versions and hands them out to requests.

Each version moves START -> LOADING -> AVAILABLE -> UNLOADING -> END (or LOADING -> END with
the load error), the states of ModelVersionStatus. Requests hold a handle on an AVAILABLE
version; unloading waits for the handles to be released, so a reload never fails a request
already running. Entries are never forgotten (as TF Serving's ServableStateMonitor): an
unloaded version stays listed as END.
"""

import collections
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tensorflow_serving.apis import get_model_status_pb2

from ..util import status

log = logging.getLogger("tensorflow_serving.core")
State = get_model_status_pb2.ModelVersionStatus.State
STOP_POLL_SECONDS = 0.1  # how soon wait() sees a stop requested (request_stop)
# At a stop, after the front doors' grace: how long a version waits for the requests holding it to let go
# before it is left loaded (the process is leaving; those requests' runs cannot be interrupted).
QUIESCE_AT_STOP_SECONDS = 1.0
# What a stop left running (Manager.unload_all): model loads, and requests still holding a version.
Leftover = collections.namedtuple("Leftover", "loads requests")


def servable_id(name, version):
    return f"{{name: {name} version: {version}}}"


class VersionRecord:
    def __init__(self, name, version, path=None):
        self.name = name
        self.version = version
        self.path = path
        self.state = State.START
        self.error = None  # ServingError of a failed load
        self.servable = None
        self.handles = 0
        self.released = threading.Condition()
        self.cancel = threading.Event()  # set when the version is no longer aspired: stops load retries
        self.reload_after_unload = False  # aspired again while unloading: a new load once it ends


class _Inline:
    """The executor for 0 threads: the work runs in the manager's own loop (basic_manager.cc)."""

    def submit(self, fn, *args):
        fn(*args)

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _executor(threads, prefix):
    return ThreadPoolExecutor(threads, thread_name_prefix=prefix) if threads > 0 else _Inline()


class Manager:
    """As TF Serving's AspiredVersionsManager over a BasicManager: the source sets each model's aspired
    versions (set_aspired, which never blocks); one manager thread decides what to load and unload
    (AvailabilityPreservingPolicy) and runs the loads on `num_load_threads` threads and the unloads on
    `num_unload_threads` threads, or itself when the count is 0 (basic_manager.cc's inline executor)."""

    def __init__(self, load_servable, max_load_retries=5, retry_interval_seconds=60.0,
                 num_load_threads=0, num_unload_threads=0):
        self._load_servable = load_servable  # (name, version, path) -> servable with .close()
        self._max_load_retries = max(0, max_load_retries)
        self._retry_interval = retry_interval_seconds
        self._records = {}  # name -> {version: VersionRecord}
        self._aspired = {}  # name -> {version: path} the source last asked for
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # aspired sets or states changed
        self._load_executor = _executor(num_load_threads, "load")
        self._unload_executor = _executor(num_unload_threads, "unload")
        self._retired = []  # load pools replaced by set_num_load_threads
        self._thread = None
        self._closed = False
        self._loads_running = 0  # loads under way now (a load queued in a pool is not one yet)
        self.stopping = threading.Event()  # cancels load retries
        self.stop_requested = False  # a stop is asked for (request_stop): wait() returns

    def set_num_load_threads(self, threads):
        """Swap the load pool (load_servables_fast.cc: many threads for the initial load, then fewer)."""
        with self._lock:
            # the old pool is shut down at unload_all: the manager thread may be handing it work now
            self._retired.append(self._load_executor)
            self._load_executor = _executor(threads, "load")

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
            self._changed.notify_all()

    # -- the source's side --------------------------------------------------------------------

    def set_aspired(self, name, aspired):
        """The versions ({version: path}) the model should serve now; returns at once.

        Returns the versions this call asked to load, for wait(). As aspired_versions_manager.cc's
        ProcessAspiredVersionsRequest: a version newly aspired gets a new entry (START) and is loaded;
        one still aspired keeps its entry, so a version whose load failed stays in END with its error
        and is not loaded again until it leaves the aspired set and comes back
        (enable_reload_servables_with_error is off); a version no longer aspired has its load retries
        cancelled (CancelLoadServableRetry).
        """
        started = []
        with self._lock:
            before = self._aspired.get(name, {})
            self._aspired[name] = dict(aspired)
            records = self._records.setdefault(name, {})
            for version, record in records.items():
                if version not in aspired:
                    record.cancel.set()
                    record.reload_after_unload = False
                    if record.state == State.START:  # never started: nothing to load any more
                        record.state = State.END
            for version, path in aspired.items():
                record = records.get(version)
                if version in before and record is not None:
                    continue
                if record is None or record.state == State.END:
                    records[version] = VersionRecord(name, version, path)
                    started.append((name, version))
                elif record.state == State.UNLOADING:
                    record.reload_after_unload = True
                    started.append((name, version))
                else:  # still loading or serving from before: it stays
                    record.cancel.clear()
            self._start_locked()
            self._changed.notify_all()
        return started

    def wait(self, versions=(), unloaded=(), timeout=None):
        """Wait until each (name, version) in `versions` is AVAILABLE or END, and every model in
        `unloaded` has nothing serving or unloading, or the server stops (request_stop); False on timeout."""
        def done():
            for name, version in versions:
                record = self._records.get(name, {}).get(version)
                if record is not None and (record.state not in (State.AVAILABLE, State.END)
                                           or record.reload_after_unload):
                    return False
            for name in unloaded:
                if any(r.state in (State.AVAILABLE, State.UNLOADING) for r in self._records.get(name, {}).values()):
                    return False
            return True

        def finished():
            return done() or self._closed or self.stop_requested or self.stopping.is_set()

        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            # request_stop sets `stop_requested` without the lock or a notify: the wait looks every STOP_POLL s
            while not finished():
                left = STOP_POLL_SECONDS if end is None else min(STOP_POLL_SECONDS, end - time.monotonic())
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def request_stop(self):
        """The server is stopping: wait() returns within STOP_POLL_SECONDS (the loads under way cannot be
        interrupted; unload_all bounds the wait for them, and cancels load retries). Safe in a signal handler:
        a plain write (the main thread, which runs the handler, may hold the manager's lock, or an Event's)."""
        self.stop_requested = True

    # -- the manager thread -------------------------------------------------------------------

    def _start_locked(self):
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="manager", daemon=True)
            self._thread.start()

    def _run(self):
        """As AspiredVersionsManager::ManageState: take the policy's actions until closed."""
        while True:
            with self._lock:
                actions = []
                while not self._closed:
                    actions = self._actions_locked()
                    if actions:
                        break
                    self._changed.wait()
                if self._closed:
                    return
                load_executor, unload_executor = self._load_executor, self._unload_executor
            for kind, record in actions:
                if kind == "load":
                    load_executor.submit(self._load, record)
                else:
                    unload_executor.submit(self._unload, record)

    def _unload_action(self, name):
        """The non-aspired versions to unload now (availability_preserving_policy.cc): all of them when
        nothing is aspired or an aspired version is serving, else all but the newest."""
        aspired = self._aspired.get(name, {})
        records = self._records.get(name, {})
        old = sorted(v for v, r in records.items() if r.state == State.AVAILABLE and v not in aspired)
        if aspired and not any(records[v].state == State.AVAILABLE for v in aspired if v in records):
            old = old[:-1]  # nothing aspired is serving: keep the newest old version serving
        return [records[v] for v in old]

    def _actions_locked(self):
        actions = []
        for name, records in self._records.items():
            for record in self._unload_action(name):
                record.state = State.UNLOADING  # no new handles from here on
                actions.append(("unload", record))
            aspired = self._aspired.get(name, {})
            for version in sorted(aspired, reverse=True):  # the highest new version first
                record = records.get(version)
                if record is not None and record.state == State.START:
                    record.state = State.LOADING
                    actions.append(("load", record))
        return actions

    def _load(self, record):
        """Load one version; on failure retry as TF Serving does, then end in END with the error."""
        with self._lock:
            self._loads_running += 1
        try:
            self._load_with_retries(record)
        finally:
            with self._lock:
                self._loads_running -= 1
                self._changed.notify_all()

    def _load_with_retries(self, record):
        name, version = record.name, record.version
        sid = servable_id(name, version)
        log.info("Approving load for servable version %s", sid)
        log.info("Loading servable version %s", sid)
        attempt = 0
        while True:
            try:
                servable = self._load_servable(name, version, record.path)
                break
            except Exception as e:  # a broken SavedModel must not take the server down
                error = e if isinstance(e, status.ServingError) else _load_error(e)
                log.error("Loading servable: %s failed: %s", sid, error)
                cancelled = self.stopping.is_set() or record.cancel.is_set()
                if attempt >= self._max_load_retries or cancelled:
                    if attempt and not cancelled:
                        log.info("Retrying of Loading servable: %s exhausted max_num_retries: %d",
                                 sid, self._max_load_retries)
                    log.error("Encountered an error for servable version %s: %s", sid, error)
                    self._set(record, State.END, error)
                    return
                attempt += 1
                # loader_harness.cc: wait between retries, cancelled by CancelLoadServableRetry or
                # shutdown; no lock is held meanwhile.
                if self._wait_cancel(record):
                    log.info("Retrying of Loading servable: %s was cancelled.", sid)
                    log.error("Encountered an error for servable version %s: %s", sid, error)
                    self._set(record, State.END, error)
                    return
                log.info("Retrying of Loading servable: %s retry: %d", sid, attempt)
        with self._lock:
            closed = self._closed
            if not closed:
                record.servable = servable
                record.state = State.AVAILABLE
            else:
                record.state = State.END
            self._changed.notify_all()
        if closed:
            servable.close()
            return
        log.info("Successfully loaded servable version %s", sid)

    def _wait_cancel(self, record):
        deadline = time.monotonic() + self._retry_interval
        while not (record.cancel.is_set() or self.stopping.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            record.cancel.wait(min(left, 0.1))
        return True

    def _unload(self, record, quiesce_wait=None):
        """Unload `record` once no request holds it; with `quiesce_wait` (a stop), only if that comes within so
        many seconds: a request the front doors gave up on may run on (its run cannot be interrupted)."""
        sid = servable_id(record.name, record.version)
        log.info("Quiescing servable version %s", sid)
        with record.released:
            if not record.released.wait_for(lambda: record.handles == 0, quiesce_wait):
                log.info("Servable version %s is still in use after the grace; left loaded.", sid)
                return record.handles
        log.info("Done quiescing servable version %s", sid)
        log.info("Unloading servable version %s", sid)
        try:
            record.servable.close()
        except Exception as e:  # the version is gone either way; the manager thread must go on
            log.error("Unloading servable version %s failed: %s", sid, e)
        with self._lock:
            record.servable = None
            record.state = State.END
            if record.reload_after_unload and record.version in self._aspired.get(record.name, {}):
                # aspired again while it was unloading: a new entry, loaded afresh
                self._records[record.name][record.version] = VersionRecord(
                    record.name, record.version, self._aspired[record.name][record.version])
            record.reload_after_unload = False
            self._changed.notify_all()
        log.info("Done unloading servable version %s", sid)
        return 0

    def unload_all(self, load_wait=None):
        """At shutdown: stop the manager thread, then unload every serving version here.

        A load cannot be interrupted (TensorFlow's, or a warmup's runs): those under way get `load_wait` seconds
        (None: as long as they take) to end, and those queued are dropped. A version still held by requests then
        gets QUIESCE_AT_STOP_SECONDS (with `load_wait`; else as long as they take) before it is left loaded.
        Returns a Leftover: the loads and requests still running, which end with the process."""
        log.info("Unload all remaining servables in the manager.")
        self.stopping.set()
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        end = None if load_wait is None else time.monotonic() + load_wait  # one grace for the thread and the loads

        def left():
            return None if end is None else max(0.0, end - time.monotonic())

        if thread is not None:
            thread.join(30 if end is None else left())  # a load may run on it (no load threads)
        for executor in (*self._retired, self._load_executor):
            executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._changed.wait_for(lambda: self._loads_running == 0, left())
            loads_left = self._loads_running
        self._unload_executor.shutdown(wait=True)
        with self._lock:
            serving = [r for records in self._records.values() for r in records.values()
                       if r.state == State.AVAILABLE]
            for record in serving:
                record.state = State.UNLOADING
        requests_left = sum(self._unload(record, None if load_wait is None else QUIESCE_AT_STOP_SECONDS)
                            for record in serving)
        return Leftover(loads_left, requests_left)


def _load_error(error):
    """A load failure as TF Serving reports it: a TF error keeps its code, anything else is UNKNOWN."""
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        return status.from_tf_error(error)
    if isinstance(error, OSError):
        return status.not_found(str(error))
    return status.unknown(f"{type(error).__name__}: {error}")
