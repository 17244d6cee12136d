"""Server-side batching (--enable_batching): concurrent runs of one signature merged into one.

As TF Serving's BatchingSession on TensorFlow's SharedBatchScheduler
(tensorflow_serving/batching/batching_session.cc, servables/tensorflow/bundle_factory_util.*,
tensorflow/core/kernels/batching_util/shared_batch_scheduler.h):

- one `Scheduler` per server: `num_batch_threads` threads shared by every model's queues, taking
  batches from them in turn;
- one queue per (feeds, fetches) signature of a loaded version. A task (one request's rows) joins
  the open batch if it fits, else the open batch is closed and a new one opened; a closed batch, or
  the open one once full or `batch_timeout_micros` after its first task, is run by the next free
  thread. With `enable_large_batch_splitting`, a task larger than the open batch's room is split
  to fill it, the rest in batches of `max_execution_batch_size`;
- a batch's inputs are concatenated along the 0th dimension, padded to the next of
  `allowed_batch_sizes` by repeating the first row, run once, and each task gets its rows back;
- a task brings its request's run timeout (the gRPC deadline, or --rest_api_timeout_in_ms). A batch
  whose tasks all outlived theirs in the queue is not run: each gets RESOURCE_EXHAUSTED "Run() timeout
  exceeded while waiting in batching queue". Else the run is bounded by the latest task deadline, and
  by none if a task has no timeout (batching_session.cc, ProcessBatch).
"""

import collections
import concurrent.futures
import threading
import time

import grpc
import numpy as np

from ..util import deadlines, local_protos, status
from . import tensors
from ..util.metrics import METRICS

BatchingParameters = local_protos.BatchingParameters

DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"  # model_servers/server.cc, with no parameters file
FILE_THREAD_POOL_NAME = "batch_threads"  # SharedBatchScheduler::Options' default, when the file names none


