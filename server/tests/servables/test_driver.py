"""servables/driver.py: the one inference driver, blocking and awaited, on a fake servable: its deadline becomes
each session run's timeout, and the end of a large request asks for memory back."""

import asyncio
import time
from concurrent import futures

import numpy as np
import pytest

from server.servables import driver
from server.util import memory


class FakeServable:
    """Runs return `outputs`; each run's timeout is kept. `batched`: submit() answers on the loop."""

    def __init__(self, outputs, batched=False):
        self.outputs, self.batched, self.timeouts = outputs, batched, []

    def run(self, feeds, fetch_names, timeout_ms=0):
        self.timeouts.append(timeout_ms)
        return self.outputs

    def submit(self, feeds, fetch_names, timeout_ms, loop=None):
        if not self.batched:
            return None
        self.timeouts.append(timeout_ms)
        future = loop.create_future()
        future.set_result(self.outputs)
        return future


def steps(feeds):
    """One run of `feeds`; the response is the fetched arrays."""
    fetched = yield feeds, ["y:0"]
    return fetched


def drive(servable, feeds, deadline=None, mode="blocking"):
    inference = driver.Inference(servable, steps(feeds), deadline)
    if mode == "blocking":
        return inference.run()
    with futures.ThreadPoolExecutor(2) as executor:
        return asyncio.run(inference.run_async(executor, read_off_loop=True))


MODES = ["blocking", "awaited", "batched"]


@pytest.mark.parametrize("mode", MODES)
def test_the_deadline_bounds_each_run_and_no_deadline_none(mode):
    servable = FakeServable([np.ones(2)], batched=mode == "batched")
    mode = "blocking" if mode == "blocking" else "awaited"
    assert drive(servable, [("x:0", np.ones(2))], mode=mode)[0].tolist() == [1.0, 1.0]
    drive(servable, [("x:0", np.ones(2))], deadline=time.monotonic() + 2.0, mode=mode)
    drive(servable, [("x:0", np.ones(2))], deadline=time.monotonic() - 1, mode=mode)  # passed: the shortest step
    assert servable.timeouts[0] == 0
    assert 2000 <= servable.timeouts[1] <= 2600  # 2 s, rounded up to a step (util/deadlines.py)
    assert servable.timeouts[2] == 10


@pytest.mark.parametrize("mode", MODES)
def test_a_large_request_or_answer_schedules_one_trim_as_it_ends(monkeypatch, mode):
    calls = []
    monkeypatch.setattr(memory, "after_large_request", lambda: calls.append(1))
    batched, mode = mode == "batched", "blocking" if mode == "blocking" else "awaited"
    small, large = np.zeros(1000, np.uint8), np.zeros(memory.LARGE_BYTES, np.uint8)
    drive(FakeServable([small], batched), [("x:0", small)], mode=mode)
    assert calls == []
    drive(FakeServable([small], batched), [("x:0", large)], mode=mode)
    assert calls == [1]
    drive(FakeServable([large], batched), [("x:0", small)], mode=mode)
    assert calls == [1, 1]
