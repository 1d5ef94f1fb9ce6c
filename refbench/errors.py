"""The one exception type meant for users; its message says what to do."""


class RefbenchError(Exception):
    """A problem the user can fix (bad argument, missing data set, ...).

    The CLI prints the message as one line and exits with status 2.
    """


# Exit statuses of every refbench command (the README's table).
EXIT_OK = 0              # everything asked for was measured and judged, and nothing gates
EXIT_GATE = 1            # a gate fired: a regression, a wrong answer, a newly failing cell, a missed target
EXIT_USAGE = 2           # bad input: the one line on stderr says what to do
EXIT_INCOMPLETE = 3      # cells asked for were not measured, or their change could not be judged
EXIT_INTERRUPTED = 130   # Ctrl-C or SIGTERM; what was written is kept
