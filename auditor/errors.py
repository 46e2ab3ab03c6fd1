"""The one exception type the CLI turns into exit code 2 and a one-line message."""


class AuditError(Exception):
    """A user-facing error: bad input, bad config, corrupt snapshot. The message is one line."""


SHOWN_LIMIT = 80


def shown(value, limit: int = SHOWN_LIMIT) -> str:
    """A user's value as an error message shows it: Python's repr (control, bidi and other
    unprintable characters escaped), built with bounded effort and cut to about `limit`
    characters, so a hostile value can neither flood nor steer a terminal."""
    import reprlib

    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxstring, bounded.maxother = 3, limit + 8, limit
    bounded.maxlist = bounded.maxtuple = bounded.maxdict = bounded.maxset = 8
    return shown_text(bounded.repr(value), limit)


def shown_text(text: str, limit: int = SHOWN_LIMIT) -> str:
    """Free text (a library's message that may quote the input) on one line: unprintable
    characters escaped, cut to about `limit` characters."""
    text = str(text)[:limit * 4]
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."
