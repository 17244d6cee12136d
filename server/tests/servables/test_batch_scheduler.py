"""The batch scheduler in-process, with fake session runs (as TF Serving tests its own batching):
tasks merged into batches, split across them, queues sharing threads, full queues, closing."""

import threading
import time

import numpy as np
import pytest

from server.servables import batching
from server.util import local_protos, status
from testing.server import wait_until


def options(**fields):
    parameters = local_protos.BatchingParameters()
    for name, value in fields.items():
        if name == "allowed_batch_sizes":
            parameters.allowed_batch_sizes.extend(value)
        else:
            getattr(parameters, name).value = value
    return batching.Options(parameters, cpus=1)


class FakeRun:
    """A session run: y = 2x, recording each batch's row count; `gate` holds runs until set."""

    def __init__(self, seconds=0.0):
        self.sizes, self.seconds, self.timeouts = [], seconds, []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a run has started (and may be waiting at the gate)
        self.lock = threading.Lock()

    def __call__(self, feeds, fetch_names, timeout_ms=0):
        self.entered.set()
        self.gate.wait(30)
        (_, x), = feeds
        with self.lock:
            self.sizes.append(len(x))
            self.timeouts.append(timeout_ms)
        time.sleep(self.seconds)
        return [x * 2]


@pytest.fixture
def scheduler():
    s = batching.Scheduler(1)
    yield s
    s.close()


def run_all(batcher, inputs, timeouts_ms=None):
    """Run each input on its own thread (with its run timeout, if given); the results in order."""
    results, threads = [None] * len(inputs), []
    for i, x in enumerate(inputs):
        def call(i=i, x=x):
            try:
                results[i] = batcher.run([("x:0", x)], ["y:0"], timeouts_ms[i] if timeouts_ms else 0)[0]
            except status.ServingError as e:
                results[i] = e
        threads.append(threading.Thread(target=call, daemon=True))  # a run that never ends must not hold pytest
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_tasks_are_merged_and_each_gets_its_rows(scheduler):
    run = FakeRun()
    run.gate.clear()  # the first batch waits, so the rest queue up behind it
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, batch_timeout_micros=0,
                                                           max_enqueued_batches=100))
    inputs = [np.full((1 + i % 3, 4), i, np.float32) for i in range(12)]
    threading.Timer(0.3, run.gate.set).start()
    results = run_all(batcher, inputs)
    for x, y in zip(inputs, results):
        np.testing.assert_array_equal(y, x * 2)
    assert sum(run.sizes) == sum(len(x) for x in inputs)
    assert max(run.sizes) > 3 and all(size <= 8 for size in run.sizes)  # merged, never past the limit
    batcher.close()


def test_a_batch_is_padded_to_the_next_allowed_size(scheduler):
    run = FakeRun()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, allowed_batch_sizes=[4, 8]))
    y, = run_all(batcher, [np.ones((3, 2), np.float32)])
    assert y.shape == (3, 2) and run.sizes == [4]
    batcher.close()


def test_a_task_larger_than_the_limit_is_refused():
    scheduler = batching.Scheduler(1)
    batcher = batching.Batcher(scheduler, FakeRun(), options(max_batch_size=4))
    error, = run_all(batcher, [np.ones((5, 2), np.float32)])
    assert error.code.name == "INVALID_ARGUMENT"
    assert error.message == "Task size 5 is larger than maximum input batch size 4"
    batcher.close()
    scheduler.close()


def test_large_batch_splitting_runs_a_task_in_pieces_of_the_execution_size(scheduler):
    run = FakeRun()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=16, enable_large_batch_splitting=True,
                                                       max_execution_batch_size=4, max_enqueued_batches=10))
    x = np.arange(22, dtype=np.float32).reshape(11, 2)
    y, = run_all(batcher, [x])
    np.testing.assert_array_equal(y, x * 2)  # the pieces' rows back in order
    assert run.sizes == [4, 4, 3]
    batcher.close()


