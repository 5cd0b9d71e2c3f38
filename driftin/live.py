"""The old name of driftin.demo, the live-demo logic (kept so existing imports work; new code imports driftin.demo)."""
from .demo import *  # noqa: F401,F403
from .demo import __all__  # noqa: F401
