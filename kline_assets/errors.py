"""Exception kinds that decide exit codes and retry behaviour."""


class BadInput(ValueError):
    """A user mistake: reported as one line, exit code 2, nothing written."""


class ExchangeFinal(RuntimeError):
    """The exchange said no in a way retrying cannot change (451, unknown symbol, 403, long ban)."""


class UnknownSymbol(ExchangeFinal):
    """The market does not list the symbol."""


class ExchangeTransient(RuntimeError):
    """Retries ran out on failures that are normally transient (5xx, resets, time-outs, bad bodies)."""


class Banned(ExchangeFinal):
    """429/418 with a Retry-After too long to wait out inside a run."""


class ChunkUnavailable(RuntimeError):
    """A day that was asked for cannot be served as stored: no chunk for it, or its file does not match
    the manifest (never handed over: reading it would spread bad data)."""


class StorageUnavailable(OSError):
    """The data root could not be reached, or kept failing (an object store's outage, writers that never let
    a commit through): one line, the work failed, a rerun may help."""
