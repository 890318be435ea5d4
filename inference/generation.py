"""What one call produced, its token hash, and the text assembly that streams it (pure)."""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


def token_hash(token_ids: Iterable[int]) -> str:
    """Given token IDs, return hex sha256 of them as little-endian uint32s (the recorded output hash)."""
    digest = hashlib.sha256()
    for token in token_ids:
        digest.update(int(token).to_bytes(4, "little"))
    return digest.hexdigest()


@dataclass(frozen=True)
class Generation:
    """What one call produced. `token_ids` are every sampled token, end-of-generation included."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    prompt_token_hash: str
    finish_reason: str  # "stop" (end token or stop string) or "length"
    timings: dict[str, Any]

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def token_hash(self) -> str:
        return token_hash(self.token_ids)

    def to_json(self) -> dict[str, Any]:
        """Return the generation as plain JSON (what a worker sends back over its pipe)."""
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "prompt_tokens": self.prompt_tokens,
            "prompt_token_hash": self.prompt_token_hash,
            "finish_reason": self.finish_reason,
            "timings": self.timings,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generation:
        """Given Generation.to_json() output, return the generation."""
        return cls(
            text=data["text"],
            token_ids=tuple(data["token_ids"]),
            prompt_tokens=data["prompt_tokens"],
            prompt_token_hash=data["prompt_token_hash"],
            finish_reason=data["finish_reason"],
            timings=data.get("timings", {}),
        )


class TextAssembler:
    """Accumulates output bytes as text, cuts at the first stop string, streams safe text."""

    def __init__(self, stop: tuple[str, ...], on_text: Callable[[str], None] | None):
        self.stop = stop
        self.on_text = on_text
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.emitted = 0
        self.stopped = False
        # Text this long at the end could still be the start of a stop string.
        self.hold_back = max((len(s) for s in stop), default=1) - 1

    def add(self, piece: bytes) -> bool:
        """Given the next token's bytes, return True when a stop string has appeared."""
        search_from = max(0, len(self.text) - self.hold_back)
        self.text += self.decoder.decode(piece)
        for stop in self.stop:
            at = self.text.find(stop, search_from)
            if at >= 0:
                self.text = self.text[:at]
                self.stopped = True
                return True
        self._emit(len(self.text) - self.hold_back)
        return False

    def finish(self) -> str:
        """Return the final text (an undecodable tail replaced) after streaming the rest."""
        if not self.stopped:
            self.text += self.decoder.decode(b"", final=True)
        self._emit(len(self.text))
        return self.text

    def _emit(self, upto: int) -> None:
        if self.on_text is not None and upto > self.emitted:
            self.on_text(self.text[self.emitted:upto])
            self.emitted = upto
