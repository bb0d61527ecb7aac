// The demo page: wiring between the DOM, cloning (clone.js), utterances (talk.js) and the live
// figures. Plain ES modules, no build step, nothing loaded from outside the server.
import { Api } from "./api.js";
import { AudioOut } from "./audio.js";
import { Recorder, SCRIPT, cloneVoice, consentStatement } from "./clone.js";
import { TimbreError, describe } from "./errors.js";
import { simulateLlm } from "./llm.js";
import { Talk, newStats } from "./talk.js";

const $ = (id) => document.getElementById(id);
const IDLE_FLUSH_MS = 1200;
const REPORT_MS = 2000;

const api = new Api();
const audio = new AudioOut();
const stats = newStats();
window.timbreStats = stats;
const talk = new Talk(api, audio, $("rtc-audio"), stats);

// -- messages -------------------------------------------------------------------------------------

function status(text) { $("status").textContent = text; }

/** Show an error in a section's alert region (read out by screen readers) and count it. */
function showError(where, err) {
  const code = err instanceof TimbreError ? err.code : "internal_error";
  const detail = err instanceof TimbreError ? err.detail : String(err);
  stats.errors.push(code);
  $(where).textContent = describe(code, detail);
  $(where).dataset.code = code;
}

function clearError(where) { $(where).textContent = ""; delete $(where).dataset.code; }

// -- voices ---------------------------------------------------------------------------------------

async function loadVoices(select = null) {
  const { voices } = await api.voices();
  const current = select || $("voice").value;
  const stock = document.createElement("optgroup");
  stock.label = "Stock voices";
  const own = document.createElement("optgroup");
  own.label = "Your voices";
  for (const v of voices) {
    const label = v.kind === "stock" ? v.voice_id : `${v.name} (${v.status === "ready" ? v.voice_id : v.status})`;
    const option = new Option(label, v.voice_id);
    option.disabled = v.status !== "ready";
    (v.kind === "stock" ? stock : own).append(option);
  }
  $("voice").replaceChildren(stock, ...(own.children.length ? [own] : []));
  if (current && [...$("voice").options].some((o) => o.value === current && !o.disabled)) $("voice").value = current;
  return voices;
}

const voice = () => $("voice").value;
const speed = () => Number($("speed").value);
const pitch = () => Number($("pitch").value);

// -- cloning --------------------------------------------------------------------------------------

let recording = null; // {blob, seconds}
const recorder = new Recorder(audio, (s) => { $("record-time").textContent = `${s.toFixed(1)} s`; });

function showSource() {
  const upload = $("src-upload").checked;
  $("upload-panel").hidden = !upload;
  $("record-panel").hidden = upload;
}

async function toggleRecording() {
  clearError("clone-error");
  if (recorder.recording) {
    recording = await recorder.stop();
    $("record").textContent = "Record again";
    $("record").setAttribute("aria-pressed", "false");
    const preview = $("record-preview");
    preview.src = URL.createObjectURL(recording.blob);
    preview.hidden = false;
    status(`Recorded ${recording.seconds.toFixed(1)} seconds.`);
    return;
  }
  try {
    await recorder.start();
  } catch (err) { showError("clone-error", err); return; }
  recording = null;
  $("record").textContent = "Stop recording";
  $("record").setAttribute("aria-pressed", "true");
  status("Recording: read the script aloud.");
}

async function clone() {
  clearError("clone-error");
  const upload = $("src-upload").checked;
  const file = upload ? $("file").files[0] : recording && recording.blob;
  if (!file) { showError("clone-error", new TimbreError("no_audio_selected")); return; }
  if (!$("consent").checked || !$("owner").value.trim()) {
    showError("clone-error", new TimbreError("consent_required"));
    ($("owner").value.trim() ? $("consent") : $("owner")).focus();
    return;
  }
  const form = {
    name: $("voice-name").value.trim() || "My voice",
    file,
    filename: upload ? file.name : `recording.${file.type.includes("ogg") ? "ogg" : "webm"}`,
    transcript: upload ? $("transcript").value.trim() : SCRIPT,
    consent: {
      ownerName: $("owner").value.trim(), statement: consentStatement($("owner").value),
      accepted: true, purpose: "Timbre browser demo",
    },
  };
  $("clone").disabled = true;
  $("clone-progress").value = 0;
  status("Uploading the reference…");
  try {
    const voiceId = await cloneVoice(api, form, (fraction, state) => {
      $("clone-progress").value = fraction;
      $("clone-progress").textContent = `${Math.round(fraction * 100)} %`;
      $("clone-status").textContent = `${state}: ${Math.round(fraction * 100)} %`;
    });
    const made = (await loadVoices(voiceId)).find((v) => v.voice_id === voiceId);
    const base = made && made.base_voice
      ? made.converted
        ? ` It speaks as ${made.base_voice} converted toward your voice` +
          `${made.clone_similarity != null ? ` (similarity ${made.clone_similarity.toFixed(2)})` : ""}.`
        : ` It speaks with ${made.base_voice}${made.base_similarity != null ? ` (similarity ${made.base_similarity.toFixed(2)})` : ""}.`
      : "";
    $("clone-status").textContent = `Ready: ${voiceId} is selected under “Voice”.${base}`;
    status("Your voice is ready.");
  } catch (err) {
    $("clone-status").textContent = "";
    showError("clone-error", err);
    status("Cloning did not complete.");
    loadVoices().catch(() => {});
  } finally {
    $("clone").disabled = false;
  }
}

