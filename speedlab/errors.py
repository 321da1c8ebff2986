"""The one exception type for bad input and unusable environments: its message is shown to the user as is."""


class SpeedlabError(Exception):
    """An error whose message names the bad value and what would be valid; no traceback is shown for it."""


class DataError(SpeedlabError):
    """The dataset is missing, corrupt, or does not match what the configuration asks for."""
