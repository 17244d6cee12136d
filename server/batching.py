"""Server-side batching (--enable_batching): concurrent runs of one signature merged into one.

As TF Serving's BatchingSession: requests to the same version with the same feeds and fetches
queue up; a batch thread takes up to max_batch_size rows (waiting at most batch_timeout_micros
after the first), concatenates the inputs along the 0th dimension (padded to the next of
allowed_batch_sizes), runs the session once and hands each request its own rows back.
"""

import collections
import math
import threading
import time

import grpc
import numpy as np

from . import local_protos, status

BatchingParameters = local_protos.BatchingParameters


class Options:
    """The parameters in effect, with TF Serving's defaults for what the file leaves out."""

    def __init__(self, parameters=None, cpus=1):
        p = parameters or BatchingParameters()

        def value(name, default):
            return getattr(p, name).value if p.HasField(name) else default

        self.max_batch_size = value("max_batch_size", 1000)
        self.batch_timeout_micros = value("batch_timeout_micros", 0)
        self.max_enqueued_batches = value("max_enqueued_batches", 10)
        self.num_batch_threads = value("num_batch_threads", cpus)
        self.allowed_batch_sizes = list(p.allowed_batch_sizes)
        self.pad_variable_length_inputs = p.pad_variable_length_inputs
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be positive")
        if self.allowed_batch_sizes:
            if self.allowed_batch_sizes != sorted(set(self.allowed_batch_sizes)):
                raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
            if self.allowed_batch_sizes[-1] != self.max_batch_size:
                raise ValueError("The last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                                 f"{self.allowed_batch_sizes[-1]}; expected {self.max_batch_size}")


class _Task:
    __slots__ = ("feeds", "size", "done", "result", "error", "arrived")

    def __init__(self, feeds, size):
        self.feeds, self.size = feeds, size
        self.done = threading.Event()
        self.result = self.error = None
        self.arrived = time.monotonic()


class _Queue:
    """The tasks of one (feeds, fetches) signature of one version, and the threads that batch them."""

    def __init__(self, run, fetch_names, options):
        self._run, self._fetch_names, self._options = run, fetch_names, options
        self._tasks = collections.deque()
        self._rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True, name="batch") for _ in
                         range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, task):
        o = self._options
        if task.size > o.max_batch_size:
            raise status.invalid_argument(
                f"Task size {task.size} is larger than maximum input batch size {o.max_batch_size}")
        with self._cond:
            if self._closed:
                raise status.ServingError(grpc.StatusCode.UNAVAILABLE, "The batch scheduler is shut down")
            if math.ceil((self._rows + task.size) / o.max_batch_size) > o.max_enqueued_batches:
                raise status.ServingError(grpc.StatusCode.UNAVAILABLE,
                                          "The batch scheduling queue to which this task was submitted is full")
            self._tasks.append(task)
            self._rows += task.size
            self._cond.notify()

    def _take(self):
        """The next batch: up to max_batch_size rows, once full or batch_timeout_micros after its first task."""
        o = self._options
        with self._cond:
            while True:
                if self._closed and not self._tasks:
                    return None
                if self._tasks:
                    due = self._tasks[0].arrived + o.batch_timeout_micros / 1e6
                    wait = due - time.monotonic()
                    if self._rows >= o.max_batch_size or wait <= 0 or self._closed:
                        break
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            batch, rows = [], 0
            while self._tasks and rows + self._tasks[0].size <= o.max_batch_size:
                task = self._tasks.popleft()
                batch.append(task)
                rows += task.size
            self._rows -= rows
            if self._tasks:
                self._cond.notify()
            return batch

    def _work(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                outputs = self._run_batch(batch)
            except status.ServingError as e:
                for task in batch:
                    task.error = e
                    task.done.set()
                continue
            except Exception as e:  # a batch thread must not die
                for task in batch:
                    task.error = status.unknown(str(e))
                    task.done.set()
                continue
            start = 0
            for task in batch:
                task.result = [o[start:start + task.size] for o in outputs]
                start += task.size
                task.done.set()

    def _run_batch(self, batch):
        rows = sum(t.size for t in batch)
        padded = self._padded_size(rows)
        names = [name for name, _ in batch[0].feeds]
        merged = []
        for i, name in enumerate(names):
            parts = [t.feeds[i][1] for t in batch]
            parts = self._pad_dims(parts)
            if padded > rows:  # repeat the first row, as TF Serving pads a batch
                parts.append(np.repeat(parts[0][:1], padded - rows, axis=0))
            try:
                merged.append((name, np.concatenate(parts, axis=0)))
            except ValueError:
                raise status.invalid_argument(
                    "Batching session Run() input tensors must have equal dimensions other than the 0th "
                    "(set pad_variable_length_inputs to pad them)") from None
        outputs = [np.asarray(o) for o in self._run(merged, self._fetch_names)]
        for output in outputs:
            if output.ndim == 0 or output.shape[0] != padded:
                raise status.invalid_argument(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
                    "of the input tensors")
        return outputs

    def _padded_size(self, rows):
        for size in self._options.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows

    def _pad_dims(self, parts):
        if not self._options.pad_variable_length_inputs or len({p.shape[1:] for p in parts}) == 1:
            return parts
        target = tuple(max(sizes) for sizes in zip(*(p.shape[1:] for p in parts)))
        return [np.pad(p, [(0, 0)] + [(0, t - s) for s, t in zip(p.shape[1:], target)]) for p in parts]

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


class Batcher:
    """Batching for one servable version: a queue per (feeds, fetches)."""

    def __init__(self, run, options):
        self._run, self._options = run, options
        self._queues = {}
        self._lock = threading.Lock()

    def run(self, feeds, fetch_names):
        sizes = {np.shape(value)[0] if np.ndim(value) else None for _, value in feeds}
        if not feeds or None in sizes:  # nothing batchable (no inputs, or scalars): run as it is
            return self._run(feeds, fetch_names)
        if len(sizes) != 1:
            raise status.invalid_argument(
                "Batching session Run() input tensors must have equal 0th-dimension size")
        key = (tuple(name for name, _ in feeds), tuple(fetch_names))
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(self._run, list(fetch_names), self._options)
        task = _Task(feeds, sizes.pop())
        queue.submit(task)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def close(self):
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            queue.close()
