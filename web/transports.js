// The two ways the page talks the native protocol (docs/protocol.md):
//
// - WsTransport: GET /v1/stream; JSON text frames both ways, audio as binary frames
//   (kind, id length, sequence, context id, int16 PCM) that go to the AudioWorklet ring buffer.
// - RtcTransport: POST /v1/webrtc/offer; the same JSON on a data channel, the audio on an Opus
//   track that the browser's jitter buffer plays (realtime/webrtc/).
//
// Both dispatch "message" (detail: a server JSON message), "audio" (detail: {contextId}, WS only:
// the first frame of an utterance times its first audio) and "closed" (detail: {code, reason,
// error}: error is a server error code or null for an ordinary close).
import { RATE } from "./audio.js";
import { TimbreError, closeCodeError } from "./errors.js";

const JITTER_TARGET_MS = 80;

function emit(target, type, detail) { target.dispatchEvent(new CustomEvent(type, { detail })); }

const ENDED_KEPT = 64;

/**
 * Audio frames of later utterances wait until the one playing now is done (one voice at a time).
 * An utterance that ended stays ended: frames of a cancelled one that were already on the wire
 * when the page cancelled it are dropped, not played as a new utterance.
 */
export class ContextOrder {
  constructor(play) { this.play = play; this.order = []; this.held = new Map(); this.ended = new Set(); }
  start(id) {
    if (this.ended.has(id) || this.order.includes(id)) return;
    this.order.push(id);
    this.held.set(id, []);
  }
  audio(id, pcm) {
    if (this.ended.has(id)) return;
    this.start(id);
    if (this.order[0] === id) this.play(pcm); else this.held.get(id).push(pcm);
  }
  /** The head finished (or was cancelled): the next utterance's held audio plays now. */
  done(id) {
    const wasHead = this.order[0] === id;
    this.order = this.order.filter((x) => x !== id);
    this.held.delete(id);
    this.ended.add(id);
    if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.values().next().value);
    if (wasHead && this.order.length) { for (const pcm of this.held.get(this.order[0])) this.play(pcm); this.held.set(this.order[0], []); }
    return wasHead;
  }
  reset() { this.order = []; this.held.clear(); this.ended.clear(); }
}

export class WsTransport extends EventTarget {
  constructor(audio) {
    super();
    this.name = "websocket";
    this.audio = audio;
    this.ws = null;
    this.order = new ContextOrder((pcm) => audio.pushPcm(pcm));
    this.underrunsReported = 0;
  }

  get open() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN; }

  async connect(api, { voice, speed }) {
    const token = await api.streamToken();
    const url = new URL("/v1/stream", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const query = { format: "pcm_s16le", sample_rate: String(RATE), speed: String(speed), token };
    if (voice) query.voice = voice; // else the server's default voice (named in `ready`)
    url.search = new URLSearchParams(query);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let lastError = null;
    const ready = new Promise((resolve, reject) => {
      ws.onmessage = (e) => {
        if (typeof e.data !== "string") { this.onFrame(e.data); return; }
        const msg = JSON.parse(e.data);
        if (msg.type === "error") lastError = msg;
        if (msg.type === "ready") resolve(msg);
        this.onJson(msg);
      };
      ws.onclose = (e) => {
        const code = lastError ? lastError.code : closeCodeError(e.code);
        reject(new TimbreError(code || "network", lastError ? lastError.message : `closed ${e.code} ${e.reason}`));
        if (this.ws === ws) { this.ws = null; this.order.reset(); }
        emit(this, "closed", { code: e.code, reason: e.reason, error: code });
      };
    });
    return ready;
  }

  onFrame(buf) {
    const view = new DataView(buf);
    if (view.getUint8(0) !== 1) return;
    const idLen = view.getUint8(1);
    const seq = view.getUint32(2);
    const contextId = new TextDecoder().decode(new Uint8Array(buf, 6, idLen));
    let pcm = buf.slice(6 + idLen);
    if (pcm.byteLength % 2) pcm = pcm.slice(0, pcm.byteLength - 1);
    if (seq === 0) emit(this, "audio", { contextId });
    this.order.audio(contextId, pcm);
  }

  onJson(msg) {
    if (msg.type === "context_started") this.order.start(msg.context_id);
    if (msg.type === "context_done") {
      // "end" before the next utterance's held audio: the buffer drains into it without a gap
      if (this.order.order[0] === msg.context_id && msg.reason === "completed") this.audio.endOfUtterance(msg.context_id);
      this.order.done(msg.context_id);
    }
    emit(this, "message", msg);
  }

  send(msg) { if (this.open) this.ws.send(JSON.stringify(msg)); }

  /** Tell the server how playout went (counted in its metrics): underruns since the last report. */
  report(underruns, bufferedMs) {
    // only while something plays or changed: an idle tab must still reach the server's
    // inactivity timeout (which closes abandoned sessions)
    const fresh = underruns - this.underrunsReported;
    if (fresh <= 0 && bufferedMs === 0) return;
    this.underrunsReported = underruns;
    this.send({ type: "report", underruns: Math.max(0, fresh), buffered_ms: bufferedMs });
  }

  cancelled(contextId) { if (this.order.done(contextId)) this.audio.clear(); }

  close() { if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000); } this.order.reset(); }
}

