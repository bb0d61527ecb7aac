// Cloning a voice: a reference recorded from the microphone while reading the shown script (so its
// transcript is known) or an uploaded file (optional transcript), the consent statement, then
// POST /v1/voices and a progress bar that follows GET /v1/jobs/{id} until the profile is ready.
import { TimbreError } from "./errors.js";

export const SCRIPT = "The rainbow is a division of white light into many beautiful colours. " +
  "These take the shape of a long round arch, with its path high above, and its two ends " +
  "apparently beyond the horizon. There is, according to legend, a boiling pot of gold at one end. " +
  "People look, but no one ever finds it. When a man looks for something beyond his reach, " +
  "his friends say he is looking for the pot of gold at the end of the rainbow.";

const MAX_RECORDING_S = 120;
const POLL_MS = 300;

/** The consent statement the speaker accepts, with their name in it. */
export function consentStatement(owner) {
  const who = owner.trim() || "[your name]";
  return `I, ${who}, confirm that the reference audio is my own voice, and I agree that Timbre ` +
    "creates a synthetic copy of it for this demo. I can revoke this consent at any time, which " +
    "stops the voice from being used.";
}

/** Microphone recording with MediaRecorder (WebM/Opus, which the server decodes). */
export class Recorder {
  constructor(audio, onTick) {
    this.audio = audio; // AudioOut: its context hosts the level meter of the microphone
    this.onTick = onTick;
    this.stream = null;
    this.recorder = null;
    this.chunks = [];
    this.started = 0;
    this.timer = null;
    this.source = null;
    this.analyser = null;
  }

  get recording() { return this.recorder !== null && this.recorder.state === "recording"; }

  async start() {
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
      });
    } catch (err) {
      throw new TimbreError("mic_denied", err && err.name);
    }
    await this.audio.ensure();
    this.source = this.audio.ctx.createMediaStreamSource(this.stream);
    this.analyser = new AnalyserNode(this.audio.ctx, { fftSize: 1024 });
    this.source.connect(this.analyser); // measured, never played back (no feedback)
    const type = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus"].find((t) => MediaRecorder.isTypeSupported(t));
    this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : undefined);
    this.chunks = [];
    this.recorder.ondataavailable = (e) => { if (e.data.size) this.chunks.push(e.data); };
    this.recorder.start(250);
    this.started = performance.now();
    this.timer = setInterval(() => {
      const s = (performance.now() - this.started) / 1000;
      this.onTick(s);
      if (s >= MAX_RECORDING_S) this.stop();
    }, 200);
  }

  /** Stop; resolves to the recording as a Blob (and its duration in seconds). */
  stop() {
    if (!this.recording) return Promise.resolve(null);
    clearInterval(this.timer);
    const seconds = (performance.now() - this.started) / 1000;
    return new Promise((resolve) => {
      this.recorder.onstop = () => {
        const blob = new Blob(this.chunks, { type: this.recorder.mimeType || "audio/webm" });
        this.stream.getTracks().forEach((t) => t.stop());
        this.source.disconnect();
        this.analyser = null;
        this.recorder = null;
        resolve({ blob, seconds });
      };
      this.recorder.stop();
    });
  }
}

/**
 * Submit the voice and follow its clone job; `onProgress(fraction, status)` on every poll.
 * Resolves to the ready profile's voice id; throws TimbreError for a refusal or a failed job.
 */
export async function cloneVoice(api, form, onProgress) {
  const { voice, job } = await api.createVoice(form);
  onProgress(job.progress || 0, job.status);
  for (;;) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    const current = await api.job(job.job_id);
    onProgress(current.progress, current.status);
    if (current.status === "succeeded") return voice.voice_id;
    if (current.status === "failed") {
      const err = current.error || { code: "internal_error", message: "the clone job failed" };
      throw new TimbreError(err.code, err.message);
    }
  }
}
