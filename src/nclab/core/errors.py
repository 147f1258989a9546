"""The one exception type nclab raises for bad input."""


class NCInputError(ValueError):
    """Bad input: the message is one line that names the problem.

    The command-line interface prints it as ``error: <message>`` without a traceback.
    """
