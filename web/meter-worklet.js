// Passes audio through and measures it: the level of each render quantum, and how many quanta
// carried speech (RMS over a threshold). Used on the WebRTC call's incoming track (which plays
// silence between utterances, so "speech heard" is the only way to see where an utterance's
// audio starts) and on the microphone while recording a reference.
class MeterProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.threshold = opts.threshold || 0.003;
    this.speechQuanta = 0;
    this.samples = 0;
    this.peak = 0;
    this.sinceReport = 0;
    this.heardSpeech = false;
  }

  process(inputs, outputs) {
    const input = inputs[0];
    const out = outputs[0];
    const frames = out[0].length;
    let sumSq = 0;
    if (input.length) {
      const ch0 = input[0];
      for (let i = 0; i < ch0.length; i++) sumSq += ch0[i] * ch0[i];
      for (let c = 0; c < out.length; c++) out[c].set(input[Math.min(c, input.length - 1)]);
    } else {
      for (let c = 0; c < out.length; c++) out[c].fill(0);
    }
    const level = Math.sqrt(sumSq / frames);
    this.samples += frames;
    this.peak = Math.max(this.peak, level);
    if (level > this.threshold) {
      this.speechQuanta++;
      if (!this.heardSpeech) { // tell the page at once: the start of speech times first audio
        this.heardSpeech = true;
        this.port.postMessage({ type: "speech", at: currentTime });
      }
    } else {
      this.heardSpeech = false;
    }
    this.sinceReport += frames;
    if (this.sinceReport >= sampleRate / 20) {
      this.port.postMessage({ type: "stats", level: this.peak, speechQuanta: this.speechQuanta, samples: this.samples });
      this.sinceReport = 0;
      this.peak = 0;
    }
    return true;
  }
}
registerProcessor("timbre-meter", MeterProcessor);
