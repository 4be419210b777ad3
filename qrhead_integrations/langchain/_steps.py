"""One implementation for a LangChain method and its async twin.

A method's logic is written once as a generator that yields :class:`Call` objects: each names what to
do in sync code and what to do in async code (by default the same callable, whose result is awaited when
it is awaitable, e.g. a callback manager's method). :func:`run_sync` and :func:`run_async` drive it;
an exception raised by a call is thrown back into the generator at the ``yield``, so ``try``/``except``
around a ``yield`` behaves as around a plain call.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Steps = Generator["Call", Any, T]


@dataclass(frozen=True)
class Call:
    """``sync()`` in sync code; ``async_()`` (default: ``sync()``) awaited, if awaitable, in async code."""

    sync: Callable[[], Any]
    async_: Callable[[], Awaitable[Any] | Any] | None = None


def _advance(steps: Steps[T], value: Any, error: BaseException | None) -> tuple[bool, Any]:
    """``(True, result)`` when the generator returned, else ``(False, next call)``."""
    try:
        return False, steps.throw(error) if error is not None else steps.send(value)
    except StopIteration as stop:
        return True, stop.value


def run_sync(steps: Steps[T]) -> T:
    value: Any = None
    error: BaseException | None = None
    while True:
        done, call = _advance(steps, value, error)
        if done:
            return call
        value, error = None, None
        try:
            value = call.sync()
        except BaseException as exc:  # handed back to the generator, which re-raises
            error = exc


async def run_async(steps: Steps[T]) -> T:
    value: Any = None
    error: BaseException | None = None
    while True:
        done, call = _advance(steps, value, error)
        if done:
            return call
        value, error = None, None
        try:
            value = (call.async_ or call.sync)()
            if inspect.isawaitable(value):
                value = await value
        except BaseException as exc:  # handed back to the generator, which re-raises
            error = exc