// -- talking --------------------------------------------------------------------------------------

/** Live typing: the utterance being typed, and the position in the text up to which it was sent. */
const typing = { id: null, from: 0, sentUpTo: 0, idle: null };
let llm = null; // AbortController of a running simulated LLM

async function send(id, text) {
  clearError("speak-error");
  try {
    await talk.text(id, text, voice(), speed(), pitch());
  } catch (err) { showError("speak-error", err); throw err; }
}

function endTyping() {
  clearTimeout(typing.idle);
  if (typing.id) talk.close(typing.id);
  typing.id = null;
}

/** Send the finished words typed since the last send; an edit behind them starts a new utterance. */
async function onType(final = false) {
  if (!$("live").checked) return;
  const text = $("text").value;
  if (typing.sentUpTo > text.length || text.slice(typing.from, typing.sentUpTo) !== typing.sent) {
    // an edit in text already sent: what was said stays said; the new utterance starts at the edit
    endTyping();
    let common = 0;
    while (common < Math.min(text.length, typing.sentUpTo) && text[common] === (typing.snapshot || "")[common]) common++;
    const boundary = text.lastIndexOf(" ", common - 1) + 1;
    Object.assign(typing, { from: boundary, sentUpTo: boundary, sent: "" });
  }
  let upTo = final ? text.length : text.search(/\S*$/);
  if (!final && /[.,!?;:]$/.test(text)) upTo = text.length; // punctuation ends a word too
  if (upTo > typing.sentUpTo && text.slice(typing.sentUpTo, upTo).trim()) {
    if (typing.id && !talk.open.has(typing.id)) typing.id = null; // refused or ended: start anew
    if (!typing.id) { await audio.ensure(); typing.id = talk.begin(); typing.from = typing.sentUpTo; typing.sent = ""; }
    const chunk = text.slice(typing.sentUpTo, upTo);
    typing.sentUpTo = upTo;
    typing.sent += chunk;
    typing.snapshot = text;
    status("Speaking as you type…");
    await send(typing.id, chunk).catch(() => {});
  }
  typing.snapshot = text;
  clearTimeout(typing.idle);
  if (typing.id) typing.idle = setTimeout(() => { onType(true).then(() => talk.flush(typing.id)); }, IDLE_FLUSH_MS);
}

function resetTyping() {
  endTyping();
  const end = $("text").value.length;
  Object.assign(typing, { from: end, sentUpTo: end, sent: "", snapshot: $("text").value });
}

/** Speak the whole text as one utterance, streamed word by word as a client would. */
async function speakAll() {
  stop(false);
  resetTyping();
  await audio.ensure();
  const id = talk.begin();
  status("Speaking…");
  try {
    for (const word of $("text").value.match(/\S+\s*/g) || []) await send(id, word);
    talk.close(id);
  } catch { /* shown by send */ }
}

async function simulate() {
  stop(false);
  resetTyping();
  await audio.ensure();
  const id = talk.begin();
  const out = $("llm-out");
  out.hidden = false;
  out.textContent = "";
  llm = new AbortController();
  status("The simulated LLM is answering…");
  try {
    const done = await simulateLlm((token) => { out.textContent += token; send(id, token).catch(() => {}); }, llm.signal);
    if (done) talk.close(id);
  } finally { llm = null; }
}

function stop(announce = true) {
  if (llm) llm.abort();
  endTyping();
  talk.stop();
  if (announce) status("Stopped.");
}

async function switchTransport() {
  stop(false);
  const kind = $("tr-rtc").checked ? "webrtc" : "websocket";
  talk.use(kind);
  status(`Connecting over ${kind === "webrtc" ? "WebRTC" : "WebSocket"}…`);
  try {
    await talk.connected(voice(), speed());
    status(`Connected over ${kind === "webrtc" ? "WebRTC" : "WebSocket"}.`);
  } catch (err) { showError("speak-error", err); status("Not connected."); }
}

