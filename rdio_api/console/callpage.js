// One call, everything stored about it: when (date, local time and zone), the frequency in MHz,
// the radios that transmitted (each segment of the transcript under the radio on air, each radio a
// link to its other calls), its dispatch tones, a player and clickable segments, copy-link and
// download buttons. Below, collapsed (for whoever debugs a transcript, not for the listener): the
// model's raw text next to the filtered one with every removal and its reason, the job's facts and
// history, the fields as stored; and a re-transcribe button (the server decides whether this key may).

import { ApiError, api } from "./api.js";
import { alertMark, toneText, tonesNode, transcriptNode, unitLink, unitsNode, whyNoTranscript } from "./cards.js";
import { frequencyText, fullDateTime, labelCells, paintTalkgroup } from "./format.js";
import { copyLink, downloadAudio } from "./share.js";
import { player } from "./player.js";
import { alertsOf, bus, putCall, segmentsOf, systemLabels } from "./store.js";
import { clear, h, seconds, systemName, talkgroupName, unitName } from "./dom.js";

function value(v) {
  if (v === null || v === undefined || v === "") return h("span.none", {}, "—");
  if (typeof v === "object") return h("pre.json", {}, JSON.stringify(v, null, 2));
  return String(v);
}

function definitionList(entries) {
  return h(
    "dl.fields",
    {},
    entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, value(v))]),
  );
}

/** A table from a list of objects (units, frequencies, removals), columns in first-seen order. */
function table(rows, columns) {
  const cols = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return h(
    "div.table-wrap",
    {},
    labelCells(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) => h("td", {}, value(r[c])))))),
      ),
    ),
  );
}

function section(title, ...children) {
  return h("section.panel", {}, h("h2", {}, title), ...children);
}

/** A panel for debugging, closed until asked for: the listener reads the transcript above it. */
function debugSection(title, ...children) {
  return h("details.panel.debug", {}, h("summary", {}, h("h2", {}, title)), ...children);
}

function jobFacts(job) {
  const confidence = typeof job.confidence === "number" ? `${(job.confidence * 100).toFixed(0)} %` : null;
  const language =
    job.language && typeof job.language_probability === "number"
      ? `${job.language} (${(job.language_probability * 100).toFixed(0)} %)`
      : job.language;
  return definitionList([
    ["job", job.id],
    ["status", job.status],
    ["error", job.error],
    ["model", job.model],
    ["language", language],
    ["device", [job.device, job.compute_type].filter(Boolean).join(" / ")],
    ["confidence", confidence],
    ["audio", seconds(job.audio_seconds, 2)],
    ["processing", typeof job.processing_ms === "number" ? `${Math.round(job.processing_ms)} ms` : null],
    ["real-time factor", job.real_time_factor],
    ["attempts", job.attempts],
    ["worker", job.worker],
    ["created", job.created_at],
    ["started", job.started_at],
    ["finished", job.finished_at],
  ]);
}

/** Each key-up: when (a button that plays from there), the radio (a search link), its alias. */
function transmissionsTable(call, transmissions) {
  const rows = transmissions.map((t) =>
    h(
      t.emergency ? "tr.emergency" : "tr",
      {},
      h(
        "td",
        {},
        h(
          "button.seek",
          { type: "button", title: "Play from here", onclick: () => player.seek(call, t.offset_seconds) },
          seconds(t.offset_seconds),
        ),
      ),
      h("td", {}, value(t.duration_seconds != null ? seconds(t.duration_seconds) : null)),
      h("td", {}, t.unit != null ? unitLink(t) : value(null)),
      h("td", {}, value(t.alias_source)),
      h("td", {}, t.emergency ? "EMERGENCY" : ""),
      h("td", {}, t.origin),
    ),
  );
  const cols = ["at", "for", "radio", "alias from", "emergency", "field"];
  return h(
    "div.table-wrap",
    {},
    labelCells(
      h(
        "table.transmissions",
        {},
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows),
      ),
    ),
  );
}

