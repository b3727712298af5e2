"""The CLI's one error handler: an expected failure is one red line and an exit code.

Commands raise; they never catch to print. :class:`RagstreamGroup` wraps the
whole command tree, so a :class:`~ragstream.errors.RagstreamError` (or a
devstack or API-key problem) raised anywhere below it ends the process with
:func:`exit_code` and its message, without a traceback. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from ragstream.cli.common import console
from ragstream.errors import RagstreamError

if TYPE_CHECKING:
    from typer._click import Context  # the click typer vendors (typer.Context subclasses it)

USAGE = 2
"""What was asked cannot be: a bad argument, a missing key, a devstack that cannot start."""
REFUSED = 1
"""What was asked is refused or failed now (a live consumer group, a missing topic, ...)."""


class UsageError(RagstreamError):
    """The command line asks for something that does not exist (exit 2)."""


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an expected failure; ``None`` for anything else (a bug)."""
    from ragstream.api.keys import InvalidApiKeys
    from ragstream.devstack import DevstackError
    from ragstream.ops.dlq import BadDeadLetterId
    from ragstream.ops.reembed import UnknownModel
    from ragstream.ops.replay import BadReplayStart

    if isinstance(
        exc,
        UsageError
        | BadReplayStart
        | BadDeadLetterId
        | UnknownModel
        | DevstackError
        | InvalidApiKeys,
    ):
        return USAGE
    if isinstance(exc, RagstreamError):
        return REFUSED
    return None


class RagstreamGroup(TyperGroup):
    """The top-level command group; its :meth:`invoke` is the single error handler."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            console.print(f"[red]{escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
