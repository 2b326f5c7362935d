"""ai_computer: jailrun_client under the name code-execution examples import
(`from ai_computer import SandboxClient`); everything is jailrun_client's."""
from jailrun_client import *  # noqa: F401,F403
from jailrun_client import __all__, __version__  # noqa: F401
