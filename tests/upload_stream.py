"""A steady stream of distinct SDRTrunk-shaped uploads, every answer counted: what the fault tests
and bench/faults.py measure loss with (SDRTrunk never retries, so any non-200 is a lost call)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.helpers import SDRTRUNK_BOUNDARY, clip, sdrtrunk_body


@dataclass
class Answer:
    sent_at: float
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    seconds: float
    body: str


@dataclass
class UploadStream:
    """``rate`` uploads a second to ``url()`` (read at each send: a restart may move the server)
    from a pool of threads, each a new call (its own talkgroup) of ``system``."""

    url: Callable[[], str]
    key: str
    system: int
    rate: float = 20.0
    threads: int = 16
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _audio: bytes = field(default_factory=lambda: clip("speech_sdrtrunk.mp3"))

    def start(self) -> UploadStream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> UploadStream:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self

    def _run(self) -> None:
        lock = threading.Lock()
        local = threading.local()
        with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
            n = 0
            begin = time.monotonic()
            while not self._stop.is_set():
                pool.submit(self._send, n, lock, local)
                n += 1
                delay = begin + n / self.rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def _send(self, n: int, lock: threading.Lock, local: threading.local) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=30)
        fields = [
            ("key", self.key),
            ("system", str(self.system)),
            ("dateTime", str(int(time.time()))),
            ("talkgroup", str(100_000 + n)),
            ("source", str(1_000_000 + n)),
            ("frequency", "851012500"),
            ("talkgroupLabel", f"TG {n}"),
            ("systemLabel", "Fault test"),
        ]
        body = sdrtrunk_body(fields, self._audio + n.to_bytes(4, "big"))
        sent = time.monotonic()
        try:
            r = client.post(
                self.url() + "/api/call-upload",
                content=body,
                headers={"Content-Type": f"multipart/form-data; boundary={SDRTRUNK_BOUNDARY}"},
            )
            answer = Answer(sent, r.status_code, time.monotonic() - sent, r.text)
        except httpx.HTTPError as exc:
            answer = Answer(sent, 0, time.monotonic() - sent, repr(exc))
        with lock:
            self.answers.append(answer)

    # -- figures -------------------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        return sum(1 for a in self.answers if a.status == 200 and "imported successfully" in a.body)

    @property
    def refused(self) -> list[Answer]:
        return [a for a in self.answers if not (a.status == 200 and "imported successfully" in a.body)]

    def summary(self) -> str:
        statuses = Counter(a.status for a in self.answers)
        return f"{len(self.answers)} sent, {self.accepted} accepted, answers {dict(statuses)}"

    def latency(self, q: float, since: float = 0.0, until: float = float("inf")) -> float:
        values = sorted(a.seconds for a in self.answers if since <= a.sent_at <= until)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]
