"""How every command line tool ends on a problem: one line on stderr and a documented exit code
(README, "Faults"; 128 + N for a run stopped by signal N is the Preempted exception's own)."""
from __future__ import annotations

import sys

# bad input, training diverged, a write failed, a process of a multi-process run failed
EXIT_INPUT, EXIT_DIVERGED, EXIT_STORAGE, EXIT_DISTRIBUTED = 2, 3, 4, 5


def fail(message: object, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
