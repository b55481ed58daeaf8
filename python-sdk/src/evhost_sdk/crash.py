"""What happens when an exception other than `Transient` or `Permanent`
escapes a handler: like a Rust panic, the component traps and evhost
dead-letters the message as `trap`.

evhost quotes a trapping guest's last panic line in the dead letter's
`Evhost-Error`: it looks for Rust's shape among the last lines the guest wrote
to stderr, `... panicked at FILE:LINE:` followed by the message on the next
line. So a crash writes the traceback (for the log), then the exception in
that shape, as one write, and aborts (a WebAssembly trap) at once, so nothing
written after it pushes those lines out of the host's view.
"""

import os
import sys
import traceback


def describe(exc: BaseException) -> str:
    """`Type: message` on one line (`ValueError: kaboom`); types outside
    the builtins carry their module (`app.BadOrder: ...`)."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    text = " ".join(str(exc).split())
    return f"{name}: {text}" if text else name


def location(exc: BaseException) -> str:
    """`FILE:LINE` of the frame that raised `exc`, or `<unknown>`."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "<unknown>"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"


def report(exc: BaseException) -> str:
    """What a crash writes to stderr: the traceback, then the panic lines."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{tb}thread '<unnamed>' panicked at {location(exc)}:\n{describe(exc)}\n"


def crash(exc: BaseException) -> None:
    """Writes the report of `exc` to stderr and traps. Does not return."""
    try:
        sys.stderr.write(report(exc))
        sys.stderr.flush()
    finally:
        os.abort()
