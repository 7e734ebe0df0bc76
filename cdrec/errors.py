"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class CdrecError(Exception):
    """A mistake in the user's input (file, column, option, data); never a bug in cdrec."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`CdrecError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CdrecError(message)
