"""What a detected tone is, as stored in ``calls.tones`` (a JSON list of :meth:`Tone.to_json`).

No numpy here: the analyze task, the transcription worker and tests read stored tones back with
:meth:`Tone.from_json` without running the detector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rdio_core.tone_settings import ToneKind

__all__ = ["Tone", "ToneKind", "describe"]


@dataclass(frozen=True)
class Tone:
    """One page: its kind, frequencies in Hz (in the order heard), and start/end in seconds from the
    start of the call's audio. DTMF carries its digits (and, per digit, its low and high frequency)."""

    kind: ToneKind
    frequencies: tuple[float, ...]
    start: float
    end: float
    digits: str | None = None
    name: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def named(self, name: str | None) -> Tone:
        return replace(self, name=name)

    def to_json(self) -> dict[str, Any]:
        """The ``calls.tones`` element: kind, frequencies, start, end, and digits/name when set."""
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "frequencies": [round(f, 1) for f in self.frequencies],
            "start": round(self.start, 3),
            "end": round(self.end, 3),
        }
        if self.digits is not None:
            out["digits"] = self.digits
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tone:
        return cls(
            kind=ToneKind(data["kind"]),
            frequencies=tuple(float(f) for f in data.get("frequencies") or ()),
            start=float(data["start"]),
            end=float(data["end"]),
            digits=data.get("digits"),
            name=data.get("name"),
        )


def describe(tone: Tone) -> str:
    """One line for people: ``two-tone 1002.3/1270.7 Hz (Station 7) at 0.3-4.3 s``."""
    kind = tone.kind.value.replace("_", "-")
    what = (
        f"DTMF {tone.digits}"
        if tone.kind is ToneKind.DTMF
        else f"{kind} " + "/".join(f"{f:.1f}" for f in tone.frequencies) + " Hz"
    )
    name = f" ({tone.name})" if tone.name else ""
    return f"{what}{name} at {tone.start:.1f}-{tone.end:.1f} s"