def test_splitting_fills_the_open_batch_first(scheduler):
    run = FakeRun()
    run.gate.clear()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=16, enable_large_batch_splitting=True,
                                                       max_execution_batch_size=4, batch_timeout_micros=10**6))
    blocker = threading.Thread(target=run_all, args=(batcher, [np.ones((4, 1), np.float32)]))
    blocker.start()  # a full batch: runs at once, and waits on the gate
    assert run.entered.wait(30)
    results = []
    first = threading.Thread(target=lambda: results.append(run_all(batcher, [np.ones((1, 1), np.float32)])))
    first.start()
    wait_until(lambda: batcher.num_enqueued_tasks() == 1, what="the 1-row task to queue first")
    second = run_all_async(batcher, np.arange(6, dtype=np.float32).reshape(6, 1))
    wait_until(lambda: batcher.num_enqueued_tasks() == 3, what="the 6-row task to queue as two pieces")
    run.gate.set()
    blocker.join()
    first.join()
    y = second()
    np.testing.assert_array_equal(y, np.arange(6, dtype=np.float32).reshape(6, 1) * 2)
    assert run.sizes == [4, 4, 3]  # 1 + 3 of the 6 rows, then the other 3
    batcher.close()


def run_all_async(batcher, x):
    box = []
    thread = threading.Thread(target=lambda: box.append(run_all(batcher, [x])[0]))
    thread.start()

    def result():
        thread.join(30)
        return box[0]
    return result


def test_a_full_splitting_queue_is_unavailable_with_tfs_message(scheduler):
    run = FakeRun()
    run.gate.clear()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, enable_large_batch_splitting=True,
                                                       max_execution_batch_size=4, max_enqueued_batches=2,
                                                       batch_timeout_micros=10**6))
    pending = [run_all_async(batcher, np.ones((4, 1), np.float32))]
    assert run.entered.wait(30)
    pending.append(run_all_async(batcher, np.ones((3, 1), np.float32)))  # queued: 3 of 4 in the open batch
    wait_until(lambda: batcher.num_enqueued_tasks() == 1, what="the 3-row task to queue")
    error, = run_all(batcher, [np.ones((6, 1), np.float32)])
    assert error.code.name == "UNAVAILABLE"
    assert error.message == (
        "The batch scheduling queue to which this task was submitted is full; task size is 6 but scheduling "
        "capacity is only 5 (num_enqueued_batches=1, max_enqueued_batches=2, open_batch_size=3, "
        "max_execution_batch_size=4)")
    run.gate.set()
    for result in pending:
        assert result().shape[1] == 1
    batcher.close()


def test_one_thread_serves_every_queue_in_turn(scheduler):
    run_a, run_b = FakeRun(0.01), FakeRun(0.01)
    a = batching.Batcher(scheduler, run_a, options(max_batch_size=1, max_enqueued_batches=1000))
    b = batching.Batcher(scheduler, run_b, options(max_batch_size=1, max_enqueued_batches=1000))
    busy = threading.Thread(target=run_all, args=(a, [np.ones((1, 1), np.float32)] * 30))
    busy.start()
    wait_until(lambda: len(run_a.sizes) >= 2, timeout=30, what="A's first two batches", interval=0.005)
    started = time.monotonic()
    run_all(b, [np.ones((1, 1), np.float32)])
    waited = time.monotonic() - started
    busy.join()
    assert run_b.sizes == [1]
    assert len(run_a.sizes) == 30
    assert waited < 0.2, waited  # B's batch came within a turn or two, not after A's 28 queued ones (0.28 s)
    a.close()
    b.close()