talk.addEventListener("message", (e) => {
  const msg = e.detail;
  if (msg.type === "error" && msg.code !== "inactivity_timeout") showError("speak-error", new TimbreError(msg.code, msg.message));
  else if (msg.type === "context_done" && talk.turn && msg.context_id === talk.turn.id) {
    status(msg.reason === "cancelled" ? "Stopped." : "Done.");
  }
});
talk.addEventListener("closed", (e) => {
  const { error, code, reason } = e.detail;
  if (error && error !== "inactivity_timeout") showError("speak-error", new TimbreError(error, reason || `closed ${code}`));
  typing.id = null;
  status("Disconnected; the next utterance reconnects.");
});

// -- live figures ---------------------------------------------------------------------------------

function showStats() {
  const turn = stats.lastUtterance;
  $("st-connection").textContent = `${stats.transport === "webrtc" ? "WebRTC" : "WebSocket"}, ${stats.connected ? "connected" : "not connected"}`;
  $("st-ttfa").textContent = stats.lastTtfaMs === null ? "–" : `${stats.lastTtfaMs} ms`;
  $("st-buffered").textContent = `${stats.bufferedMs} ms`;
  $("st-underruns").textContent = `${turn ? turn.underruns : 0} / ${stats.underruns}`;
  $("st-frames").textContent = String(stats.framesPlayed);
}
talk.addEventListener("stats", showStats);

/** Waveform of what plays (or of the microphone while recording) and the level meter. */
function draw() {
  const analyser = recorder.recording ? recorder.analyser : audio.analyser;
  const canvas = $("wave");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (analyser) {
    const data = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(data);
    let sumSq = 0;
    g.beginPath();
    for (let i = 0; i < data.length; i++) {
      sumSq += data[i] * data[i];
      const x = (i / data.length) * canvas.width;
      const y = (0.5 - data[i] / 2) * canvas.height;
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    }
    g.strokeStyle = getComputedStyle(canvas).color;
    g.lineWidth = 2;
    g.stroke();
    $("level").value = Math.min(1, 3 * Math.sqrt(sumSq / data.length));
  }
  requestAnimationFrame(draw);
}

// -- wiring ---------------------------------------------------------------------------------------

function wire() {
  $("script").textContent = SCRIPT;
  $("statement").textContent = consentStatement("");
  $("owner").addEventListener("input", () => { $("statement").textContent = consentStatement($("owner").value); });
  $("src-record").addEventListener("change", showSource);
  $("src-upload").addEventListener("change", showSource);
  $("record").addEventListener("click", toggleRecording);
  $("clone").addEventListener("click", clone);
  $("speak").addEventListener("click", speakAll);
  $("llm").addEventListener("click", simulate);
  $("stop").addEventListener("click", () => stop());
  $("tr-ws").addEventListener("change", switchTransport);
  $("tr-rtc").addEventListener("change", switchTransport);
  $("voice").addEventListener("change", resetTyping);
  $("live").addEventListener("change", resetTyping);
  $("speed").addEventListener("input", () => {
    const v = speed().toFixed(1);
    $("speed-out").textContent = `${v}×`;
    $("speed").setAttribute("aria-valuetext", `${v} times`);
  });
  $("pitch").addEventListener("input", () => {
    const v = `${pitch() > 0 ? "+" : ""}${pitch()} semitones`;
    $("pitch-out").textContent = v;
    $("pitch").setAttribute("aria-valuetext", v);
  });
  $("text").addEventListener("input", () => onType());
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); speakAll(); }
    else if (e.key === "Enter" && !e.shiftKey && $("live").checked) {
      e.preventDefault();
      onType(true).then(() => { endTyping(); resetTyping(); });
    }
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") stop(); });
  // Hang up when the tab goes: a WebRTC call the page just drops stays up on the server (its
  // track sending, its stream counted against the quota) until ICE consent fails, ~30 s later.
  window.addEventListener("pagehide", () => talk.disconnect());
  showSource();
  resetTyping();
  setInterval(() => talk.report(), REPORT_MS);
  requestAnimationFrame(draw);
}

async function start() {
  wire();
  try {
    await api.credential();
    $("signin").textContent = api.fromUrl ? "Signed in with the token from the address." : "Signed in as the local demo tenant.";
    await loadVoices();
    await talk.connected(null, speed()); // no voice asked: `ready` names the server's default
    if (talk.defaultVoice) $("voice").value = talk.defaultVoice;
    status("Ready.");
  } catch (err) {
    $("signin").textContent = "Not signed in.";
    showError("speak-error", err);
  }
  document.body.dataset.ready = "true";
}

start();
