// Utterances over the native protocol, whichever transport carries them, and the page's counters.
//
// One utterance = one protocol context ("turn-N"). Its time to first audio runs from the first
// `text` message sent to the first audio: over WebSocket the arrival of the context's first
// binary frame, over WebRTC the first speech heard on the call's track (the track plays silence
// between utterances, so only the sound tells where the utterance starts). Its frames played and
// underruns are the counters' growth from its first text until it has played out (over WebRTC
// concealment counts only from its first speech heard: see pollRtc).
//
// window.timbreStats mirrors these counters for people and for the browser tests.
import { RtcTransport, WsTransport } from "./transports.js";

const RTC_POLL_MS = 250;
/** Errors that refuse a new context (it never starts), and those that follow from sending to one. */
const REFUSALS = new Set(["server_busy", "too_many_contexts", "unknown_voice", "voice_unavailable", "unsupported_language"]);
const ECHOES = new Set(["unknown_context", "context_closed", ...REFUSALS]);

export function newStats() {
  return {
    transport: "websocket", connected: false, framesPlayed: 0, samplesPlayed: 0, underruns: 0,
    bufferedMs: 0, firstAudioMs: null, lastTtfaMs: null, utterances: 0, lastUtterance: null,
    errors: [],
  };
}

export class Talk extends EventTarget {
  constructor(api, audio, rtcElement, stats) {
    super();
    this.api = api;
    this.audio = audio;
    this.rtcElement = rtcElement;
    this.stats = stats;
    this.transport = null;
    this.kind = "websocket";
    this.turnNo = 0;
    this.turn = null; // the latest utterance: {id, sentAt, ttfaMs, startFrames, startUnderruns, done, reason}
    this.open = new Set(); // contexts started here and not done
    this.refused = new Set(); // contexts the server refused to start
    this.connecting = null;
    this.defaultVoice = null; // the server's default voice, from `ready`
    this.rtcPlayout = null; // the call's last playout statistics
    this.rtcUnderruns = 0; // concealment events that concealed speech (see pollRtc)
    this.rtcPolls = 0; // getStats calls made, and the latest one whose answer was used
    this.rtcPollsSeen = 0;
    this.rtcTimer = null;
    audio.addEventListener("stats", () => this.refresh());
    audio.addEventListener("speech", () => {
      // the first speech heard also starts counting the call's concealment against the turn
      if (this.kind === "webrtc" && this.firstAudio()) this.pollRtc();
    });
    audio.addEventListener("drained", (e) => {
      if (this.turn && this.turn.id === e.detail && this.kind === "websocket") { this.refresh(); this.turn.playedOut = true; }
    });
  }

  /** Switch transport (closing the current one); connects on the next use. */
  use(kind) {
    if (kind === this.kind && this.transport) return;
    this.disconnect();
    this.kind = kind;
    this.stats.transport = kind;
    this.refresh();
  }

  disconnect() {
    clearInterval(this.rtcTimer);
    this.rtcTimer = null;
    if (this.transport) { const t = this.transport; this.transport = null; t.close(); }
    this.open.clear();
    this.audio.clear();
    this.stats.connected = false;
    this.refresh();
  }

  /** Connect the chosen transport unless it is open; concurrent callers share one attempt. */
  async connected(voice, speed) {
    if (this.transport && this.transport.open) return this.transport;
    if (!this.connecting) {
      this.connecting = this.connect(voice, speed).finally(() => { this.connecting = null; });
    }
    return this.connecting;
  }

  async connect(voice, speed) {
    await this.audio.ensure();
    if (this.transport) this.disconnect();
    const t = this.kind === "webrtc" ? new RtcTransport(this.audio, this.rtcElement) : new WsTransport(this.audio);
    t.addEventListener("message", (e) => this.onMessage(e.detail));
    t.addEventListener("audio", (e) => { if (this.turn && e.detail.contextId === this.turn.id) this.firstAudio(); });
    t.addEventListener("closed", (e) => {
      if (this.transport !== t) return;
      this.transport = null;
      this.open.clear();
      this.stats.connected = false;
      this.refresh();
      this.dispatchEvent(new CustomEvent("closed", { detail: e.detail }));
    });
    const ready = await t.connect(this.api, { voice, speed });
    this.defaultVoice = ready.voice;
    this.transport = t;
    this.stats.connected = true;
    if (t instanceof RtcTransport) {
      this.rtcPlayout = null;
      this.rtcUnderruns = 0;
      this.rtcTimer = setInterval(() => this.pollRtc(), RTC_POLL_MS);
      await this.pollRtc();
    }
    this.refresh();
    return t;
  }

