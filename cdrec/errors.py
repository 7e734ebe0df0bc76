"""User-facing errors: the CLI prints their message on one line and exits with code 2 (1 for :class:`RunFailed`)."""


class CdrecError(Exception):
    """A mistake in the user's input (file, column, option, data); never a bug in cdrec."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`CdrecError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CdrecError(message)


class RunFailed(Exception):
    """Work that was started and did not all finish (e.g. rows of a recipe that raised); exit code 1."""
