"""What to do about a non-finite loss: skip the step, then fall back, then give up.

The release notes tell users to drop AMP and resume from the last good checkpoint by hand when
the loss turns NaN. The trainer does it itself: every non-finite step is skipped (no update
touches the weights); after ``patience`` of them in a row it first turns mixed precision off,
and if float32 fails too it restores the last good checkpoint, at most ``max_restores`` times.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class NonFiniteLossError(RuntimeError):
    """The loss stayed non-finite after every fallback."""


class Action(enum.Enum):
    CONTINUE = "continue"  # finite step, nothing to do
    SKIP = "skip"  # non-finite step skipped; keep going
    DISABLE_AMP = "disable_amp"  # repeated failures in mixed precision: carry on in float32
    RESTORE = "restore"  # repeated failures in float32: reload the last good checkpoint
    GIVE_UP = "give_up"


@dataclass
class NonFiniteGuard:
    patience: int = 3
    max_restores: int = 3
    consecutive: int = 0
    total_skipped: int = 0
    restores: int = 0

    def observe(self, finite: bool, amp_enabled: bool, can_restore: bool) -> Action:
        if finite:
            self.consecutive = 0
            return Action.CONTINUE
        self.consecutive += 1
        self.total_skipped += 1
        if self.consecutive < self.patience:
            return Action.SKIP
        self.consecutive = 0
        if amp_enabled:
            return Action.DISABLE_AMP
        if can_restore and self.restores < self.max_restores:
            self.restores += 1
            return Action.RESTORE
        return Action.GIVE_UP

    def state_dict(self) -> dict[str, int]:
        return {"total_skipped": self.total_skipped, "restores": self.restores}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.total_skipped = state.get("total_skipped", 0)
        self.restores = state.get("restores", 0)
