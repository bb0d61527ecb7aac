// Plays int16 PCM pushed from the page through a ring buffer; counts underruns after first audio.
class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(sampleRate * 30);
    this.read = 0; this.write = 0; this.playing = false; this.underruns = 0; this.starved = false;
    this.port.onmessage = (e) => {
      if (e.data.type === "audio") this.push(e.data.samples);
      else if (e.data.type === "end") this.ending = true;
      else if (e.data.type === "clear") { this.read = this.write; this.playing = false; }
    };
  }
  get level() { return (this.write - this.read + this.ring.length) % this.ring.length; }
  push(samples) {
    for (let i = 0; i < samples.length; i++) {
      this.ring[this.write] = samples[i];
      this.write = (this.write + 1) % this.ring.length;
    }
    this.playing = true; this.ending = false;
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i++) {
      if (this.read !== this.write) {
        out[i] = this.ring[this.read];
        this.read = (this.read + 1) % this.ring.length;
        this.starved = false;
      } else {
        out[i] = 0;
        if (this.playing && this.ending) { this.playing = false; }
        else if (this.playing && !this.starved) { this.starved = true; this.underruns++; }
      }
    }
    if (currentFrame % 4096 < out.length) {
      this.port.postMessage({ type: "stats", buffered: this.level, underruns: this.underruns });
    }
    return true;
  }
}
registerProcessor("player", PlayerProcessor);
