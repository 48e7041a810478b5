"""Errors a user can cause. The CLI prints them as one line and exits 2; nothing else does that."""


class UserError(Exception):
    """Bad input, bad config, a missing server: something the user can fix.

    The message is the whole story: what is wrong and where.
    """

    exit_code = 2