def test_closing_a_queue_runs_what_is_queued(scheduler):
    run = FakeRun()
    run.gate.clear()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=2, batch_timeout_micros=10**7,
                                                       max_enqueued_batches=10))
    pending = [run_all_async(batcher, np.full((1, 1), i, np.float32)) for i in range(5)]
    assert run.entered.wait(30)  # the first full batch runs; the others are queued behind it
    wait_until(lambda: batcher.num_enqueued_tasks() == 3, what="the other three tasks to queue")
    closer = threading.Thread(target=batcher.close)
    closer.start()
    run.gate.set()
    closer.join(30)
    assert not closer.is_alive()
    assert sorted(float(result()[0, 0]) for result in pending) == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("fields, message", [
    ({"max_batch_size": 0}, "input_batch_size_limit must be positive; was 0"),
    ({"batch_timeout_micros": -1}, "batch_timeout_micros must be non-negative; was -1"),
    ({"max_enqueued_batches": 0}, "max_enqueued_batches must be positive; was 0"),
    ({"num_batch_threads": 0}, "num_batch_threads must be positive; was 0"),
    ({"max_batch_size": 4, "enable_large_batch_splitting": True, "max_execution_batch_size": 8},
     "When enable_large_batch_splitting is true, input_batch_size_limit must be greater than or equal to "
     "max_execution_batch_size."),
    ({"max_batch_size": 8, "allowed_batch_sizes": [2, 4]},
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8"),
    ({"max_batch_size": 8, "allowed_batch_sizes": [4, 2, 8]},
     "allowed_batch_sizes entries must be monotonically increasing"),
])
def test_bad_parameters_get_tf_servings_messages(fields, message):
    with pytest.raises(ValueError) as e:
        options(**fields)
    assert str(e.value) == message


def test_max_execution_batch_size_counts_only_with_splitting():
    assert options(max_batch_size=8, max_execution_batch_size=2).max_execution_batch_size == 8
    assert options(max_batch_size=8, enable_large_batch_splitting=True).max_execution_batch_size == 8


# -- run timeouts (batching_session.cc, ProcessBatch) ----------------------------------------------


def queued_behind_a_held_run(run, batcher, inputs, timeouts_ms):
    """Hold the only batch thread in a run, then queue `inputs` with their run timeouts behind it."""
    run.gate.clear()
    run.entered.clear()
    first = run_all_async(batcher, np.zeros((1, 1), np.float32))
    assert run.entered.wait(10)
    results = []
    thread = threading.Thread(target=lambda: results.extend(run_all(batcher, inputs, timeouts_ms)))
    thread.start()
    wait_until(lambda: batcher.num_enqueued_tasks() == len(inputs), timeout=10, what="the tasks to queue")
    return first, thread, results


def test_tasks_whose_deadlines_passed_in_the_queue_are_not_run(scheduler):
    run = FakeRun()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, batch_timeout_micros=0))
    first, thread, results = queued_behind_a_held_run(
        run, batcher, [np.ones((1, 1), np.float32), np.ones((2, 1), np.float32)], [50, 80])
    time.sleep(0.3)  # both deadlines pass while the batch thread is held (what is tested, not a wait for readiness)
    run.gate.set()
    thread.join(30)
    assert first().tolist() == [[0.0]]
    for error in results:
        assert isinstance(error, status.ServingError)
        assert (error.code.name, error.message) == (
            "RESOURCE_EXHAUSTED", "Run() timeout exceeded while waiting in batching queue")
    assert run.sizes == [1]  # only the first batch ran


def test_a_batch_runs_with_its_latest_deadline_and_without_one_if_a_task_has_none(scheduler):
    run = FakeRun()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, batch_timeout_micros=0))
    for timeouts, bound in (([2_000, 20_000], (10_000, 26_000)), ([2_000, 0], (0, 0))):
        first, thread, results = queued_behind_a_held_run(
            run, batcher, [np.ones((1, 1), np.float32), np.full((2, 1), 3, np.float32)], timeouts)
        run.gate.set()
        thread.join(30)
        first()
        assert [r.tolist() for r in results] == [[[2.0]], [[6.0], [6.0]]]  # the two ran as one batch of 3
        assert run.sizes[-1] == 3
        low, high = bound
        assert low <= run.timeouts[-1] <= high, run.timeouts  # the later deadline, less its time queued
    assert run.timeouts[-1] == 0


def test_one_live_task_runs_the_batch_for_all(scheduler):
    """TF Serving runs a batch if any of its tasks is still in time; the late ones get their rows too."""
    run = FakeRun()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, batch_timeout_micros=0))
    first, thread, results = queued_behind_a_held_run(
        run, batcher, [np.ones((1, 1), np.float32), np.ones((1, 1), np.float32)], [50, 30_000])
    time.sleep(0.3)
    run.gate.set()
    thread.join(30)
    first()
    assert [r.tolist() for r in results] == [[[2.0]], [[2.0]]]
    assert run.sizes[-1] == 2


