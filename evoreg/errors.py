"""Errors that evoreg raises for bad input; the CLI prints them as one line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EvoregError(ValueError):
    """Bad input from a user: an unknown name, a bad hyperparameter, a misuse of ask/tell."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run after a whole generation; ``message`` says what was
    saved. A KeyboardInterrupt, so code that stops on Ctrl-C stops on it too."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum, self.message = signum, message


class UnknownNameError(EvoregError, KeyError):
    """A name (optimizer, problem, config key) that is not known."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Candidates that look like ``name`` (typos, other case, missing prefix)."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    matches = [lowered[f] for f in found]
    # A substring hit ("OnePlus" -> "ng:OnePlusOne") is often what the user meant.
    for c in candidates:
        if len(matches) >= n:
            break
        if name.lower() in c.lower() and c not in matches:
            matches.append(c)
    return matches


def unknown_name(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """An error for ``name`` that lists close matches among ``known``."""
    known = sorted(known)
    matches = close_matches(name, known)
    if matches:
        hint = "did you mean " + ", ".join(repr(m) for m in matches) + "?"
    elif len(known) <= 12:
        hint = "known: " + ", ".join(known) if known else "none are registered"
    else:
        hint = f"{len(known)} are known; `evoreg list` shows them"
    return UnknownNameError(f"unknown {kind} {name!r}; {hint}")
