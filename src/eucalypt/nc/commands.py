"""Running host commands (``ip``, ``qemu-img``, ``cp``): one async runner for the NC.

Every host command of the NC goes through a :data:`Runner`, so tests can
record (or refuse) exactly what the NC asks of the host. The default,
:func:`run_command`, uses ``asyncio.create_subprocess_exec``: the event loop
never blocks on a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("eucalypt.nc.commands")

DEFAULT_TIMEOUT = 120.0


class CommandError(RuntimeError):
    """A host command failed (non-zero exit, timeout or missing program)."""

    def __init__(self, argv: Sequence[str], detail: str) -> None:
        super().__init__(f"`{' '.join(argv)}` failed: {detail}")
        self.argv = list(argv)
        self.detail = detail


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CommandResult:
        """Return self, or raise :class:`CommandError` when the command failed."""
        if self.returncode != 0:
            detail = self.stderr.strip() or self.stdout.strip() or "no output"
            raise CommandError(self.argv, f"exit {self.returncode}: {detail[:500]}")
        return self


#: ``await runner(argv)`` runs ``argv`` and returns its result; it never raises for a
#: non-zero exit (callers decide with :meth:`CommandResult.check`), but raises
#: :class:`CommandError` when the program is missing or times out.
Runner = Callable[[Sequence[str]], Awaitable[CommandResult]]


async def run_command(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
    """Run ``argv`` (no shell), capture its output, kill it after ``timeout`` seconds."""
    args = [str(a) for a in argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise CommandError(args, f"cannot start: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CommandError(args, f"timed out after {timeout:.0f} s") from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    result = CommandResult(
        tuple(args),
        proc.returncode or 0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )
    log.debug("command", extra={"argv": args, "rc": result.returncode})
    return result
