// The page's audio graph. One AudioContext at the WebSocket stream's rate (24 kHz, so PCM from
// the server needs no resampling in the page):
//
//   WebSocket PCM -> timbre-player (ring buffer) --\
//                                                   +-> analyser (waveform) -> speakers
//   WebRTC track  -> timbre-meter (speech level) --/
//
// Counters from the worklets arrive as "stats" messages and are kept here; the page reads them.

export const RATE = 24000;

export class AudioOut extends EventTarget {
  constructor() {
    super();
    this.ctx = null;
    this.player = null;
    this.analyser = null;
    this.rtc = null; // {source, meter, element}
    this.player_stats = { buffered: 0, underruns: 0, quantaPlayed: 0, samplesPlayed: 0, level: 0, state: "idle" };
    this.meter_stats = { level: 0, speechQuanta: 0 };
  }

  /** Build the graph once (the worklets load from /web/); resumes a suspended context. */
  async ensure() {
    if (!this.ctx) {
      const ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
      await ctx.audioWorklet.addModule("/web/player-worklet.js");
      await ctx.audioWorklet.addModule("/web/meter-worklet.js");
      this.analyser = new AnalyserNode(ctx, { fftSize: 1024 });
      this.analyser.connect(ctx.destination);
      this.player = new AudioWorkletNode(ctx, "timbre-player", {
        outputChannelCount: [1], processorOptions: { prebufferMs: 80 },
      });
      this.player.connect(this.analyser);
      this.player.port.onmessage = (e) => {
        this.player_stats = e.data;
        this.dispatchEvent(new Event("stats"));
        if (e.data.type === "drained") this.dispatchEvent(new CustomEvent("drained", { detail: e.data.tag }));
      };
      this.ctx = ctx;
    }
    if (this.ctx.state !== "running") {
      // Without a user gesture the browser keeps the context suspended and resume() waits for
      // one: wait only when the page has had a gesture (a click or key press resumes it later).
      const resumed = this.ctx.resume();
      const activation = navigator.userActivation;
      if (!activation || activation.hasBeenActive) await resumed;
    }
  }

  /** Queue int16 little-endian PCM (an ArrayBuffer) for playback. */
  pushPcm(buffer) {
    const pcm = new Int16Array(buffer);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    this.player.port.postMessage({ type: "audio", samples }, [samples.buffer]);
  }

  /**
   * The utterance's audio is complete: drain without counting the end as an underrun. A
   * "drained" event (detail: `tag`) follows once its last sample has been played.
   */
  endOfUtterance(tag) { if (this.player) this.player.port.postMessage({ type: "end", tag }); }

  /** Barge-in: drop everything not yet played. */
  clear() { if (this.player) this.player.port.postMessage({ type: "clear" }); }

  get bufferedMs() { return Math.round(1000 * this.player_stats.buffered / RATE); }

  /**
   * Play a WebRTC call's incoming stream through the meter. Chrome only feeds a remote stream
   * into Web Audio while a media element also holds it, so a muted <audio> element keeps it
   * flowing; the sound itself goes through the graph (one volume path, one waveform).
   */
  attachStream(stream, element) {
    this.detachStream();
    element.srcObject = stream;
    element.muted = true;
    element.play().catch(() => { /* muted playback needs no gesture; ignore a race with detach */ });
    const source = this.ctx.createMediaStreamSource(stream);
    const meter = new AudioWorkletNode(this.ctx, "timbre-meter", { outputChannelCount: [1] });
    meter.port.onmessage = (e) => {
      if (e.data.type === "stats") { this.meter_stats = e.data; this.dispatchEvent(new Event("stats")); }
      else if (e.data.type === "speech") this.dispatchEvent(new Event("speech"));
    };
    source.connect(meter).connect(this.analyser);
    this.rtc = { source, meter, element };
  }

  detachStream() {
    if (!this.rtc) return;
    this.rtc.source.disconnect();
    this.rtc.meter.disconnect();
    this.rtc.element.srcObject = null;
    this.rtc = null;
  }
}
