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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session, sessionmaker

from rdio_api.call_fields import CallData
from rdio_core import alerts, jobs, search, units
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
from rdio_core.settings import Settings

log = logging.getLogger(__name__)

MAX_BATCH = 128


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


@dataclass
class IngestResult:
    call_id: int
    duplicate: bool
    job_id: int | None = None
    job_status: str | None = None
    job_priority: int | None = None
    alert_ids: list[int] = field(default_factory=list)  # deliveries of rules that fired at upload


def plan_job(
    settings: Settings, system: int, talkgroup: int, duration: float | None
) -> tuple[str, str | None] | None:
    """Decide the transcription job created with a call: (status, reason) or None for no job."""
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
    if duration is not None and duration > cfg.max_audio_seconds:
        return (
            JobStatus.SKIPPED,
            f"audio too long: {duration:.1f}s > max_audio_seconds {cfg.max_audio_seconds}",
        )
    return JobStatus.PENDING, None


class CallWriter:
    """One thread that owns call inserts; callers await a future per call."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        on_jobs_committed: Callable[[list[tuple[int, int]]], None] | None = None,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.on_jobs_committed = on_jobs_committed
        # Ids of the calls each batch stored, after its commit (tone analysis: rdio_api.analysis_hook).
        self.on_calls_committed: Callable[[list[int]], None] | None = None
        self._queue: queue.Queue[tuple[IngestItem, concurrent.futures.Future[IngestResult]] | None] = (
            queue.Queue()
        )
        self._systems: dict[int, str | None] = {}
        self._talkgroups: dict[tuple[int, int], tuple[str | None, ...]] = {}
        self._thread = threading.Thread(target=self._run, name="call-writer", daemon=True)
        self._thread.start()

    async def submit(self, item: IngestItem) -> IngestResult:
        fut: concurrent.futures.Future[IngestResult] = concurrent.futures.Future()
        self._queue.put((item, fut))
        return await asyncio.wrap_future(fut)

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
            while len(batch) < MAX_BATCH:
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
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)
        new_jobs = [
            (r.job_id, r.job_priority)
            for r in results
            if r.job_id is not None and r.job_priority is not None and r.job_status == JobStatus.PENDING
        ]
        if new_jobs and self.on_jobs_committed is not None:
            try:
                self.on_jobs_committed(new_jobs)
            except Exception:
                log.exception("job publish hook failed; the sweeper will publish jobs %s", new_jobs)
        new_calls = [r.call_id for r in results if not r.duplicate]
        if new_calls and self.on_calls_committed is not None:
            try:
                self.on_calls_committed(new_calls)
            except Exception:
                log.exception("analysis publish hook failed; the sweeper will publish calls %s", new_calls)
        fired = [delivery for r in results for delivery in r.alert_ids]
        if fired:
            alerts.publish_deliveries(fired)

    def _commit(self, items: list[IngestItem]) -> list[IngestResult]:
        """De-duplicate and insert a batch in one transaction with multi-row INSERT ... RETURNING."""
        systems: dict[int, str | None] = {}
        talkgroups: dict[tuple[int, int], tuple[str | None, ...]] = {}
        window = timedelta(seconds=self.settings.upload.dedup_window_seconds)
        with self.factory() as session:
            seen = self._recent_calls(session, items, window)
            # Per item: an existing call id (duplicate), (index,) of the batch item it repeats, or None.
            dup_of: list[int | tuple[int] | None] = []
            fresh: list[int] = []
            for idx, item in enumerate(items):
                match = _match(seen, item, window)
                dup_of.append(match)
                if match is None:
                    fresh.append(idx)
                    c = item.call
                    seen.append(((idx,), c.system, c.talkgroup, c.date_time, c.source, item.audio.sha256))
            for idx in fresh:
                self._upsert_labels(session, items[idx].call, systems, talkgroups)
            call_ids: dict[int, int] = {}
            job_info: dict[int, tuple[int, str, int]] = {}
            fired: dict[int, list[int]] = {}
            if fresh:
                rows = [_call_row(items[idx]) for idx in fresh]
                ids = session.execute(
                    insert(Call).returning(Call.id, sort_by_parameter_order=True), rows
                ).scalars()
                call_ids = dict(zip(fresh, ids, strict=True))
                job_info = self._insert_jobs(session, items, fresh, call_ids)
                self._insert_transmissions(session, items, fresh, call_ids)
                fired = self._fire_alerts(session, rows, fresh, call_ids)
                # Searchable by label and unit at once; the transcript joins the document later.
                search.index_calls(
                    session, [(call_ids[idx], search.call_document(items[idx].call, None)) for idx in fresh]
                )
                session.execute(
                    insert(Event),
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
                results.append(IngestResult(call_ids[match[0]], True))
            else:
                results.append(IngestResult(match, True))
        return results

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
            plan = plan_job(self.settings, call.system, call.talkgroup, items[idx].audio.duration_seconds)
            if plan is None:
                continue
            status, reason = plan
            priority = tx.resolve(call.system, call.talkgroup).priority
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
        stmt = insert(TranscriptionJob).returning(TranscriptionJob.id, sort_by_parameter_order=True)
        ids = session.execute(stmt, rows).scalars()
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
            session.execute(insert(CallTransmission), rows)
        units.learn_units(session, heard, learn_aliases=self.settings.units.learn_aliases)

    def _fire_alerts(
        self, session: Session, rows: list[dict], fresh: list[int], call_ids: dict[int, int]
    ) -> dict[int, list[int]]:
        """Rules that wait for neither transcript nor tones (systems, talkgroups, units) fire with
        the call, in its transaction. With no such rule this is one check of the settings and no
        database work (bench/ingest.py)."""
        if not alerts.has_rules(self.settings, "upload"):
            return {}
        fired: dict[int, list[int]] = {}
        for idx, row in zip(fresh, rows, strict=True):
            ids = alerts.fire_alerts(session, self.settings, Call(**row, id=call_ids[idx]), "upload")
            if ids:
                fired[idx] = ids
        return fired

    def _recent_calls(self, session: Session, items: list[IngestItem], window: timedelta) -> list[tuple]:
        """Existing calls that could duplicate any item of the batch (one query for the batch)."""
        if window.total_seconds() <= 0:
            return []
        near = [
            and_(
                Call.system_id == it.call.system,
                Call.talkgroup == it.call.talkgroup,
                Call.date_time >= it.call.date_time - window,
                Call.date_time <= it.call.date_time + window,
            )
            for it in items
        ]
        cols = (Call.id, Call.system_id, Call.talkgroup, Call.date_time, Call.source, Call.audio_sha256)
        return [tuple(row) for row in session.execute(select(*cols).where(or_(*near)))]

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
    c = item.call
    a = item.audio
    return {
        "system_id": c.system,
        "talkgroup": c.talkgroup,
        "date_time": c.date_time,
        "source": c.source,
        "frequency": c.frequency,
        "frequencies": c.frequencies,
        "sources": c.sources,
        "patches": c.patches,
        "talkgroup_label": c.talkgroup_label,
        "talkgroup_group": c.talkgroup_group,
        "talkgroup_tag": c.talkgroup_tag,
        "talkgroup_name": c.talkgroup_name,
        "system_label": c.system_label,
        "talker_alias": c.talker_alias,
        "site": c.site,
        "audio_name": c.audio_name,
        "audio_type": c.audio_type,
        "audio_path": a.relative_path,
        "audio_sha256": a.sha256,
        "audio_bytes": a.size,
        "audio_mime": a.mime,
        "duration_seconds": a.duration_seconds,
        "received_at": utcnow(),
        "client_kind": item.client_kind,
        "key_name": item.key_name,
        "remote_addr": item.remote_addr,
        "meta": _meta(c),
    }


def _meta(c: CallData) -> dict | None:
    meta: dict = {}
    if c.meta:
        meta["trunk_recorder"] = c.meta
    if c.ignored:
        meta["ignored_fields"] = c.ignored
    return meta or None


class CommitError(Exception):
    """The database did not accept the call; the client gets 503 and the file is removed."""


def _commit_error() -> CommitError:
    return CommitError("database unavailable")
