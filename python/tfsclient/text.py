"""User text (a value, a file name, a server's message) made fit for a one-line error message."""


def one_line(text, limit=None, *, fold=False, more="..."):
    """text on one line, cut after `limit` characters (followed by `more`).

    fold=False shows line breaks as \\r and \\n (a value or file name stays recognizable); fold=True folds
    every run of whitespace into one space (a server's message, a repr that numpy spreads over lines).
    """
    text = str(text)
    return cut(" ".join(text.split()) if fold else text.replace("\r", "\\r").replace("\n", "\\n"), limit, more)


def cut(text, limit=None, more="..."):
    """text as it is, cut after `limit` characters (for text that repr() will quote, escapes and all)."""
    text = str(text)
    return text if limit is None or len(text) <= limit else text[:limit] + more


def printable(text):
    """text with the bytes that are not UTF-8 (from argv or the environment, as surrogates) shown as \\xNN."""
    try:
        return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def enum_name(enum, value, what="value"):
    """The name of an enum value a server sent, or "unknown WHAT N" for a number this client's schema does not
    know (a newer server's), where protobuf's Name() raises ValueError. enum: the enum's class or its descriptor."""
    found = getattr(enum, "DESCRIPTOR", enum).values_by_number.get(value)
    return found.name if found is not None else f"unknown {what} {value}"
