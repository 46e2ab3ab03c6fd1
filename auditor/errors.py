"""The one exception type the CLI turns into exit code 2 and a one-line message."""


class AuditError(Exception):
    """A user-facing error: bad input, bad config, corrupt snapshot. The message is one line."""
