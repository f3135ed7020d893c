"""The one way eucalypt changes a host: every command goes through a runner.

:class:`CommandRunner` runs an argv with asyncio (optionally inside a network
namespace, through ``ip netns exec``) and raises :class:`CommandError`, with
the command's stderr, when it fails. :class:`RecordingRunner` runs the same
commands and remembers them, so tests can read exactly what a step did.

Commands that only read (``ip -j link show``, ``iptables-save``) are run with
``readonly=True``; "apply twice does nothing" means the second apply ran no
command that was not read-only.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(RuntimeError):
    """A host command failed; ``stderr`` says why."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        super().__init__(
            f"command failed ({result.returncode}): {shlex.join(result.argv)}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


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
    ) -> CommandResult: ...


class CommandRunner:
    """Runs commands as asyncio subprocesses."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        netns: str | None = None,
        check: bool = True,
        readonly: bool = False,
    ) -> CommandResult:
        """Run ``argv`` (in ``netns``); with ``check``, raise CommandError unless it exits 0."""
        full = in_netns(argv, netns)
        proc = await asyncio.create_subprocess_exec(
            *full,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(input.encode() if input is not None else None)
        assert proc.returncode is not None
        result = CommandResult(full, proc.returncode, out.decode(), err.decode())
        if check and result.returncode != 0:
            raise CommandError(result)
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
    ) -> CommandResult:
        self.commands.append(Recorded(tuple(argv), input, netns, readonly))
        return await self.inner.run(argv, input=input, netns=netns, check=check, readonly=readonly)

    @property
    def changes(self) -> list[Recorded]:
        return [c for c in self.commands if not c.readonly]

    def clear(self) -> None:
        self.commands.clear()
