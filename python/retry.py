"""--retries and --wait-for-ready, as a client interceptor on the scripts' channel.

Not gRPC's own retry policy: it clamps maxAttempts at 5 (and logs an error line saying so) and
draws each backoff from [0, b], so it cannot promise how long it keeps trying. This loop retries N
times, waits 1, 2, 4... s (at most 10 s, each drawn from [b/2, b]) and stays within --timeout.
"""

import random
import time

import grpc

# HandleReloadConfigRequest is not safe to repeat: a retry could apply a config twice or after a newer one.
UNSAFE = frozenset({"/tensorflow.serving.ModelService/HandleReloadConfigRequest"})


class RetryInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, retries, wait_for_ready, report=None, sleep=time.sleep):
        """report: an object whose `attempts` is set to the attempts the last call made (for error messages)."""
        self.retries, self.wait_for_ready, self._report, self._sleep = retries, wait_for_ready, report, sleep

    def intercept_unary_unary(self, continuation, details, request):
        if self.wait_for_ready:
            details = _with(details, wait_for_ready=True)
        retries = 0 if details.method in UNSAFE else self.retries
        deadline = None if details.timeout is None else time.monotonic() + details.timeout
        backoff = 1.0
        for attempt in range(retries + 1):
            if self._report is not None:
                self._report.attempts = attempt + 1
            outcome = continuation(details, request)
            if attempt == retries or outcome.exception() is None or outcome.code() != grpc.StatusCode.UNAVAILABLE:
                return outcome
            pause = random.uniform(backoff / 2, backoff)
            if deadline is not None and time.monotonic() + pause >= deadline:
                return outcome
            self._sleep(pause)
            backoff = min(backoff * 2, 10.0)
            if deadline is not None:
                details = _with(details, timeout=deadline - time.monotonic())
        return outcome


def _with(details, **changes):
    fields = {name: getattr(details, name, None) for name in
              ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")}
    fields.update(changes)
    return _Details(**fields)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression
