"""The one way eucalypt changes a host: every command goes through a runner.

The CC's data plane, the NC (taps, ``qemu-img``, image copies) and the
one-host network all take a :class:`Runner`. :class:`CommandRunner` runs an
argv with asyncio (the event loop never blocks on a child; optionally inside
a network namespace, through ``ip netns exec``), kills it after ``timeout``
seconds, and raises :class:`CommandError`, with the command's stderr, when it
fails (``check=False``: the caller reads the result instead; a missing
program or a timeout still raises). :class:`RecordingRunner` runs the same
commands and remembers them, so tests can read exactly what a step did.

Commands that only read (``ip -j link show``, ``iptables-save``) are run with
``readonly=True``; "apply twice does nothing" means the second apply ran no
command that was not read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("eucalypt.net.runner")

#: Seconds a command may run before it is killed (``qemu-img`` on a big image, ``cp``).
DEFAULT_TIMEOUT = 120.0


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
            raise CommandError(self)
        return self


class CommandError(RuntimeError):
    """A host command failed; ``stderr`` says why."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        detail = (result.stderr.strip() or result.stdout.strip() or "no output")[:500]
        argv = shlex.join(result.argv)
        super().__init__(f"command failed ({result.returncode}): {argv}: {detail}")


def in_netns(argv: Sequence[str], netns: str | None) -> tuple[str, ...]:
    """``argv`` as run inside ``netns`` (``None``: the caller's own namespace)."""
    if netns is None:
        return tuple(argv)
    return ("ip", "netns", "exec", netns, *argv)


class Runner(Protocol):
    """What every host-changing step takes."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        netns: str | None = None,
        check: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> CommandResult: ...


class CommandRunner:
    """Runs commands as asyncio subprocesses."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        netns: str | None = None,
        check: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` (in ``netns``); with ``check``, raise CommandError unless it exits 0.

        A program that cannot start (exit 127) or outlives ``timeout`` (killed;
        exit -9) raises CommandError whatever ``check`` says.
        """
        full = in_netns([str(a) for a in argv], netns)
        limit = self.timeout if timeout is None else timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise CommandError(CommandResult(full, 127, "", f"cannot start: {exc}")) from exc
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None), limit
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise CommandError(
                CommandResult(full, -9, "", f"timed out after {limit:.0f} s")
            ) from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        assert proc.returncode is not None
        result = CommandResult(
            full, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )
        log.debug("command", extra={"argv": list(full), "rc": result.returncode})
        if check:
            result.check()
        return result


@dataclass(frozen=True)
class Recorded:
    argv: tuple[str, ...]
    input: str | None
    netns: str | None
    readonly: bool


@dataclass
class RecordingRunner:
    """A runner that runs through ``inner`` and records every command.

    ``changes`` lists the commands that were not read-only.
    """

    inner: Runner = field(default_factory=CommandRunner)
    commands: list[Recorded] = field(default_factory=list)

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        netns: str | None = None,
        check: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> CommandResult:
        self.commands.append(Recorded(tuple(argv), input, netns, readonly))
        return await self.inner.run(
            argv, input=input, netns=netns, check=check, readonly=readonly, timeout=timeout
        )

    @property
    def changes(self) -> list[Recorded]:
        return [c for c in self.commands if not c.readonly]

    def clear(self) -> None:
        self.commands.clear()