export class RtcTransport extends EventTarget {
  constructor(audio, element) {
    super();
    this.name = "webrtc";
    this.audio = audio;
    this.element = element;
    this.pc = null;
    this.channel = null;
    this.statsBase = null;
  }

  get open() { return this.channel !== null && this.channel.readyState === "open"; }

  async connect(api, { voice, speed }) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    const { receiver } = pc.addTransceiver("audio", { direction: "recvonly" });
    // at least as much buffer as the WebSocket player starts with, so a server that is late by a
    // few tens of ms is not heard; the browser's jitter buffer still grows if the network needs it.
    // It would reach the target only slowly (by stretching audio): the server's track runs 0.1 s
    // ahead from the start so that the buffer holds it from the first packet (docs/demo.md)
    if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = JITTER_TARGET_MS;
    const channel = pc.createDataChannel("timbre");
    this.channel = channel;
    const trackArrived = new Promise((resolve) => { pc.ontrack = (e) => resolve(e.streams[0] || new MediaStream([e.track])); });
    const ready = new Promise((resolve, reject) => {
      channel.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === "ready") resolve(msg);
        emit(this, "message", msg);
      };
      const failed = (why) => { reject(new TimbreError("webrtc_failed", why)); this.closedBy(why); };
      channel.onclose = () => failed("data channel closed");
      pc.onconnectionstatechange = () => { if (["failed", "closed"].includes(pc.connectionState)) failed(`connection ${pc.connectionState}`); };
    });
    ready.catch(() => { /* awaited below; a failure before that must not go unhandled */ });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc);
      const answer = await api.json("POST", "/v1/webrtc/offer", { sdp: pc.localDescription.sdp, type: "offer", voice, speed });
      await pc.setRemoteDescription(answer);
      this.audio.attachStream(await withTimeout(trackArrived, 15000, "webrtc_failed", "no audio track"), this.element);
      return await withTimeout(ready, 15000, "webrtc_failed", "no data channel within 15 s");
    } catch (err) {
      if (this.pc === pc) this.close();
      throw err;
    }
  }

  closedBy(reason) {
    if (!this.pc) return;
    this.close();
    emit(this, "closed", { code: 0, reason, error: null });
  }

  send(msg) { if (this.open) this.channel.send(JSON.stringify(msg)); }

  report() { /* the server sees the RTP flow itself; the protocol's report is WebSocket playout */ }

  cancelled() { /* the server silences the track at its next 20 ms frame */ }

  /** Playout figures of the incoming track from the browser's own statistics. */
  async playout() {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    for (const s of stats.values()) {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        const emitted = s.jitterBufferEmittedCount || 0;
        return {
          concealmentEvents: s.concealmentEvents || 0,
          audibleConcealed: (s.concealedSamples || 0) - (s.silentConcealedSamples || 0),
          jitterBufferMs: emitted ? Math.round(1000 * s.jitterBufferDelay / emitted) : 0,
          packetsLost: s.packetsLost || 0,
        };
      }
    }
    return null;
  }

  close() {
    const pc = this.pc;
    this.pc = null;
    if (this.channel) { this.channel.onclose = null; this.channel.close(); this.channel = null; }
    this.audio.detachStream();
    if (pc) { pc.onconnectionstatechange = null; pc.close(); }
  }
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return withTimeout(new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
  }), 5000, null).catch(() => undefined); // gather what we have after 5 s
}

function withTimeout(promise, ms, code, detail = "") {
  let timer;
  const timeout = new Promise((resolve, reject) => { timer = setTimeout(() => reject(new TimbreError(code, detail)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
