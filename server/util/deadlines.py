"""Session-run timeouts from call deadlines, rounded up to fixed steps.

A callable fixes its RunOptions, so every distinct timeout is one more compiled callable per signature;
rounding a remaining time up to one of these steps (10 a decade, 10 ms to 53 min) bounds how many a
model keeps, at the cost of a run outliving its deadline by up to 26% (TF Serving: by nothing).
"""

import bisect

STEPS_MS = sorted({round(10 * 10 ** (i / 10)) for i in range(0, 56)})


def step_ms(milliseconds):
    """The step at or above `milliseconds` (at least the first); None beyond the last step: no bound."""
    if milliseconds > STEPS_MS[-1]:
        return None
    return STEPS_MS[bisect.bisect_left(STEPS_MS, max(milliseconds, 1))]