class Options:
    """The parameters in effect, with TF Serving's defaults for what the file leaves out."""

    def __init__(self, parameters=None, cpus=1):
        p = parameters or BatchingParameters()

        def value(name, default):
            return getattr(p, name).value if p.HasField(name) else default

        self.max_batch_size = value("max_batch_size", 1000)  # the largest task (input_batch_size_limit)
        self.batch_timeout_micros = value("batch_timeout_micros", 0)
        self.max_enqueued_batches = value("max_enqueued_batches", 10)
        self.num_batch_threads = value("num_batch_threads", cpus)
        self.thread_pool_name = value("thread_pool_name",
                                      FILE_THREAD_POOL_NAME if parameters is not None else DEFAULT_THREAD_POOL_NAME)
        self.large_batch_splitting = value("enable_large_batch_splitting", False)
        # bundle_factory_util.h GetQueueOptions: max_execution_batch_size counts only with splitting
        self.max_execution_batch_size = value("max_execution_batch_size", self.max_batch_size) \
            if self.large_batch_splitting else self.max_batch_size
        self.allowed_batch_sizes = list(p.allowed_batch_sizes)
        self.pad_variable_length_inputs = p.pad_variable_length_inputs
        if self.max_batch_size < 1:
            raise ValueError(f"input_batch_size_limit must be positive; was {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}")
        if self.max_enqueued_batches < 1:
            raise ValueError(f"max_enqueued_batches must be positive; was {self.max_enqueued_batches}")
        if self.num_batch_threads < 1:
            raise ValueError(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if self.large_batch_splitting and not 1 <= self.max_execution_batch_size <= self.max_batch_size:
            raise ValueError("When enable_large_batch_splitting is true, input_batch_size_limit must be greater "
                             "than or equal to max_execution_batch_size.")
        if self.allowed_batch_sizes:
            if self.allowed_batch_sizes != sorted(set(self.allowed_batch_sizes)):
                raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
            if self.allowed_batch_sizes[-1] != self.max_batch_size:  # bundle_factory_util.cc
                raise ValueError("Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                                 f"{self.allowed_batch_sizes[-1]}; expected {self.max_batch_size}")

    def padded_size(self, rows):
        """The batch size a batch of `rows` runs at: the next allowed size (RoundToLowestAllowedBatchSize)."""
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows


class _Task:
    """One request's run: its feeds, and `future`, which gets its outputs once every piece of it has run.

    `future` is a concurrent.futures.Future, or, for a waiter on an event loop, an asyncio.Future of that
    loop: the batch thread then settles all of a batch's futures of one loop in one call to the loop."""

    __slots__ = ("feeds", "size", "deadline", "future", "loop", "_parts", "_waiting", "_error")

    def __init__(self, feeds, size, timeout_ms=0, loop=None):
        self.feeds, self.size = feeds, size
        # when its run timeout ends, on time.monotonic()'s clock, counted from its enqueueing; None: no timeout
        self.deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else None
        self.loop = loop
        if loop is None:
            self.future = concurrent.futures.Future()
            # Running from the start: cancelling it (a waiter that gave up) cannot take it out of a batch,
            # and the batch thread's set_result never meets a cancelled future.
            self.future.set_running_or_notify_cancel()
        else:
            self.future = loop.create_future()  # submit() runs on the loop's thread
        self._parts, self._waiting, self._error = None, 0, None

    def pieces(self, first, rest):
        """This task as pieces: `first` rows (if any), then `rest` at a time (SplitInputTask)."""
        sizes, left = [], self.size
        if 0 < first < left:
            sizes.append(first)
            left -= first
        while left > 0:
            sizes.append(min(rest, left))
            left -= sizes[-1]
        if len(sizes) == 1:
            return [_Piece(self, 0, 0, self.size, self.feeds)]
        self._parts, self._waiting = [None] * len(sizes), len(sizes)
        pieces, start = [], 0
        for index, size in enumerate(sizes):
            feeds = [(name, value[start:start + size]) for name, value in self.feeds]
            pieces.append(_Piece(self, index, start, size, feeds))
            start += size
        return pieces

    def finish(self, index, outputs, error):
        """A piece ran (`outputs`, its rows of each fetch) or failed (`error`). Once the last one has,
        (outputs, error) of the whole task, for _settle; before, None."""
        if self._parts is None:
            return outputs, error
        with _PIECES_LOCK:
            if error is not None and self._error is None:
                self._error = error
            self._parts[index] = outputs
            self._waiting -= 1
            last = self._waiting == 0
        if not last:
            return None
        parts, self._parts = self._parts, None
        return None if self._error else [tensors.concat_rows(p) for p in zip(*parts)], self._error


def _settle(done):
    """Give each finished task of a batch its (outputs, error): a concurrent future at once; the asyncio
    futures of one loop in one call on that loop (one wake of it a batch, not one a request)."""
    by_loop = {}
    for task, outputs, error in done:
        if task.loop is None:
            _set(task.future, outputs, error)
        else:
            by_loop.setdefault(task.loop, []).append((task.future, outputs, error))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_all, settled)
        except RuntimeError:  # the loop is closed: the server has stopped, and nobody waits any more
            pass


def _set_all(settled):
    for future, outputs, error in settled:
        if not future.done():  # an asyncio future whose waiter gave up is cancelled
            _set(future, outputs, error)


def _set(future, outputs, error):
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outputs)


_PIECES_LOCK = threading.Lock()


class _Piece:
    __slots__ = ("task", "index", "start", "size", "feeds", "enqueued")

    def __init__(self, task, index, start, size, feeds):
        self.task, self.index, self.start, self.size, self.feeds = task, index, start, size, feeds
        self.enqueued = 0.0


class _Batch:
    __slots__ = ("pieces", "size", "started")

    def __init__(self):
        self.pieces, self.size, self.started = [], 0, 0.0


