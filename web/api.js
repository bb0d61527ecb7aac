// Signing in and the REST API. The page holds only short-lived tokens, never an API key: a
// deployment's backend mints one with POST /v1/tokens and hands it over (?token= in the address);
// on the embedded default server a local visitor gets one from /demo/token.
import { TimbreError } from "./errors.js";

const REFRESH_MARGIN_S = 60;

export class Api {
  constructor() {
    this.token = null;
    this.expiresAt = 0; // unix seconds
    this.fromUrl = new URLSearchParams(location.search).get("token");
  }

  /** A token valid for at least another minute (re-signing in when the demo sign-in allows). */
  async credential() {
    const now = Date.now() / 1000;
    if (this.token && (this.fromUrl || this.expiresAt - now > REFRESH_MARGIN_S)) return this.token;
    if (this.fromUrl) { this.token = this.fromUrl; this.expiresAt = Infinity; return this.token; }
    let r;
    try { r = await fetch("/demo/token", { cache: "no-store" }); } catch (err) {
      throw new TimbreError("network", String(err));
    }
    if (!r.ok) throw new TimbreError("no_sign_in");
    const body = await r.json();
    this.token = body.token;
    this.expiresAt = body.expires_at;
    return this.token;
  }

  /**
   * A narrower token for a URL (the WebSocket's ?token=, which proxies may log): only the `tts`
   * scope, for a minute, minted with POST /v1/tokens as a deployment's backend would.
   */
  async streamToken() {
    const body = await this.json("POST", "/v1/tokens", { ttl_s: 60, scopes: ["tts"] });
    return body.token;
  }

  /** Fetch with the bearer token; returns the parsed JSON body or throws TimbreError. */
  async json(method, path, body = undefined, extraHeaders = {}) {
    const headers = { Authorization: `Bearer ${await this.credential()}`, ...extraHeaders };
    let payload = body;
    if (body !== undefined && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let r;
    try { r = await fetch(path, { method, headers, body: payload, cache: "no-store" }); } catch (err) {
      throw new TimbreError("network", String(err));
    }
    if (r.status === 204) return null;
    let data = null;
    try { data = await r.json(); } catch { /* not JSON: judged by status below */ }
    if (!r.ok) {
      const err = data && data.error;
      throw new TimbreError(err ? err.code : `http_${r.status}`, err ? err.message : r.statusText);
    }
    return data;
  }

  voices() { return this.json("GET", "/v1/voices"); }

  job(jobId) { return this.json("GET", `/v1/jobs/${encodeURIComponent(jobId)}`); }

  /** POST /v1/voices (multipart): one reference file with its transcript and the consent. */
  createVoice({ name, file, filename, transcript, consent }) {
    const form = new FormData();
    form.append("name", name);
    form.append("file", file, filename);
    if (transcript) form.append("transcript", transcript);
    form.append("consent_owner_name", consent.ownerName);
    form.append("consent_statement", consent.statement);
    form.append("consent_accepted", consent.accepted ? "true" : "false");
    form.append("consent_purpose", consent.purpose);
    return this.json("POST", "/v1/voices", form);
  }
}
