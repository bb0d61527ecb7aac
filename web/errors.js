// Server error codes (docs/protocol.md, docs/rest.md) as sentences a visitor can act on.
// The server's own message is kept as detail: it carries the numbers (limits, durations).

const MESSAGES = {
  // credentials and plans
  unauthorized: "Your sign-in is missing or has expired. Reload the page to sign in again.",
  forbidden: "This sign-in is not allowed to do that (its scopes are too narrow).",
  quota_exceeded: "This month's characters for your plan are used up, so no more speech can be made until next month or a plan upgrade.",
  too_many_streams: "Your plan allows no more simultaneous streams. Close another tab or call and try again.",
  format_not_allowed: "Your plan does not include this audio format.",
  profile_limit: "Your plan's number of voice profiles is reached. Delete a voice before cloning a new one.",
  token_minting_unavailable: "This server cannot issue short-lived sign-in tokens.",
  // capacity
  server_busy: "The server is at capacity right now. Please try again in a few seconds.",
  slow_consumer: "The connection could not keep up with the audio and was closed. Reconnecting on the next utterance.",
  inactivity_timeout: "The connection was closed after a long idle time. It reconnects on the next utterance.",
  rate_limited: "Too many requests in a short time. Wait a moment (the server says how long) and try again.",
  body_timeout: "The upload stalled and the server stopped waiting for it. Check the connection and try again.",
  // voices and consent
  consent_required: "Please read and accept the consent statement (and fill in the speaker's name) before cloning.",
  voice_unavailable: "This voice cannot speak now: it is still cloning, its cloning failed, or its consent was revoked.",
  unknown_voice: "That voice does not exist on this server (any more). Pick another voice.",
  unsupported_language: "This voice does not speak the language asked for. Pick a voice that speaks it.",
  // reference audio
  undecodable_audio: "That file could not be read as audio. Use a WAV, MP3, FLAC, OGG or WebM recording.",
  too_short: "The recording has too little speech. Read the whole script (at least 10 seconds of speech, 30 seconds is better).",
  too_long: "The recording is too long. Keep it under 10 minutes.",
  clipped: "The recording is too loud and distorted (clipped). Move away from the microphone or lower its gain and record again.",
  too_noisy: "The recording is too noisy. Record again in a quieter room, close to the microphone.",
  multiple_speakers: "More than one voice was heard in the recording. Only the speaker who gave consent may be on it.",
  file_too_large: "The upload is too large (at most 50 MB together).",
  bad_reference_audio: "The reference audio cannot be used for cloning.",
  // streaming
  text_too_long: "The text of this utterance is too long (at most 5,000 characters). Start a new one.",
  too_many_contexts: "Too many utterances are open at once. Press Stop and try again.",
  synthesis_failed: "Part of the text could not be spoken; the rest goes on.",
  context_closed: "That utterance has already ended; the next text starts a new one.",
  unknown_context: "That utterance is unknown to the server (it was refused or never started).",
  bad_format: "The server does not offer that audio format.",
  bad_sample_rate: "The server does not offer that sample rate.",
  message_too_large: "A message was too large for the server (at most 64 kB); the connection was closed.",
  bad_json: "The page sent something that is not JSON (a bug in the page).",
  unknown_type: "The page sent a message type the server does not know (a bug in the page).",
  binary_not_supported: "The page sent binary data, which the server does not accept (a bug in the page).",
  bad_request: "The request was not valid.",
  bad_message: "The page sent a message the server did not accept.",
  internal_error: "Something went wrong on the server. Please try again.",
  // the page's own
  no_sign_in: "This page could not sign in. Open it from the server's machine (local demo) or add ?token=<short-lived token> to its address.",
  mic_denied: "The microphone is not available: allow microphone access for this page, or upload a file instead.",
  webrtc_failed: "The WebRTC call could not be connected. Switch to WebSocket, or check that UDP is not blocked.",
  network: "The server cannot be reached. Is it running?",
  no_audio_selected: "Record a reference or choose a file first.",
};

// WebSocket close codes of the native protocol, for closes that arrive without an error message.
const CLOSE_CODES = {
  1009: "message_too_large", 1011: "internal_error", 1013: "server_busy", 4000: "inactivity_timeout",
  4001: "slow_consumer", 4401: "unauthorized", 4402: "quota_exceeded", 4403: "format_not_allowed",
  4429: "too_many_streams",
};

/** An error with a machine-readable code, as the server reports them. */
export class TimbreError extends Error {
  constructor(code, detail = "") {
    super(detail || code);
    this.code = code;
    this.detail = detail;
  }
}

/** A readable sentence for an error code; `detail` (the server's message) is appended. */
export function describe(code, detail = "") {
  const text = MESSAGES[code] || "Something went wrong.";
  const extra = detail && detail !== code ? ` (${detail})` : "";
  return `${text}${extra}`;
}

/** The error code implied by a WebSocket close code, or null for an ordinary close. */
export function closeCodeError(code) {
  return CLOSE_CODES[code] || null;
}