class _Queue:
    """The tasks of one (feeds, fetches) signature of one version; the scheduler's threads run its batches.

    All state is guarded by the scheduler's condition."""

    def __init__(self, scheduler, run, fetch_names, options):
        self._scheduler, self._run, self._fetch_names, self._options = scheduler, run, fetch_names, options
        self._batches = collections.deque([_Batch()])  # the last one is open
        self._processing = 0
        self.closed = False

    # -- under the scheduler's lock ------------------------------------------------------------

    def schedule(self, task):
        """Queue `task` (its pieces) or raise TF's error for it."""
        o, batches = self._options, self._batches
        if task.size > o.max_batch_size:
            raise status.invalid_argument(
                f"Task size {task.size} is larger than maximum input batch size {o.max_batch_size}")
        if self.closed:
            raise status.ServingError(grpc.StatusCode.UNAVAILABLE, "The batch scheduler is shut down")
        limit = o.max_execution_batch_size
        if o.large_batch_splitting:
            capacity = (o.max_enqueued_batches - len(batches)) * limit + limit - batches[-1].size
            if task.size > capacity:
                raise status.ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; task size is "
                    f"{task.size} but scheduling capacity is only {capacity} (num_enqueued_batches={len(batches)}, "
                    f"max_enqueued_batches={o.max_enqueued_batches}, open_batch_size={batches[-1].size}, "
                    f"max_execution_batch_size={limit})")
            pieces = task.pieces(limit - batches[-1].size, limit)
        else:
            if batches[-1].size + task.size > limit and len(batches) >= o.max_enqueued_batches:
                raise status.ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; currently "
                    f"{len(batches)} batches enqueued and max_enqueued_batches is {o.max_enqueued_batches}")
            pieces = task.pieces(0, task.size)
        now = time.monotonic()
        for piece in pieces:
            if batches[-1].size + piece.size > limit:
                batches.append(_Batch())  # closes the open one
            if not batches[-1].pieces:
                batches[-1].started = now
            piece.enqueued = now
            batches[-1].pieces.append(piece)
            batches[-1].size += piece.size

    def due(self, now):
        """0 if a batch can run now, the seconds until the open one can, or None (nothing queued)."""
        if len(self._batches) > 1:
            return 0.0
        open_batch = self._batches[-1]
        if not open_batch.pieces:
            return None
        if self.closed or open_batch.size >= self._options.max_execution_batch_size:
            return 0.0
        return max(open_batch.started + self._options.batch_timeout_micros / 1e6 - now, 0.0)

    def take(self):
        """The batch to run now (the caller checked `due`): the oldest closed one, or the open one."""
        if len(self._batches) == 1:
            self._batches.append(_Batch())
        self._processing += 1
        return self._batches.popleft()

    def num_enqueued_tasks(self):
        """Pieces waiting to run (BatchScheduler::NumEnqueuedTasks)."""
        return sum(len(batch.pieces) for batch in self._batches)

    def empty(self):
        return self._processing == 0 and len(self._batches) == 1 and not self._batches[0].pieces

    # -- on a batch thread, without the lock ---------------------------------------------------

    def process(self, batch):
        dequeued = time.monotonic()
        for piece in batch.pieces:
            METRICS.batch_queued(self._options.thread_pool_name, (dequeued - piece.enqueued) * 1e6)
        done = []
        try:
            try:
                outputs = self._run_batch(batch, self._timeout_ms(batch, dequeued))
            except Exception as e:  # a batch thread must not die; each task gets the error
                error = e if isinstance(e, status.ServingError) else status.unknown(str(e))
                for piece in batch.pieces:
                    self._finished(done, piece, None, error)
            else:
                start = 0
                for piece in batch.pieces:
                    self._finished(done, piece, [o[start:start + piece.size] for o in outputs], None)
                    start += piece.size
        finally:
            _settle(done)
            self._scheduler.processed(self)

    @staticmethod
    def _finished(done, piece, outputs, error):
        result = piece.task.finish(piece.index, outputs, error)
        if result is not None:
            done.append((piece.task, *result))

    @staticmethod
    def _timeout_ms(batch, now):
        """The batch's run timeout: the latest of its tasks' deadlines, stepped (0: no bound); raises
        RESOURCE_EXHAUSTED when every task's deadline passed in the queue (batching_session.cc)."""
        left = [piece.task.deadline for piece in batch.pieces
                if piece.task.deadline is None or piece.task.deadline > now]
        if not left:
            raise status.ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      "Run() timeout exceeded while waiting in batching queue")
        if None in left:
            return 0
        return deadlines.step_ms((max(left) - now) * 1000) or 0

    def _run_batch(self, batch, timeout_ms):
        rows = batch.size
        padded = self._options.padded_size(rows)
        names = [name for name, _ in batch.pieces[0].feeds]
        merged = []
        for i, name in enumerate(names):
            parts = self._pad_dims([p.feeds[i][1] for p in batch.pieces])
            if padded > rows:  # repeat the first row, as TF Serving pads a batch
                parts.append(np.repeat(parts[0][:1], padded - rows, axis=0))
            try:
                merged.append((name, parts[0] if len(parts) == 1 else tensors.concat_rows(parts)))
            except ValueError:
                raise status.invalid_argument(
                    "Batching session Run() input tensors must have equal dimensions other than the 0th "
                    "(set pad_variable_length_inputs to pad them)") from None
        METRICS.batch_run(padded, padded - rows)
        outputs = [np.asarray(o) for o in self._run(merged, self._fetch_names, timeout_ms)]
        for output in outputs:
            if output.ndim == 0 or output.shape[0] != padded:
                raise status.invalid_argument(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
                    "of the input tensors")
        return outputs

    def _pad_dims(self, parts):
        if not self._options.pad_variable_length_inputs or len({p.shape[1:] for p in parts}) == 1:
            return parts
        target = tuple(max(sizes) for sizes in zip(*(p.shape[1:] for p in parts)))
        return [np.pad(p, [(0, 0)] + [(0, t - s) for s, t in zip(p.shape[1:], target)]) for p in parts]


