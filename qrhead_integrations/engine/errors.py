"""The library's exceptions: one base class, so callers (and the CLI) can catch every library error.

Each error is also a subclass of the built-in exception a caller would expect (``ValueError`` for a bad
value, ``TypeError`` for a wrong type, ``RuntimeError`` for a failure while running), so existing
``except ValueError`` code keeps working.
"""

from __future__ import annotations


class QRHeadError(Exception):
    """Base class of every error raised by qrhead-integrations."""


class QRHeadValueError(QRHeadError, ValueError):
    """An argument has a value the library cannot use (the message names the argument and the fix)."""


class QRHeadTypeError(QRHeadError, TypeError):
    """An argument has the wrong type (the message names the argument, what was given and what is accepted)."""


class ContextBudgetError(QRHeadValueError):
    """The passages, the template and the query cannot be laid out within the token budget."""


class QRHeadRuntimeError(QRHeadError, RuntimeError):
    """Something failed while running the model (the message says what and what to try)."""
