"""What every answer shape shares: reading ORM rows, and the text a name may hold."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from rdio_core.bounds import UtcTime

__all__ = ["PRINTABLE", "Rows", "UtcTime"]


class Rows(BaseModel):
    """A shape built from ORM rows (``model_validate(row)``)."""

    model_config = ConfigDict(from_attributes=True)


# Printable text only: PostgreSQL refuses NUL in a string (a 500), and a model or language name never
# holds control characters.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
