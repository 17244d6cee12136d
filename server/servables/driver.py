"""The one inference driver: runs an inference's steps on a servable within a deadline, blocking on a thread
or awaiting on an event loop.

An inference (Predict, Classify, Regress, MultiInference) is written as steps: a generator that yields
(feeds, fetch_names) for each session run it needs, is sent back the fetched arrays, and returns its
response. So the same steps run here blocking (the thread-pool servers, warmup) or awaited
(model_servers/grpc/servicers.py's AsyncInference on a batching server), where a batched run waits for
its batch on the loop and holds no thread.

The deadline (time.monotonic() seconds, None: none) bounds every session run, as TF Serving puts a
call's deadline in its RunOptions (model_servers/prediction_service_impl.cc, enforce_session_run_timeout)
and --rest_api_timeout_in_ms in a REST call's (model_servers/http_rest_api_handler.cc): TensorFlow
cancels a run that overstays it, and its thread is free again.
"""

import asyncio
import time

from ..util import deadlines, memory


def run_timeout_ms(deadline):
    """The session-run bound left before `deadline`, rounded up to a step (util/deadlines.py); 0: none."""
    if deadline is None:
        return 0
    return deadlines.step_ms((deadline - time.monotonic()) * 1000) or 0


class Inference:
    """One inference: `steps` on `servable` within `deadline`. `run()` or `await run_async(...)` once."""

    def __init__(self, servable, steps, deadline=None):
        self.servable, self.steps, self.deadline = servable, steps, deadline
        self._large = False

    def run(self):
        """The response, each session run blocking this thread (batched when --enable_batching)."""
        try:
            feeds, fetch_names = next(self.steps)
            while True:
                self._note(value for _, value in feeds)
                values = self.servable.run(feeds, fetch_names, run_timeout_ms(self.deadline))
                feeds = None  # the run's inputs are not held while the answer is built
                self._note(values)
                feeds, fetch_names = self.steps.send(values)
        except StopIteration as done:
            return done.value
        finally:
            self._end()

    async def run_async(self, executor, read_off_loop=False):
        """The response: a batched run awaited on this loop, any other run on `executor`; with
        `read_off_loop` (a large request) the first step, which decodes its tensors, runs on `executor` too."""
        loop = asyncio.get_running_loop()
        try:
            first = loop.run_in_executor(executor, next, self.steps) if read_off_loop else None
            feeds, fetch_names = await first if first is not None else next(self.steps)
            while True:
                self._note(value for _, value in feeds)
                timeout_ms = run_timeout_ms(self.deadline)
                run = self.servable.submit(feeds, fetch_names, timeout_ms, loop)
                if run is None:
                    run = loop.run_in_executor(executor, self.servable.run, feeds, fetch_names, timeout_ms)
                feeds = None
                values = await run
                self._note(values)
                feeds, fetch_names = self.steps.send(values)
        except StopIteration as done:
            return done.value
        finally:
            self._end()

    def _note(self, arrays):
        """Remember whether the inference handled a large array (a feed, or a fetched output)."""
        if not self._large:
            self._large = any(getattr(a, "nbytes", 0) >= memory.LARGE_BYTES for a in arrays)

    def _end(self):
        """Where a request ends: after a large one, glibc is asked to give its memory back (util/memory.py)."""
        if self._large:
            memory.after_large_request()
