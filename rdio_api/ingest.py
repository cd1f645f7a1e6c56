"""Accept a call durably: audio fsynced on disk and row committed before the client hears 200.

Group commit: every upload hands its row to one writer thread, which takes everything waiting,
de-duplicates, inserts and commits once. Under a burst of concurrent SDRTrunk uploads that turns N
fsyncing commits into one without weakening durability (no caller is answered before the commit
that holds its row). The writer is also the single place where duplicate detection happens, so two
recorders racing with the same call cannot both insert it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from rdio_core import jobs, search, units
from rdio_core.alerts import outbox as alert_outbox
from rdio_core.calls import CallData, StoredCall
from rdio_core.models import (
    Call,
    CallTransmission,
    Event,
    EventKind,
    JobStatus,
    System,
    Talkgroup,
    TranscriptionJob,
    utcnow,
)
from rdio_core.pipeline import Pipeline
from rdio_core.settings import Settings

log = logging.getLogger(__name__)

MAX_BATCH = 128
#: A batch whose calls start within this span is de-duplicated with one range query (see
#: _recent_calls); the few extra rows it reads are dropped by _match.
RANGE_SPAN = timedelta(hours=1)


@dataclass
class StoredAudio:
    relative_path: str
    sha256: str
    size: int
    mime: str
    duration_seconds: float | None


@dataclass
class IngestItem:
    call: CallData
    audio: StoredAudio
    client_kind: str
    key_name: str | None
    remote_addr: str | None
    # An archive import (rdio_api.importers) stores calls as an upload would, but it chooses whether
    # they get a job (and at which priority) and whether alert rules see them at all.
    transcribe: bool = True
    job_priority: int | None = None  # None: transcription.default_priority
    alerts: bool = True
    origin: dict[str, Any] | None = None  # where an imported call came from, kept in meta["import"]
    # Idempotency key carried into calls.ingest_key: a spooled call is committed exactly once.
    ingest_key: str | None = None
    received_at: datetime | None = None  # when the upload arrived (a spooled call commits later)
    from_spool: bool = False  # its key may already be stored: look before inserting


@dataclass
class IngestResult:
    call_id: int
    duplicate: bool
    job_id: int | None = None
    job_status: str | None = None
    job_priority: int | None = None
    alert_ids: list[int] = field(default_factory=list)  # deliveries of rules that fired at upload
    already_stored: bool = False  # a spooled call whose key is in the database already


def plan_job(
    settings: Settings, system: int, talkgroup: int, duration: float | None
) -> tuple[str, str | None] | None:
    """Decide the transcription job created with a call: (status, reason) or None for no job.

    Too long is not decided here: ``duration`` is what the container says (MP3/AAC estimates, a
    FLAC's or MP4's header), and a header claiming 10 hours over 2 s of speech got the call skipped,
    never transcribed. The worker decides on the decoded audio, decoding at most
    ``max_audio_seconds`` + 0.5 s (rdio_tasks.audio_decode), and corrects the stored duration."""
    cfg = settings.transcription
    if not cfg.enabled:
        return None
    if not cfg.resolve(system, talkgroup).enabled:
        return JobStatus.SKIPPED, f"transcription is off for system {system} talkgroup {talkgroup}"
    if duration is not None and duration < cfg.min_audio_seconds:
        return (
            JobStatus.SKIPPED,
            f"audio too short: {duration:.2f}s < min_audio_seconds {cfg.min_audio_seconds}",
        )
    return JobStatus.PENDING, None


class CallWriter:
    """One thread that owns call inserts; callers await a future per call."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        pipeline: Pipeline | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.factory = factory
        self.max_batch = max_batch
        self.settings = settings
        # Publishes what each batch committed: its jobs, its calls' tone analyses, the deliveries
        # of rules that fired (rdio_core.pipeline). None without a broker: all wait for a sweeper.
        self.pipeline = pipeline
        self._queue: queue.Queue[tuple[IngestItem, concurrent.futures.Future[IngestResult]] | None] = (
            queue.Queue()
        )
        self._systems: dict[int, str | None] = {}
        self._talkgroups: dict[tuple[int, int], tuple[str | None, ...]] = {}
        self._thread = threading.Thread(target=self._run, name="call-writer", daemon=True)
        self._thread.start()

    async def submit(self, item: IngestItem) -> IngestResult:
        return await asyncio.wrap_future(self.submit_nowait(item))

    def submit_nowait(self, item: IngestItem) -> concurrent.futures.Future[IngestResult]:
        """Queue ``item`` from any thread (importers, the watched folder); the future settles after
        the commit that holds it, like an upload's."""
        fut: concurrent.futures.Future[IngestResult] = concurrent.futures.Future()
        self._queue.put((item, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._write_batch(batch)
            if stop:
                return

    def _write_batch(self, batch: list[tuple[IngestItem, concurrent.futures.Future[IngestResult]]]) -> None:
        try:
            results = self._commit([item for item, _ in batch])
        except UNAVAILABLE as exc:
            # The database is away or locked, not the rows at fault: no one-by-one retry (each
            # would wait on the same outage); the uploads go to the spool (rdio_api.spool).
            log.warning("database unavailable for %d calls: %s", len(batch), type(exc).__name__)
            for _, fut in batch:
                fut.set_exception(CommitError("database unavailable", unavailable=True))
            return
        except Exception:
            if len(batch) == 1:
                log.exception("call insert failed")
                batch[0][1].set_exception(_commit_error())
                return
            # One bad row must not fail its neighbours: retry each on its own.
            log.warning("batch of %d failed; retrying one by one", len(batch), exc_info=True)
            for pair in batch:
                self._write_batch([pair])
            return
        # Handed to the publishers before anyone hears of the commit (queue puts, no broker wait):
        # a caller that saw its result (the importer waiting for its analyses) finds them there.
        if self.pipeline is not None:
            self._publish(self.pipeline, results)
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)

    @staticmethod
    def _publish(pipeline: Pipeline, results: list[IngestResult]) -> None:
        """Hand the batch's new rows to the publishers (best effort: the sweepers cover a failure)."""
        new_jobs = [
            (r.job_id, r.job_priority)
            for r in results
            if r.job_id is not None and r.job_priority is not None and r.job_status == JobStatus.PENDING
        ]
        new_calls = [r.call_id for r in results if not r.duplicate]
        fired = [delivery for r in results for delivery in r.alert_ids]
        try:
            pipeline.jobs_committed(new_jobs)
            pipeline.calls_committed(new_calls)
            pipeline.deliveries_fired(fired)
        except Exception:
            log.exception("publishing a batch failed; the sweepers will publish it")

    def _commit(self, items: list[IngestItem]) -> list[IngestResult]:
        """De-duplicate and insert a batch in one transaction with multi-row INSERT ... RETURNING."""
        systems: dict[int, str | None] = {}
        talkgroups: dict[tuple[int, int], tuple[str | None, ...]] = {}
        window = timedelta(seconds=self.settings.upload.dedup_window_seconds)
        with self.factory() as session:
            seen = _recent_calls(session, items, window)
            stored_keys = self._stored_keys(session, items)
            batch_keys: dict[str, int] = {}
            # Per item: an existing call id (duplicate), (index,) of the batch item it repeats, or None.
            dup_of: list[int | tuple[int] | None] = []
            same_key: set[int] = set()
            fresh: list[int] = []
            for idx, item in enumerate(items):
                key = item.ingest_key
                if key is not None and (key in stored_keys or key in batch_keys):
                    same_key.add(idx)
                    dup_of.append(stored_keys[key] if key in stored_keys else (batch_keys[key],))
                    continue
                match = _match(seen, item, window)
                dup_of.append(match)
                if match is None:
                    fresh.append(idx)
                    if key is not None:
                        batch_keys[key] = idx
                    c = item.call
                    seen.append(((idx,), c.system, c.talkgroup, c.date_time, c.source, item.audio.sha256))
            for idx in fresh:
                self._upsert_labels(session, items[idx].call, systems, talkgroups)
            call_ids: dict[int, int] = {}
            job_info: dict[int, tuple[int, str, int]] = {}
            fired: dict[int, list[int]] = {}
            if fresh:
                rows = [_call_row(items[idx]) for idx in fresh]
                ids = session.execute(_INSERT_CALLS, rows).scalars()
                call_ids = dict(zip(fresh, ids, strict=True))
                job_info = self._insert_jobs(session, items, fresh, call_ids)
                self._insert_transmissions(session, items, fresh, call_ids)
                alerting = {i for i in fresh if items[i].alerts}
                fired = self._fire_alerts(session, rows, fresh, call_ids, alerting)
                # Searchable by label and unit at once; the transcript joins the document later.
                search.index_calls(
                    session, [(call_ids[idx], search.call_document(items[idx].call, None)) for idx in fresh]
                )
                session.execute(
                    _INSERT_EVENTS,
                    [
                        {"kind": EventKind.CALL_CREATED, "call_id": call_ids[idx], "created_at": utcnow()}
                        for idx in fresh
                    ],
                )
            session.commit()
        self._systems.update(systems)
        self._talkgroups.update(talkgroups)
        results = []
        for idx, match in enumerate(dup_of):
            if match is None:
                job_id, job_status, job_priority = job_info.get(idx, (None, None, None))
                results.append(
                    IngestResult(call_ids[idx], False, job_id, job_status, job_priority, fired.get(idx, []))
                )
            elif isinstance(match, tuple):
                results.append(IngestResult(call_ids[match[0]], True, already_stored=idx in same_key))
            else:
                results.append(IngestResult(match, True, already_stored=idx in same_key))
        return results

    def _stored_keys(self, session: Session, items: list[IngestItem]) -> dict[str, int]:
        """Calls already stored under a spooled item's key (one query, only when draining)."""
        keys = [it.ingest_key for it in items if it.from_spool and it.ingest_key is not None]
        if not keys:
            return {}
        rows = session.execute(select(Call.ingest_key, Call.id).where(Call.ingest_key.in_(keys)))
        return {key: call_id for key, call_id in rows if key is not None}

    def _insert_jobs(
        self, session: Session, items: list[IngestItem], fresh: list[int], call_ids: dict[int, int]
    ) -> dict[int, tuple[int, str, int]]:
        """Create each new call's transcription job in the call's own transaction.

        Returns (job id, status, priority) per batch index: the publisher needs the priority and
        should not read back what was just written."""
        rows, owners = [], []
        now = utcnow()
        tx = self.settings.transcription
        waiting: int | None = None  # the backlog, counted once per batch if a call may be deferred
        for idx in fresh:
            call = items[idx].call
            if not items[idx].transcribe:
                continue
            plan = plan_job(self.settings, call.system, call.talkgroup, items[idx].audio.duration_seconds)
            if plan is None:
                continue
            status, reason = plan
            priority = items[idx].job_priority or tx.resolve(call.system, call.talkgroup).priority
            depth = tx.defer_backlog_depth
            if status == JobStatus.PENDING and depth is not None and priority >= tx.defer_priority:
                if waiting is None:
                    waiting = jobs.backlog(session)
                if waiting >= depth:
                    status, reason = JobStatus.DEFERRED, jobs.deferral_reason(waiting, depth)
            if status == JobStatus.PENDING and waiting is not None:
                waiting += 1  # this batch's own jobs deepen the backlog too
            rows.append(jobs.job_row(call_ids[idx], priority, JobStatus(status), reason, now=now))
            owners.append(idx)
        if not rows:
            return {}
        ids = session.execute(_INSERT_JOBS, rows).scalars()
        return {
            idx: (job_id, row["status"], row["priority"])
            for idx, job_id, row in zip(owners, ids, rows, strict=True)
        }

    def _insert_transmissions(
        self, session: Session, items: list[IngestItem], fresh: list[int], call_ids: dict[int, int]
    ) -> None:
        """Each new call's transmissions (srcList / sources / source) and the radios they name,
        two multi-row statements for the whole batch (rdio_core.units)."""
        rows: list[dict] = []
        heard: list[units.Sighting] = []
        for idx in fresh:
            item, call_id = items[idx], call_ids[idx]
            c = item.call
            origin: units.Origin = "srcList" if item.client_kind == "trunk-recorder" else "sources"
            try:
                parsed = units.parse_transmissions(
                    c.source, c.talker_alias, c.sources, item.audio.duration_seconds, origin
                )
            except Exception:  # a parsing bug must not cost the call: it is stored without them
                log.exception("call %s: transmissions not read", call_id)
                continue
            if parsed.problems:
                log.info("call %s: transmissions skipped: %s", call_id, "; ".join(parsed.problems[:5]))
            rows += units.transmission_rows(call_id, parsed.transmissions)
            heard += units.sightings(c.system, c.date_time, parsed.transmissions)
        if rows:
            session.execute(_INSERT_TRANSMISSIONS, rows)
        units.learn_units(session, heard, learn_aliases=self.settings.units.learn_aliases)

    def _fire_alerts(
        self,
        session: Session,
        rows: list[dict],
        fresh: list[int],
        call_ids: dict[int, int],
        alerting: set[int],
    ) -> dict[int, list[int]]:
        """Rules that wait for neither transcript nor tones (systems, talkgroups, units) fire with
        the call, in its transaction. With no such rule this is one check of the settings and no
        database work (bench/ingest.py)."""
        if not alert_outbox.has_rules(self.settings, "upload"):
            return {}
        fired: dict[int, list[int]] = {}
        for idx, row in zip(fresh, rows, strict=True):
            if idx not in alerting:
                continue
            stored = StoredCall.model_validate({**row, "id": call_ids[idx], "tones": None})
            ids = alert_outbox.fire_alerts(session, self.settings, stored, "upload")
            if ids:
                fired[idx] = ids
        return fired

    def _upsert_labels(
        self,
        session: Session,
        c: CallData,
        systems: dict[int, str | None],
        talkgroups: dict[tuple[int, int], tuple[str | None, ...]],
    ) -> None:
        """Learn system and talkgroup labels from uploads, writing only when something changed."""
        known = systems.get(c.system, self._systems.get(c.system, ...))
        if known is ... or (c.system_label and c.system_label != known):
            system = session.get(System, c.system)
            if system is None:
                system = System(id=c.system, label=c.system_label)
                session.add(system)
                session.flush()
            elif c.system_label and system.label != c.system_label:
                system.label = c.system_label
            systems[c.system] = system.label
        key = (c.system, c.talkgroup)
        labels = (c.talkgroup_label, c.talkgroup_name, c.talkgroup_tag, c.talkgroup_group)
        cached = talkgroups.get(key, self._talkgroups.get(key))
        if cached is not None and all(
            new is None or new == old for new, old in zip(labels, cached, strict=True)
        ):
            return
        tg = session.execute(
            select(Talkgroup).where(Talkgroup.system_id == c.system, Talkgroup.talkgroup == c.talkgroup)
        ).scalar_one_or_none()
        if tg is None:
            tg = Talkgroup(system_id=c.system, talkgroup=c.talkgroup)
            session.add(tg)
        for attr, value in zip(("label", "name", "tag", "group"), labels, strict=True):
            if value is not None:
                setattr(tg, attr, value)
        talkgroups[key] = (tg.label, tg.name, tg.tag, tg.group)


_CALLS = cast(Table, Call.__table__)
_JOBS = cast(Table, TranscriptionJob.__table__)
# Core statements built once: the ORM's bulk-insert path (per-row state, identity bookkeeping) cost
# more CPU per upload than the INSERTs themselves (profiled with bench/ingest.py --concurrency 32).
_INSERT_CALLS = _CALLS.insert().returning(_CALLS.c.id, sort_by_parameter_order=True)
_INSERT_JOBS = _JOBS.insert().returning(_JOBS.c.id, sort_by_parameter_order=True)
_INSERT_EVENTS = cast(Table, Event.__table__).insert()
_INSERT_TRANSMISSIONS = cast(Table, CallTransmission.__table__).insert()
_RECENT_CALLS = select(
    Call.id, Call.system_id, Call.talkgroup, Call.date_time, Call.source, Call.audio_sha256
).where(
    Call.system_id.in_(bindparam("systems", expanding=True)),
    Call.talkgroup.in_(bindparam("talkgroups", expanding=True)),
    Call.date_time >= bindparam("since"),
    Call.date_time <= bindparam("until"),
)


def _recent_calls(session: Session, items: list[IngestItem], window: timedelta) -> list[tuple]:
    """Existing calls that could duplicate any item of the batch (one query for the batch).

    When the batch spans at most :data:`RANGE_SPAN` (a burst of live uploads, an import read in
    time order) that is one range over the (system, talkgroup, time) index; a wider batch asks per
    item. One OR term per item took 46 ms of CPU to build and compile for a 128-call batch, the
    range 0.45 ms. Profiled, a 3,000-call import spent 2.2 s of 7.5 s in it (checked before copying
    and again in the writer); with the range it ran at 511 calls/s instead of 402."""
    if window.total_seconds() <= 0:
        return []
    cols = (Call.id, Call.system_id, Call.talkgroup, Call.date_time, Call.source, Call.audio_sha256)
    times = [it.call.date_time for it in items]
    if max(times) - min(times) <= RANGE_SPAN:
        params = {
            "systems": sorted({it.call.system for it in items}),
            "talkgroups": sorted({it.call.talkgroup for it in items}),
            "since": min(times) - window,
            "until": max(times) + window,
        }
        # Compiled once (expanding IN): a new statement per batch size cost ~0.1 ms per upload.
        return [tuple(row) for row in session.execute(_RECENT_CALLS, params)]
    near = [
        and_(
            Call.system_id == it.call.system,
            Call.talkgroup == it.call.talkgroup,
            Call.date_time >= it.call.date_time - window,
            Call.date_time <= it.call.date_time + window,
        )
        for it in items
    ]
    return [tuple(row) for row in session.execute(select(*cols).where(or_(*near)))]


def existing_duplicates(session: Session, items: list[IngestItem], window_seconds: float) -> list[int | None]:
    """Per item, the id of a stored call it repeats (the writer's rule), or None. Importers ask this
    before copying audio, so a rerun reads its source but writes nothing. The window is at least a
    second: with ``dedup_window_seconds: 0`` a rerun of the same archive still finds its own calls
    (same start, same audio)."""
    window = timedelta(seconds=max(window_seconds, 1.0))
    seen = _recent_calls(session, items, window)
    found: list[int | None] = []
    for item in items:
        match = _match(seen, item, window)
        found.append(match if isinstance(match, int) else None)
    return found


def _match(seen: list[tuple], item: IngestItem, window: timedelta) -> int | tuple[int] | None:
    """Same system and talkgroup, start within the window, and same source or same audio."""
    c = item.call
    if window.total_seconds() <= 0:
        return None
    for ident, system, talkgroup, when, source, sha in seen:
        if system != c.system or talkgroup != c.talkgroup or abs(when - c.date_time) > window:
            continue
        if sha == item.audio.sha256 or (c.source is not None and source == c.source):
            return ident
    return None


def _call_row(item: IngestItem) -> dict:
    """The calls row: the call's own fields (rdio_core.calls) and what the server adds to them."""
    a = item.audio
    return {
        **item.call.columns(),
        "audio_path": a.relative_path,
        "audio_sha256": a.sha256,
        "audio_bytes": a.size,
        "audio_mime": a.mime,
        "duration_seconds": a.duration_seconds,
        "received_at": item.received_at or utcnow(),
        "client_kind": item.client_kind,
        "key_name": item.key_name,
        "remote_addr": item.remote_addr,
        "meta": _meta(item.call, item.origin),
        "ingest_key": item.ingest_key,
    }


def _meta(c: CallData, origin: dict[str, Any] | None = None) -> dict | None:
    meta: dict = {}
    if origin:
        meta["import"] = origin
    if c.meta:
        meta["trunk_recorder"] = c.meta
    if c.ignored:
        meta["ignored_fields"] = c.ignored
    return meta or None


class CommitError(Exception):
    """The database did not accept the call. ``unavailable``: it is away or locked (the upload is
    spooled); otherwise it refused the row (the client gets 503 and the file is removed)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


# Errors that say the database is away, restarting or locked, not that a row is wrong.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError)


def _commit_error() -> CommitError:
    return CommitError("database refused the call")
