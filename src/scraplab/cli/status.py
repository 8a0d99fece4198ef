"""How a run ends: the ``status`` written to ``metrics.json`` and the process exit code, per kind of failure
(the table in docs/failure_behaviour.md)."""
from __future__ import annotations

import signal

from scraplab.cli.build import ConfigError
from scraplab.cli.checkpoint import CheckpointError
from scraplab.data.wav_folder import WavLoadError
from scraplab.optim.path_adam_saga import NonFiniteStateError
from scraplab.training.module import NonFiniteLossError


class RunInterrupted(RuntimeError):
    """The run was stopped by a signal (SIGTERM from a scheduler, SIGINT/Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


# (exception type, status, exit code); the first matching row wins. Exit codes 2-5 are the app's own; an
# interruption follows the shell convention 128 + signal number.
KNOWN = (
    (ConfigError, "config-error", 2),
    (WavLoadError, "data-error", 3),
    (CheckpointError, "checkpoint-error", 4),
    (NonFiniteLossError, "non-finite", 5),
    (NonFiniteStateError, "non-finite", 5),
)


def classify(err: BaseException) -> tuple[str, int]:
    """(status, exit code) of an exception that ended a run; unexpected errors are ("error", 1)."""
    if isinstance(err, RunInterrupted):
        return "interrupted", 128 + err.signum
    for kind, status, code in KNOWN:
        if isinstance(err, kind):
            return status, code
    return "error", 1


def is_known(err: BaseException) -> bool:
    """Failures explained by their message alone (printed as one line, no traceback)."""
    return isinstance(err, RunInterrupted) or any(isinstance(err, kind) for kind, _, _ in KNOWN)