def test_submit_queues_without_waiting_and_leaves_what_cannot_batch(scheduler):
    """submit() returns a Future at once (many tasks can wait on one thread, as the event loop's Predict
    does), which a waiter that gives up cannot cancel out of its batch; None for scalar feeds."""
    run = FakeRun()
    run.gate.clear()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, batch_timeout_micros=0))
    assert batcher.submit([("x:0", np.float32(1.0))], ["y:0"]) is None
    first = batcher.submit([("x:0", np.ones((1, 2), np.float32))], ["y:0"])
    assert run.entered.wait(10)  # the first batch holds the only thread
    queued = [batcher.submit([("x:0", np.full((1, 2), i, np.float32))], ["y:0"]) for i in range(3)]
    assert not queued[0].cancel()
    assert batcher.num_enqueued_tasks() == 3 and not any(f.done() for f in [first, *queued])
    run.gate.set()
    assert first.result(timeout=10)[0].tolist() == [[2.0, 2.0]]
    assert [f.result(timeout=10)[0].tolist() for f in queued] == [[[0.0, 0.0]], [[2.0, 2.0]], [[4.0, 4.0]]]
    assert run.sizes == [1, 3]
    with pytest.raises(status.ServingError, match="Task size 9 is larger than maximum input batch size 8"):
        batcher.submit([("x:0", np.ones((9, 2), np.float32))], ["y:0"])  # refused: raised, not a Future


def test_an_event_loops_waiters_are_woken_once_a_batch(scheduler):
    """submit(loop=...) gives asyncio futures of that loop; the batch thread settles all of one batch's in
    one call_soon_threadsafe (one wake of the loop a batch, not one a request), skips a future whose waiter
    gave up, and a split task's future only once its last piece has run."""
    import asyncio

    loop = asyncio.new_event_loop()
    wakes = []
    real = loop.call_soon_threadsafe

    def counted(callback, *args):
        wakes.append(threading.current_thread().name)
        return real(callback, *args)

    loop.call_soon_threadsafe = counted  # the real loop's method, counted
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    run = FakeRun()
    run.gate.clear()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=8, batch_timeout_micros=0,
                                                       enable_large_batch_splitting=True,
                                                       max_execution_batch_size=4))

    async def submit(rows, value):
        return batcher.submit([("x:0", np.full((rows, 1), value, np.float32))], ["y:0"], 0, loop)

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)

    try:
        first = on_loop(submit(1, 0))
        assert run.entered.wait(10)  # the first batch holds the only thread
        assert isinstance(first, asyncio.Future)
        waiting = [on_loop(submit(1, i)) for i in (1, 2, 3)]
        split = on_loop(submit(3, 4))  # 1 row fills the next batch of 4, 2 rows go to the one after
        loop.call_soon_threadsafe(waiting[0].cancel)
        wait_until(lambda: waiting[0].cancelled())
        del wakes[:]
        run.gate.set()

        async def results():
            return await asyncio.gather(first, *waiting[1:], split)

        assert [r[0].ravel().tolist() for r in on_loop(results())] == [[0.0], [4.0], [6.0], [8.0, 8.0, 8.0]]
        assert run.sizes == [1, 4, 2]
        # one a batch: the first, then the two the split task is in (the main thread's calls are its own)
        assert [name for name in wakes if name != "MainThread"] == ["batch-0"] * 3
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("splitting", [False, True], ids=["whole", "splitting"])
def test_a_task_of_exactly_max_batch_size_rows_runs_and_one_row_more_is_refused(scheduler, splitting):
    run = FakeRun()
    batcher = batching.Batcher(scheduler, run, options(max_batch_size=4, batch_timeout_micros=0,
                                                       enable_large_batch_splitting=splitting))
    fits, too_big = run_all(batcher, [np.ones((4, 1), np.float32)]), run_all(batcher, [np.ones((5, 1), np.float32)])
    np.testing.assert_array_equal(fits[0], np.full((4, 1), 2, np.float32))
    assert (too_big[0].code.name, too_big[0].message) == (
        "INVALID_ARGUMENT", "Task size 5 is larger than maximum input batch size 4")
    assert run.sizes == [4]
    batcher.close()