function tonesSection(full) {
  if (!Array.isArray(full.tones)) return section("Tones", h("p.note", {}, "Not analysed yet."));
  if (!full.tones.length) return section("Tones", h("p.note", {}, "No dispatch tones."));
  return section(
    "Tones",
    table(
      full.tones.map((t) => ({
        tone: toneText(t),
        kind: t.kind,
        "frequencies (Hz)": (t.frequencies || []).map((f) => Number(f).toFixed(1)).join(" / "),
        digits: t.digits ?? null,
        at: `${seconds(t.start)}–${seconds(t.end)}`,
      })),
      ["tone", "kind", "frequencies (Hz)", "digits", "at"],
    ),
  );
}

/** The words alignment timed (WhisperX gives a word no start when it could not place it). */
function wordTimings(segments) {
  return (segments || []).flatMap((seg) => seg.words || []).filter((w) => typeof w.start === "number");
}

/** Each timed word, its start under it; a click plays from it (the transcript's own seek handler). */
function wordsNode(call, words) {
  return h(
    "div.transcript",
    { dataset: { callId: call.id } },
    h(
      "p.words",
      {},
      words.map((w) => [
        h(
          "span.seg.word",
          {
            role: "button",
            tabindex: "0",
            title: `${seconds(w.start)}–${seconds(w.end)}${w.score != null ? `, score ${Number(w.score).toFixed(2)}` : ""}: play from here`,
            dataset: { start: w.start, end: w.end },
          },
          w.word,
          h("sub", {}, seconds(w.start)),
        ),
        " ",
      ]),
    ),
  );
}

function transcriptSections(call, body, attributed) {
  if (!body) return [section("Transcript", h("p.status", {}, "No transcription job for this call."))];
  const done = body.transcript;
  const latest = body.latest_job;
  const out = [];
  const result = done?.result || {};
  out.push(
    section(
      "Transcript",
      done
        ? transcriptNode(call, attributed?.length === done.segments?.length ? attributed : done.segments)
        : h("p.status", {}, whyNoTranscript({ ...call, transcription_note: latest.error })),
    ),
  );
  if (done) {
    const words = wordTimings(done.segments);
    if (words.length) out.push(section("Word timings", wordsNode(call, words)));
    const removed = Array.isArray(result.removed) ? result.removed : [];
    out.push(
      debugSection(
        "Raw and filtered text",
        h(
          "div.compare",
          {},
          h("div", {}, h("h3", {}, "model output (raw)"), h("p.raw", {}, result.raw_text ?? "—")),
          h("div", {}, h("h3", {}, "after filters"), h("p.filtered", {}, done.text || "(no speech)")),
        ),
        removed.length
          ? table(removed, ["segment", "start", "end", "text", "reason", "detail"])
          : h("p.note", {}, result.mode === "plain" ? "Plain mode: no filters ran." : "Nothing was removed."),
        result.filters?.length ? h("p.note", {}, `Filters: ${result.filters.join(", ")}`) : null,
        result.alignment_note ? h("p.note", {}, `Alignment: ${result.alignment_note}`) : null,
        result.language_note ? h("p.note", {}, `Language: ${result.language_note}`) : null,
      ),
    );
    out.push(debugSection("Transcription job", jobFacts(done)));
  }
  if (latest && latest.id !== done?.id) out.push(debugSection(`Latest job (${latest.status})`, jobFacts(latest)));
  out.push(
    debugSection(
      "Job history",
      table(
        body.history.map((j) => ({ job: j.id, status: j.status, finished: j.finished_at })),
        ["job", "status", "finished"],
      ),
    ),
  );
  return out;
}

