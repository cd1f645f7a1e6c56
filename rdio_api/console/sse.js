// Server-Sent Events over fetch(): EventSource cannot send the X-API-Key header, so the stream is
// read from a ReadableStream and parsed here (the WHATWG "event stream" format: lines, blank line
// ends an event, `id`, `event`, `data`, `retry` fields, `:` comments).
//
// On any break the stream reconnects with `Last-Event-ID` set to the id of the last event handed
// to the page, so the server replays what was missed. The id is committed only when its event is
// dispatched, not when the `id:` line is read: a connection cut in the middle of an event resumes
// before it, not after it.

import { ApiError, api } from "./api.js";

const SILENCE_MS = 45_000; // no byte (not even a `: ping`) for this long: the connection is dead
const MAX_BACKOFF_MS = 30_000;

/** Parses event-stream text fed in arbitrary chunks; calls `dispatch({id, type, data})`. */
export class EventStreamParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.reset();
    this.retry = null;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = null;
  }

  feed(text) {
    this.buffer += text;
    // A CR at the very end may be the first half of a CRLF split across chunks: wait for the next.
    const end = this.buffer.endsWith("\r") ? this.buffer.length - 1 : this.buffer.length;
    const lines = this.buffer.slice(0, end).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + this.buffer.slice(end);
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.dispatch({ id: this.id, type: this.type || "message", data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment (keep-alive ping)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

/**
 * A resuming event stream. `onEvent({id, type, data})` gets each event (data already JSON-parsed
 * when it is JSON); `onState(state, detail)` gets "connecting" | "live" | "reconnecting" | "failed".
 */
export class LiveStream {
  constructor(path, { onEvent, onState, onOpen }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onOpen = onOpen;
    this.lastEventId = null;
    this.retryMs = 1000;
    this.controller = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  /** Drop the connection now and reconnect (with Last-Event-ID), e.g. after a key change. */
  restart() {
    this.controller?.abort();
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      this.controller = new AbortController();
      this.onState(failures ? "reconnecting" : "connecting");
      try {
        const headers = { Accept: "text/event-stream" };
        if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
        const response = await api(this.path, { headers, signal: this.controller.signal, raw: true });
        failures = 0;
        this.onState("live");
        this.onOpen?.();
        await this.read(response.body, this.controller);
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && error.status !== 429 && error.status < 500) {
          // 403/404: retrying will not help until something changes (a new key restarts us).
          this.onState("failed", error.message);
          failures += 4;
        }
      }
      if (this.stopped) return;
      failures += 1;
      this.onState("reconnecting");
      const backoff = Math.min(this.retryMs * 2 ** Math.min(failures - 1, 5), MAX_BACKOFF_MS);
      await new Promise((resolve) => setTimeout(resolve, backoff * (0.75 + Math.random() / 2)));
    }
  }

  async read(body, controller) {
    const parser = new EventStreamParser((event) => {
      let data = event.data;
      try {
        data = JSON.parse(data);
      } catch {
        // not JSON: hand over the text
      }
      if (event.id !== null) this.lastEventId = event.id;
      this.onEvent({ id: event.id, type: event.type, data });
    });
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
        parser.feed(value);
        if (parser.retry !== null) this.retryMs = parser.retry;
      }
    } finally {
      clearTimeout(watchdog);
    }
  }
}
