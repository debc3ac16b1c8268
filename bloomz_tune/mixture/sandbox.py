"""Bounded work for untrusted template text: Jinja's sandbox, plus limits on what one rendering may make.

Jinja's sandbox stops unsafe attribute access and caps ``range`` at 100,000; a template file from anywhere can
still ask for a gigabyte string (``'x' * 10**13``, ``'x'.ljust(10**9)``, ``'{:x>1000000000}'.format(1)``, a filter's
width) or spin in nested loops for hours. ``BoundedSandbox`` refuses the first kind before the memory is taken
(an OverflowError); ``bounded_output`` caps one rendering's output (``MAX_ROW_CHARS``) and time
(``MAX_RENDER_SECONDS``, by SIGALRM in the main thread). A recursive macro ends in Python's RecursionError. Each
becomes the one-line TemplateRenderError naming the source, split, row and template.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
import threading

from jinja2.sandbox import SandboxedEnvironment

MAX_REPEAT = 1_000_000  # characters or items a template may make by multiplying a string or a list
MAX_POWER_DIGITS = 10_000  # digits of an integer a template may make with **
MAX_ROW_CHARS = 1_000_000  # characters one rendering may output (an xP3 prompt is a few thousand)
MAX_RENDER_SECONDS = 10.0  # time one rendering may take (a prompt renders in microseconds)
_WIDTH = re.compile(r"(\d{7,})")  # a number of 7+ digits in a format spec: a width of a million or more


def _check_size_args(what: str, args, kwargs) -> None:
    """Refuse a call whose integer arguments would make a string or list of more than MAX_REPEAT items
    (``'x'.ljust(10**9)``, ``center``, ``zfill``, a filter's width)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_REPEAT:
            raise OverflowError(f"{what} with {value:,} would make more than {MAX_REPEAT:,} characters or items")


def bounded_filter(name: str, func):
    @functools.wraps(func)  # keeps Jinja's pass_context/pass_environment marks
    def bounded(*args, **kwargs):
        _check_size_args(f"the filter {name!r}", args[1:], kwargs)
        return func(*args, **kwargs)
    return bounded


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox (no unsafe attributes; ``range`` capped at 100,000) that also refuses what would eat all
    memory or hang a mixture build: ``'x' * 10**13``, ``9 ** 10**9``, ``'x'.ljust(10**9)``, ``'{:x>1000000000}'``,
    a filter's huge width; ``_render`` bounds the output and the time of one rendering."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise OverflowError(f"repeating a {type(seq).__name__} {n:,} times makes more than "
                                        f"{MAX_REPEAT:,} items")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if right * math.log10(abs(left)) > MAX_POWER_DIGITS:
                raise OverflowError(f"{left} ** {right} has more than {MAX_POWER_DIGITS:,} digits")
        if operator == "%" and isinstance(left, str):
            _check_format(left)
            _check_size_args("'%' formatting", right if isinstance(right, tuple) else (right,), {})
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        _check_size_args(f"calling {getattr(__obj, '__name__', 'a function')}", args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value):
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:  # a string's format or format_map method, about to be called
            _check_format(value.__self__)
        return wrapped


def _check_format(spec: str) -> None:
    for digits in _WIDTH.findall(spec):
        if int(digits) > MAX_REPEAT:
            raise OverflowError(f"a format width of {int(digits):,} would make more than {MAX_REPEAT:,} characters")



def bounded_output(parts):
    """The rendered parts of one rendering, stopped past ``MAX_ROW_CHARS`` characters or ``MAX_RENDER_SECONDS``."""
    out, size = [], 0
    with _time_bound(MAX_RENDER_SECONDS):
        for part in parts:
            size += len(part)
            if size > MAX_ROW_CHARS:
                raise OverflowError(f"the rendering is longer than {MAX_ROW_CHARS:,} characters")
            out.append(part)
    return out


@contextlib.contextmanager
def _time_bound(seconds: float):
    """Raise TimeoutError in the block after ``seconds`` (SIGALRM; where there is no main-thread signal, unbounded).

    Nested loops (each ``range`` capped at 100,000) can spin for hours without making anything large."""
    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_REAL)[0]:
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"the rendering took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
