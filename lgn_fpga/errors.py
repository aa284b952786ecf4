"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix: bad input, a missing tool, a net too big for the board.

    The CLI prints ``str(error)`` on one line on stderr and exits with ``exit_code``;
    it never shows a traceback for these.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


#: The one install hint for everything the ``train`` extra brings (torch, scikit-learn,
#: mlxtend, matplotlib); quoted so that every shell accepts it as printed.
INSTALL_TRAIN = "pip install -e '.[train]'"
