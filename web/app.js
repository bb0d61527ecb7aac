// Minimal streaming page: native protocol over WebSocket, playback through an AudioWorklet.
const $ = (id) => document.getElementById(id);
const RATE = 24000;
let ws, ctx, player, contextId = null, turn = 0, sentAt = 0, gotFirst = false, frames = 0;
let typedUpTo = 0;

function show(id, text) { $(id).textContent = text; }

async function token() {
  const r = await fetch("/demo/token");
  if (!r.ok) throw new Error("no demo sign-in on this server: pass ?token= in the page URL");
  return (await r.json()).token;
}

async function audio() {
  if (ctx) return;
  ctx = new AudioContext({ sampleRate: RATE });
  await ctx.audioWorklet.addModule("/web/player-worklet.js");
  player = new AudioWorkletNode(ctx, "player");
  player.connect(ctx.destination);
  player.port.onmessage = (e) => {
    if (e.data.type !== "stats") return;
    show("buffered", `${Math.round(1000 * e.data.buffered / RATE)} ms`);
    show("underruns", String(e.data.underruns));
  };
}

function onBinary(buf) {
  const view = new DataView(buf);
  const idLen = view.getUint8(1);
  const pcm = new Int16Array(buf.slice(6 + idLen));
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  if (!gotFirst) { gotFirst = true; show("ttfa", `${Math.round(performance.now() - sentAt)} ms`); }
  frames++; show("frames", String(frames));
  player.port.postMessage({ type: "audio", samples }, [samples.buffer]);
}

function onJson(msg) {
  if (msg.type === "error") show("error", `${msg.code}: ${msg.message}`);
  else if (msg.type === "context_done") { player.port.postMessage({ type: "end" }); show("status", "ready"); }
  else if (msg.type === "ready") show("status", "ready");
}

async function connect() {
  const params = new URLSearchParams(location.search);
  const key = params.get("token") || await token();
  const voices = await (await fetch("/v1/voices", { headers: { Authorization: `Bearer ${key}` } })).json();
  $("voice").replaceChildren(...voices.voices.map((v) => new Option(v.voice_id, v.voice_id)));
  const url = new URL(`/v1/stream?format=pcm_s16le&sample_rate=${RATE}&token=${encodeURIComponent(key)}`, location.href);
  url.protocol = url.protocol.replace("http", "ws");
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => (typeof e.data === "string" ? onJson(JSON.parse(e.data)) : onBinary(e.data));
  ws.onclose = (e) => show("status", `closed (${e.code} ${e.reason})`);
  await new Promise((ok) => (ws.onopen = ok));
}

function startTurn() {
  contextId = `turn-${++turn}`; gotFirst = false; sentAt = performance.now(); show("error", "");
  show("status", "speaking");
}

function send(obj) { ws.send(JSON.stringify(obj)); }

async function speakAll(e) {
  e.preventDefault();
  await audio(); await ctx.resume();
  startTurn();
  const words = $("text").value.split(/(\s+)/);
  for (const w of words) { if (w) send({ type: "text", context_id: contextId, text: w, voice: $("voice").value }); }
  send({ type: "close_context", context_id: contextId });
}

async function onType() {
  if (!$("live").checked) return;
  await audio(); await ctx.resume();
  const text = $("text").value;
  if (contextId === null || typedUpTo > text.length) { startTurn(); typedUpTo = 0; }
  const lastSpace = text.lastIndexOf(" ");
  if (lastSpace + 1 > typedUpTo) {
    send({ type: "text", context_id: contextId, text: text.slice(typedUpTo, lastSpace + 1), voice: $("voice").value });
    typedUpTo = lastSpace + 1;
  }
}

function stop() {
  if (contextId) send({ type: "cancel", context_id: contextId });
  if (player) player.port.postMessage({ type: "clear" });
  contextId = null; typedUpTo = 0;
}

$("speak-form").addEventListener("submit", speakAll);
$("stop").addEventListener("click", stop);
$("text").addEventListener("input", onType);
connect().catch((err) => show("error", String(err)));
