"""The one exception type that means "the user gave us something we can't use".

The CLI prints it as a single line and exits with code 2; anything else is a bug and
keeps its traceback. It lives in model/ because model/ must not import bridge/.
"""


class JamstreamError(Exception):
    """Bad input: a one-line message that names the thing and, where possible, the fix."""