class Scheduler:
    """TensorFlow's SharedBatchScheduler: `num_threads` batch threads serving every queue in turn."""

    def __init__(self, num_threads):
        self._cond = threading.Condition()
        self._queues = []
        self._next = 0
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"batch-{i}")
                         for i in range(num_threads)]
        for thread in self._threads:
            thread.start()

    def add_queue(self, run, fetch_names, options):
        queue = _Queue(self, run, fetch_names, options)
        with self._cond:
            self._queues.append(queue)
        return queue

    def submit(self, queue, task):
        with self._cond:
            was = queue.due(time.monotonic())
            queue.schedule(task)
            # Wake a batch thread only when this task makes a batch due, or gives an idle queue its first
            # deadline; a task that just joins a waiting batch changes nothing a thread waits for.
            now = queue.due(time.monotonic())
            if now == 0.0 or was is None:
                self._cond.notify()

    def num_enqueued_tasks(self, queue):
        with self._cond:
            return queue.num_enqueued_tasks()

    def close_queue(self, queue):
        """Refuse new tasks, run what is queued, then drop the queue (QueueHandle's destructor)."""
        with self._cond:
            queue.closed = True
            self._cond.notify_all()
            while not queue.empty():
                self._cond.wait()
            self._queues.remove(queue)
            self._next = 0

    def processed(self, queue):
        with self._cond:
            queue._processing -= 1
            if queue.closed:
                self._cond.notify_all()

    def _next_batch(self):
        """(queue, batch) to run, taking the queues in turn; waits until one is due. None when stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now, wait = time.monotonic(), None
                count = len(self._queues)
                for step in range(count):
                    queue = self._queues[(self._next + step) % count]
                    due = queue.due(now)
                    if due == 0.0:
                        self._next = (self._next + step + 1) % count
                        return queue, queue.take()
                    if due is not None and (wait is None or due < wait):
                        wait = due
                self._cond.wait(wait)

    def _work(self):
        while True:
            work = self._next_batch()
            if work is None:
                return
            queue, batch = work
            queue.process(batch)

    def close(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


class Batcher:
    """Batching for one servable version: a queue per (feeds, fetches), on the server's scheduler."""

    def __init__(self, scheduler, run, options):
        self._scheduler, self._run, self._options = scheduler, run, options
        self._queues = {}
        self._lock = threading.Lock()

    def run(self, feeds, fetch_names, timeout_ms=0):
        """The fetched arrays for these feeds, run in a batch; `timeout_ms` is the request's run timeout (0: none)."""
        future = self.submit(feeds, fetch_names, timeout_ms)
        if future is None:  # nothing batchable (no inputs, or scalars): run as it is
            return self._run(feeds, fetch_names, timeout_ms)
        return future.result()

    def submit(self, feeds, fetch_names, timeout_ms=0, loop=None):
        """Queue these feeds for a batch: a concurrent.futures.Future of the fetched arrays (or of the
        ServingError that failed them), or, called on the thread of event loop `loop`, an asyncio.Future
        of that loop; None when nothing is batchable (no inputs, or scalars): run them as they are. Raises
        the ServingError of a request the queue refuses."""
        sizes = {np.shape(value)[0] if np.ndim(value) else None for _, value in feeds}
        if not feeds or None in sizes:
            return None
        if len(sizes) != 1:
            raise status.invalid_argument(
                "Batching session Run() input tensors must have equal 0th-dimension size")
        key = (tuple(name for name, _ in feeds), tuple(fetch_names))
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = self._scheduler.add_queue(self._run, list(fetch_names), self._options)
        task = _Task(feeds, sizes.pop(), timeout_ms, loop)
        METRICS.batch_input(task.size)
        self._scheduler.submit(queue, task)
        return task.future

    def num_enqueued_tasks(self):
        """Tasks (pieces of them, when split) waiting for a batch thread, over this version's queues."""
        with self._lock:
            queues = list(self._queues.values())
        return sum(self._scheduler.num_enqueued_tasks(queue) for queue in queues)

    def close(self):
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            self._scheduler.close_queue(queue)
