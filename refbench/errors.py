"""The one exception type meant for users; its message says what to do."""


class RefbenchError(Exception):
    """A problem the user can fix (bad argument, missing data set, ...).

    The CLI prints the message as one line and exits with status 2.
    """