  async pollRtc() {
    const t = this.transport;
    if (!(t instanceof RtcTransport)) return;
    // Only a gap in speech is an underrun: the jitter buffer also conceals while the call
    // starts up and between utterances, where it conceals the track's silence, and Chromium
    // reports concealing digital silence as non-silent (silentConcealedSamples grows only
    // once a concealment has faded out). So concealment counts from the first poll made
    // after the utterance's speech was heard until it has played out (docs/demo.md).
    const turn = this.turn;
    const hearing = turn !== null && turn.ttfaMs !== null && !turn.playedOut ? turn : null;
    const seq = ++this.rtcPolls;
    const p = await t.playout();
    if (!p || seq < this.rtcPollsSeen || t !== this.transport) return;
    this.rtcPollsSeen = seq;
    const last = this.rtcPlayout;
    if (hearing && last && last.heard === hearing && p.audibleConcealed > last.audibleConcealed) {
      this.rtcUnderruns += Math.max(1, p.concealmentEvents - last.concealmentEvents);
    }
    this.rtcPlayout = { ...p, heard: hearing };
    this.refresh();
  }

  /** Start a new utterance; returns its context id. */
  begin() {
    const id = `turn-${++this.turnNo}`;
    this.turn = {
      id, sentAt: null, ttfaMs: null, startFrames: this.stats.framesPlayed, startSamples: this.stats.samplesPlayed,
      startUnderruns: this.stats.underruns, framesPlayed: 0, underruns: 0, done: false, reason: null,
      playedOut: false,
    };
    this.stats.utterances++;
    this.stats.lastUtterance = this.turn;
    this.open.add(id);
    return id;
  }

  /** Send text of an utterance (a word, a token, or the rest of a sentence). */
  async text(id, text, voice, speed, pitch = 0) {
    if (this.refused.has(id) || !this.open.has(id)) return; // refused, cancelled or finished
    const t = await this.connected(voice, speed);
    if (!this.open.has(id)) return; // cancelled while connecting
    if (this.turn && this.turn.id === id && this.turn.sentAt === null) this.turn.sentAt = performance.now();
    t.send({ type: "text", context_id: id, text, voice, speed, pitch });
  }

  flush(id) { if (this.transport && this.open.has(id)) this.transport.send({ type: "flush", context_id: id }); }

  close(id) { if (this.transport && this.open.has(id)) this.transport.send({ type: "close_context", context_id: id }); }

  /** Barge-in: cancel every open utterance and drop the audio not yet played. */
  stop() {
    for (const id of this.open) {
      if (this.transport) { this.transport.send({ type: "cancel", context_id: id }); this.transport.cancelled(id); }
    }
    this.audio.clear();
    this.open.clear();
  }

  /** The latest utterance's first audio (true the first time). */
  firstAudio() {
    const turn = this.turn;
    if (!turn || turn.sentAt === null || turn.ttfaMs !== null) return false;
    const now = performance.now();
    turn.ttfaMs = Math.round(now - turn.sentAt);
    this.stats.firstAudioMs = Math.round(now);
    this.stats.lastTtfaMs = turn.ttfaMs;
    this.refresh();
    return true;
  }

  onMessage(msg) {
    if (msg.type === "context_done") {
      this.open.delete(msg.context_id);
      const turn = this.turn;
      if (turn && turn.id === msg.context_id) {
        turn.done = true;
        turn.reason = msg.reason;
        if (msg.reason === "cancelled") { this.refresh(); turn.playedOut = true; } // its audio was dropped
        // WebRTC sends context_done once the track has played the context out; a WebSocket
        // utterance has played out when the ring buffer drained (see refresh)
        if (this.kind === "webrtc") setTimeout(() => this.pollRtc().then(() => { turn.playedOut = true; this.refresh(); }), 300);
      }
    }
    if (msg.type === "error" && msg.context_id) {
      const id = msg.context_id;
      if (REFUSALS.has(msg.code) && this.open.has(id)) {
        // the context was not started: the rest of its text would only be refused again
        this.open.delete(id);
        this.refused.add(id);
        if (this.turn && this.turn.id === id) Object.assign(this.turn, { done: true, reason: "refused", playedOut: true });
      } else if (this.refused.has(id) && ECHOES.has(msg.code)) {
        return; // the close of a refused context that crossed its refusal: nothing new to show
      }
    }
    this.dispatchEvent(new CustomEvent("message", { detail: msg }));
    this.refresh();
  }

  /** Recompute the counters from the audio graph and the call's statistics. */
  refresh() {
    const s = this.stats;
    if (this.kind === "webrtc") {
      s.framesPlayed = this.audio.meter_stats.speechQuanta;
      s.samplesPlayed = this.audio.meter_stats.samples || 0;
      s.underruns = this.rtcUnderruns;
      s.bufferedMs = this.rtcPlayout ? this.rtcPlayout.jitterBufferMs : 0;
    } else {
      const p = this.audio.player_stats;
      s.framesPlayed = p.quantaPlayed;
      s.samplesPlayed = p.samplesPlayed;
      s.underruns = p.underruns;
      s.bufferedMs = this.audio.bufferedMs;
      s.underrunAt = p.underrunAt;
      s.underrunGapMs = p.lastGapMs;
    }
    const turn = this.turn;
    if (turn && !turn.playedOut) {
      turn.framesPlayed = s.framesPlayed - turn.startFrames;
      turn.underruns = s.underruns - turn.startUnderruns;
    }
    this.dispatchEvent(new Event("stats"));
  }

  /** Report WebSocket playout to the server (its metrics count client underruns). */
  report() {
    if (this.transport && this.transport.open) this.transport.report(this.stats.underruns, this.stats.bufferedMs);
  }
}
