"""The exception types nclab raises: bad input, and a run stopped by a signal."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): the
    cause that a one-line error quotes."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class NCInputError(ValueError):
    """Bad input: the message is one line that names the problem.

    The command-line interface prints it as ``error: <message>`` without a traceback.
    """


class Interrupted(BaseException):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM after saving what it had done.

    The message is one line saying how to continue; ``exit_code`` is 128 + the signal
    number (130 for SIGINT, 143 for SIGTERM), what a shell reports for a process the
    signal ended. Like KeyboardInterrupt it is no ``Exception``: ``except Exception``
    does not swallow it.
    """

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
