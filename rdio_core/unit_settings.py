"""``units:`` in config.yaml: aliases for radio ids, per system, that win over what radios send.

Radios announce themselves with a talker alias (SDRTrunk's ``talkerAlias``, a trunk-recorder
srcList ``tag``) only some of the time and sometimes wrongly (a borrowed portable still says its
old owner). An agency that knows its fleet writes the names once here; the mapping is read at
display time, so a reload changes every call page and list at once, old calls included.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from rdio_core.bounds import Id

# One line of printable text, as a talkgroup label: no control characters (PostgreSQL refuses NUL).
Alias = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"),
]


class SystemUnits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id
    aliases: dict[Id, Alias] = Field(default_factory=dict)
    """Radio id -> the name shown for it (in YAML, quote the ids: ``"1234": Engine 7``)."""


class UnitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learn_aliases: bool = True
    """Keep the aliases uploads carry in the units table (off: only configured aliases show)."""
    systems: list[SystemUnits] = Field(default_factory=list)
    _aliases: dict[tuple[int, int], str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _one_entry_per_system(self) -> UnitSettings:
        seen: set[int] = set()
        for entry in self.systems:
            if entry.id in seen:
                raise ValueError(f"system {entry.id} is listed twice; put all its aliases in one entry")
            seen.add(entry.id)
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._aliases = {(s.id, unit): alias for s in self.systems for unit, alias in s.aliases.items()}

    def alias(self, system: int, unit: int) -> str | None:
        """The configured alias of a radio, or None."""
        return self._aliases.get((system, unit))

    def configured(self) -> dict[tuple[int, int], str]:
        """Every configured (system, unit) -> alias."""
        return dict(self._aliases)
