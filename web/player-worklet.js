// Audio-thread playback of the WebSocket's PCM: a ring buffer the page pushes float samples into.
//
// Why a worklet: the audio thread pulls 128 samples per render quantum at the hardware clock, so
// playout never waits on the page's main thread (layout, typing), and the buffer level is exact.
//
// States:
//   idle       nothing to play
//   buffering  audio arrived; wait for `prebuffer` samples (or the utterance's end), so network
//              jitter does not starve the first words
//   playing    the ring feeds the output
//   starved    the ring ran dry while playing, before the page said the utterance ended
//
// Whether "starved" was an UNDERRUN (an audible gap) is known only by what comes next: more audio
// of the utterance means the listener heard a gap (counted once, then re-buffer); the utterance's
// "end" means its audio was simply over (its context_done travelled behind the last frame), and
// "clear" means a barge-in. Each counted underrun doubles the prebuffer (up to maxPrebufferMs), an
// adaptive jitter buffer; each utterance played out without one shrinks it back towards the start.
class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.ring = new Float32Array(sampleRate * 60);
    this.read = 0;
    this.write = 0;
    this.minPrebuffer = Math.round(sampleRate * (opts.prebufferMs || 80) / 1000);
    this.maxPrebuffer = Math.round(sampleRate * (opts.maxPrebufferMs || 400) / 1000);
    this.prebuffer = this.minPrebuffer;
    this.state = "idle";
    this.ending = false;
    this.endTag = null;
    this.underruns = 0;
    this.cleanSince = 0; // the underrun count when the current utterance started
    this.underrunAt = null; // samplesPlayed at the last underrun (diagnostics)
    this.starvedSamples = 0; // silence rendered while starved, so far
    this.lastGapMs = null; // how long the last underrun's gap lasted (diagnostics)
    this.quantaPlayed = 0; // render quanta that carried buffered audio ("frames played")
    this.samplesPlayed = 0;
    this.level = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "audio") this.push(msg.samples);
    else if (msg.type === "end") this.end(msg.tag);
    else if (msg.type === "clear") {
      this.read = this.write;
      this.state = "idle";
      this.ending = false;
      this.cleanSince = this.underruns;
      this.report();
    }
  }

  get buffered() { return (this.write - this.read + this.ring.length) % this.ring.length; }

  push(samples) {
    const free = this.ring.length - 1 - this.buffered;
    const n = Math.min(samples.length, free); // 60 s of backlog: the rest would overwrite unplayed audio
    for (let i = 0; i < n; i++) {
      this.ring[this.write] = samples[i];
      this.write = (this.write + 1) % this.ring.length;
    }
    this.ending = false;
    if (this.state === "starved") { // the gap was real: audio of the utterance came after it
      this.underruns++;
      this.underrunAt = this.samplesPlayed;
      this.lastGapMs = Math.round(1000 * this.starvedSamples / sampleRate);
      this.prebuffer = Math.min(this.maxPrebuffer, this.prebuffer * 2);
      this.state = "buffering";
      this.report();
    }
    if (this.state === "idle") this.state = "buffering";
    if (this.state === "buffering" && this.buffered >= this.prebuffer) this.state = "playing";
  }

  /** The utterance's audio is all here: play the rest, then say "drained". */
  end(tag) {
    this.ending = true;
    this.endTag = tag;
    if (this.state === "buffering") this.state = "playing";
    if (this.state === "starved" || this.buffered === 0) this.finish();
  }

  finish() {
    this.state = "idle";
    this.ending = false;
    if (this.underruns === this.cleanSince) {
      this.prebuffer = Math.max(this.minPrebuffer, Math.round(this.prebuffer * 0.75));
    }
    this.cleanSince = this.underruns;
    this.report("drained"); // the utterance has played out: its counters are final now
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let sumSq = 0;
    let i = 0;
    if (this.state === "playing") {
      for (; i < out.length && this.read !== this.write; i++) {
        const s = this.ring[this.read];
        out[i] = s;
        sumSq += s * s;
        this.read = (this.read + 1) % this.ring.length;
      }
      if (i > 0) { this.quantaPlayed++; this.samplesPlayed += i; }
      if (this.read === this.write) {
        if (this.ending) this.finish(); else { this.state = "starved"; this.starvedSamples = 0; this.report(); }
      }
    } else if (this.state === "starved") {
      this.starvedSamples += out.length;
    }
    out.fill(0, i);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.level = Math.sqrt(sumSq / out.length);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 20) this.report(); // 20 reports a second
    return true;
  }

  report(type = "stats") {
    this.sinceReport = 0;
    this.port.postMessage({
      type, tag: this.endTag, buffered: this.buffered, underruns: this.underruns, underrunAt: this.underrunAt, lastGapMs: this.lastGapMs,
      prebuffer: this.prebuffer, quantaPlayed: this.quantaPlayed, samplesPlayed: this.samplesPlayed,
      state: this.state, level: this.level,
    });
  }
}
registerProcessor("timbre-player", PlayerProcessor);
