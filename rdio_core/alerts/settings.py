"""``alerts``: rules that watch calls and what to do when one matches, validated at load.

A rule is checked when the settings load, like every other key: a regular expression that does not
compile, a word that normalises to nothing, an Apprise URL no plugin understands, two rules with
one name: each stops the program with one line naming the key (exit 2), instead of loading and then
never firing. It lives in ``rdio_core`` (the settings tree holds it) and imports nothing heavy:
Apprise is imported only when a rule has an Apprise action.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rdio_core.bounds import Id
from rdio_core.text_normalize import normalize_words

__all__ = [
    "ActionKind",
    "AlertAction",
    "AlertRule",
    "AlertSettings",
    "AppriseAction",
    "Stage",
    "Webhook",
    "WebhookAction",
]

Stage = Literal["upload", "tones", "transcript"]

TONE_KINDS = ("two_tone", "long", "hi_low", "dtmf")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Webhook(_Strict):
    """Where a webhook POSTs and how it signs (HMAC-SHA256 of ``secret``, see README, Alerts)."""

    url: str = Field(pattern=r"^https?://[^\s/]+", max_length=2000)
    # Required: an unsigned alert cannot be told from a forged one by its receiver.
    secret: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)


class WebhookAction(_Strict):
    """POST the alert document to a webhook: ``{webhook: {url, secret, headers}}``."""

    kind: Literal["webhook"] = "webhook"
    webhook: Webhook


class AppriseAction(_Strict):
    """An Apprise notification: ``{apprise: URL}``."""

    kind: Literal["apprise"] = "apprise"
    apprise: str = Field(min_length=1, max_length=2000)

    @field_validator("apprise")
    @classmethod
    def _supported(cls, url: str) -> str:
        _check_apprise(url)
        return url


def _kind(value: Any) -> Any:
    """The config names an action by its one key (``apprise:`` or ``webhook:``), as users have always
    written it; ``kind`` is derived from that key, so old configs load unchanged."""
    if isinstance(value, dict) and "kind" not in value:
        keys = [kind for kind in ("apprise", "webhook") if kind in value]
        if len(keys) != 1:
            raise ValueError("an action is either `apprise: URL` or `webhook: {url, secret}`")
        return {**value, "kind": keys[0]}
    return value


#: One alert action; each kind has its own model here and its own notifier in the worker
#: (rdio_tasks.alerts_task).
AlertAction = Annotated[
    Annotated[AppriseAction | WebhookAction, Field(discriminator="kind")], BeforeValidator(_kind)
]
ActionKind = Literal["apprise", "webhook"]


def _check_apprise(url: str) -> None:
    """Refuse a URL that no Apprise plugin takes (a typo would otherwise fail every delivery)."""
    try:
        import apprise
    except ImportError:  # pragma: no cover - apprise is a base dependency
        raise ValueError("apprise actions need the `apprise` package") from None
    if apprise.Apprise.instantiate(url) is None:
        raise ValueError("not a notification URL Apprise supports (see the Apprise wiki for the forms)")


class AlertRule(_Strict):
    """One rule. Conditions of different kinds must all hold; within a kind, any one entry is enough
    (any word, phrase or pattern; any of the listed systems, talkgroups, units, tones)."""

    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    words: list[str] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    systems: list[Id] = Field(default_factory=list)
    talkgroups: list[Id] = Field(default_factory=list)
    units: list[Id] = Field(default_factory=list)
    tones: list[str | float] = Field(default_factory=list)
    cooldown_seconds: float = Field(default=0.0, ge=0)
    actions: list[AlertAction] = Field(min_length=1)

    @field_validator("words", "phrases")
    @classmethod
    def _has_tokens(cls, values: list[str]) -> list[str]:
        for value in values:
            if not normalize_words(value.rstrip("*")):
                raise ValueError(f"{value!r} has nothing to match once normalised (letters or digits)")
        return values

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return values

    @field_validator("tones")
    @classmethod
    def _tone_specs(cls, values: list[str | float]) -> list[str | float]:
        for value in values:
            if isinstance(value, str) and not value.strip():
                raise ValueError("a tone is a configured tone name, a kind or a frequency in Hz")
            if not isinstance(value, str) and value <= 0:
                raise ValueError(f"tone frequency {value} Hz must be positive")
        return values

    @property
    def has_text(self) -> bool:
        return bool(self.words or self.phrases or self.patterns)

    @property
    def stage(self) -> Stage:
        """When the rule is evaluated: a text condition waits for the transcript, a tone condition
        for the tone analysis, anything else fires at upload."""
        if self.has_text:
            return "transcript"
        if self.tones:
            return "tones"
        return "upload"


class AlertSettings(_Strict):
    """Alert rules and how their deliveries are made (by the Celery ``alerts`` queue)."""

    # Where alert documents point (audio_url, call page). Null: http(s)://server.host:server.port.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    max_attempts: int = Field(default=5, ge=1)
    retry_backoff_max_seconds: int = Field(default=300, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    stale_after_seconds: float = Field(default=15.0, gt=0)
    tone_tolerance_percent: float = Field(default=1.5, gt=0, le=20)
    rules: list[AlertRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AlertRule]) -> list[AlertRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}: names identify a rule's history")
            seen.add(rule.name)
        return rules

    def rule(self, name: str) -> AlertRule | None:
        return next((r for r in self.rules if r.name == name), None)