export function callView(root, callId) {
  const head = h("div.call-head");
  const body = h("div.call-body");
  const retranscribe = h("button", { type: "button" }, "Re-transcribe");
  const jobNote = h("p.note", { role: "status" });
  clear(root, head, body);
  let alive = true;
  let call = null;

  async function load() {
    try {
      const [full, labels, fired] = await Promise.all([
        api(`/api/calls/${callId}`),
        systemLabels(),
        api(`/api/alerts/deliveries?call_id=${callId}`).catch(() => null),
      ]);
      if (fired?.deliveries.length) alertsOf.set(callId, [...new Set(fired.deliveries.map((d) => d.rule))]);
      const transcription = await api(`/api/calls/${callId}/transcription`).catch((e) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      });
      if (!alive) return;
      call = putCall(full);
      Object.assign(call, {
        transcription_status: transcription?.status ?? null,
        transcript: transcription?.transcript?.text ?? null,
      });
      if (transcription?.transcript) {
        // The call's own segments carry the radio on air; the job's are the same without it.
        const attributed = full.segments?.length === transcription.transcript.segments?.length;
        segmentsOf.set(callId, attributed ? full.segments : transcription.transcript.segments || []);
      }
      render(full, labels, transcription);
    } catch (error) {
      if (!alive) return;
      clear(head, h("h1", {}, `Call ${callId}`), h("p.error", {}, error.message));
    }
  }

  function render(full, labels, transcription) {
    const frequency = frequencyText(full.frequency);
    clear(
      head,
      h("h1", {}, `${talkgroupName(full)} · ${systemName(full, labels)}`),
      h(
        "p.meta",
        {},
        h("time", { datetime: full.date_time, title: full.date_time }, fullDateTime(full.date_time)),
        [frequency, `TG ${full.talkgroup}`, unitName(full), full.duration_seconds != null ? seconds(full.duration_seconds) : ""]
          .filter(Boolean)
          .map((part) => h("span", {}, part)),
        alertMark(call),
      ),
      h(
        "div.actions",
        {},
        h("button.play", { type: "button", onclick: () => player.play(call) }, "▶ Play"),
        h("button.copy-link", { type: "button", onclick: () => copyLink(call) }, "Copy link"),
        h("button.download", { type: "button", onclick: () => downloadAudio(call) }, "Download audio"),
        retranscribe,
      ),
      h("p.units", {}, unitsNode(full), tonesNode(full)),
      jobNote,
    );
    paintTalkgroup(head, full);
    const listed = (rows) => Array.isArray(rows) && rows.length > 0;
    const units = listed(full.transmissions)
      ? transmissionsTable(call, full.transmissions)
      : h("p.note", {}, unitName(full) || "No unit list.");
    const shown = ["sources", "frequencies", "meta", "transmissions", "segments", "units", "tones"];
    const rest = Object.entries(full).filter(([k]) => !shown.includes(k));
    const [transcript, ...debug] = transcriptSections(call, transcription, full.segments);
    const frequencies = listed(full.frequencies)
      ? full.frequencies.map((f) => (typeof f.freq === "number" ? { ...f, freq: frequencyText(f.freq) } : f))
      : null;
    clear(
      body,
      transcript,
      section("Units", units),
      tonesSection(full),
      ...debug,
      listed(full.sources) ? debugSection("Sources as sent", table(full.sources)) : null,
      frequencies ? debugSection("Frequencies", table(frequencies)) : null,
      debugSection("Stored fields", definitionList(rest)),
      full.meta ? debugSection("Recorder metadata", value(full.meta)) : null,
    );
  }

  retranscribe.addEventListener("click", async () => {
    retranscribe.disabled = true;
    jobNote.classList.remove("error");
    try {
      const job = await api("/api/transcription/jobs", { method: "POST", json: { call_id: callId } });
      jobNote.textContent = `Job ${job.id} ${job.status}. The transcript updates here when it is done.`;
      load();
    } catch (error) {
      jobNote.textContent = `Cannot re-transcribe: ${error.message}`;
      jobNote.classList.add("error");
    } finally {
      retranscribe.disabled = false;
    }
  });

  const onTranscript = (e) => {
    if (e.detail.callId === callId && alive) load();
  };
  bus.addEventListener("transcript", onTranscript);
  load();
  return () => {
    alive = false;
    bus.removeEventListener("transcript", onTranscript);
  };
}
