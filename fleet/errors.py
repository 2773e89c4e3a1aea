"""Domain errors: each says what failed and what to do; the CLI turns them into one line and exit 1."""

from __future__ import annotations


class FleetError(Exception):
    """An expected failure the user can act on."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        """The one line shown to the user."""
        return f"{self.what}: {self.fix}" if self.fix else self.what


class ConfigError(FleetError):
    """The fleet definition is unreadable or invalid."""

    def __init__(self, what: str, problems: list[str] | None = None, fix: str = "") -> None:
        self.problems = problems or []
        super().__init__(what, fix)


class DependencyDown(FleetError):
    """A server or tool the command needs is not reachable or not installed."""


class CommandFailed(FleetError):
    """An outside command exited non-zero; carries the command and the tail of its stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, fix: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        what = f"`{' '.join(argv[:3])}{' ...' if len(argv) > 3 else ''}` exited {returncode}"
        if tail:
            what += f" ({tail})"
        super().__init__(what, fix)


class Unreachable(DependencyDown):
    """A server did not answer: the connection was refused or timed out."""


class Sealed(DependencyDown):
    """Vault answers but is sealed: nothing can be read or written until it is unsealed."""


class Denied(FleetError):
    """A server refused the request for want of permission (the token's policy)."""


class NotFound(FleetError):
    """A server has nothing at the path asked for."""
