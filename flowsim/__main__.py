"""``python -m flowsim``: the same entry point as the ``flowsim`` console script.

The import of the CLI sits inside the guard, so a Ctrl-C while Python is still loading ends with
one line and exit code 130, like a Ctrl-C at any later moment (see ``flowsim.cli.main``).
"""

import sys


def _run() -> int:
    try:
        from flowsim.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("flowsim: interrupted\n")
        return 130
    return main()


sys.exit(_run())
