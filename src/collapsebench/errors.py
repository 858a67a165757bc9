"""User-facing errors: one clear message, exit status 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input (config, data file, plug-in name). Printed without traceback."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' if none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# The optional backends: the module a plug-in imports -> the extra of pyproject.toml that installs it
# (tests/test_backends.py holds this table to pyproject's optional-dependencies).
EXTRAS = {"trl": "trl", "vllm": "vllm", "lm_eval": "eval", "ray": "ray", "submitit": "slurm", "wandb": "wandb",
          "httpx": "judge", "tenacity": "judge"}


def missing_backend(module: str | None, what: str) -> UserError | None:
    """The one message for an optional backend that is not installed (None for any other module):
    what needs it, the module, and the extra that installs it."""
    root = (module or "").partition(".")[0]
    if root not in EXTRAS:
        return None
    return UserError(f"{what} needs the module '{root}', which is not installed; install it with: "
                     f"pip install -e \".[{EXTRAS[root]}]\"")
