// Talking to the service: the API key, requests, problem documents, uploads, downloads and the
// Server-Sent Events of a job. Every URL is relative to the page, so the page also works behind a
// proxy that serves the gateway under a prefix.

const KEY_STORAGE = "customer-import.api-key";

/** A problem the API answered (application/problem+json), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `The service answered ${status}.`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }

  /** [{field, message}] of the problem; empty when it names no input. */
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
const unauthorizedListeners = new Set();

export function hasKey() {
  return apiKey !== "";
}

/** Keep the key for this tab only (sessionStorage): it is gone when the tab closes. */
export function setKey(key) {
  apiKey = key.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export function forgetKey() {
  setKey("");
}

/** Called with the ApiError of any 401 the service answers. */
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  return headers;
}

export function apiUrl(path, query = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url;
}

const NETWORK_PROBLEM = {
  title: "Network error",
  detail: "The service could not be reached. Check your connection and try again.",
};

function problemFromText(status, statusText, contentType, text) {
  let problem = {};
  if (/json/i.test(contentType || "")) {
    try {
      problem = JSON.parse(text);
    } catch {
      problem = {};
    }
  }
  if (typeof problem !== "object" || problem === null) problem = {};
  if (!problem.detail) {
    problem.detail = problem.title
      ? `${problem.title} (${status}).`
      : `The service answered ${status}${statusText ? ` ${statusText}` : ""}.`;
  }
  const error = new ApiError(status, problem);
  if (status === 401) for (const listener of unauthorizedListeners) listener(error);
  return error;
}

/**
 * One request; resolves to the Response when it is a success, else rejects with an ApiError.
 * `json` is sent as the JSON body; `body` as it is (FormData, ...); `keepalive`: the request outlives the
 * page (one sent as the page is left).
 */
export async function request(path, { method = "GET", query, json, body, headers = {}, signal, keepalive = false } = {}) {
  const sent = authHeaders(headers);
  if (!sent.has("Accept")) sent.set("Accept", "application/json");
  if (json !== undefined) {
    sent.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), { method, headers: sent, body, signal, keepalive, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { ...NETWORK_PROBLEM });
  }
  if (!response.ok) {
    const text = await response.text().catch(() => "");
    throw problemFromText(response.status, response.statusText, response.headers.get("Content-Type"), text);
  }
  return response;
}

export async function getJSON(path, options = {}) {
  const response = await request(path, options);
  return response.json();
}

export async function sendJSON(method, path, json, options = {}) {
  const response = await request(path, { ...options, method, json });
  return response.status === 204 ? null : response.json();
}

/**
 * POST a multipart form with upload progress (fetch cannot report it). Resolves to the parsed JSON
 * answer; rejects with an ApiError like request(). `onProgress(sentBytes, totalBytes)`.
 */
export function upload(path, form, { query, onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl(path, query));
    authHeaders({ Accept: "application/json" }).forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.responseType = "text";
    if (onProgress) xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0));
    xhr.addEventListener("load", () => {
      const type = xhr.getResponseHeader("Content-Type");
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, { title: "Bad answer", detail: "The service's answer could not be read." }));
        }
      } else {
        reject(problemFromText(xhr.status, xhr.statusText, type, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { ...NETWORK_PROBLEM })));
    xhr.addEventListener("abort", () => reject(new DOMException("The upload was cancelled.", "AbortError")));
    if (signal) {
      if (signal.aborted) {
        reject(new DOMException("The upload was cancelled.", "AbortError"));
        return;
      }
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(form);
  });
}

function filenameOf(disposition) {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ""));
    } catch {
      // fall through to the plain parameter
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1].trim() : null;
}

/**
 * Download a file the API serves (it needs the Authorization header, so a plain link cannot):
 * fetch it, then hand the browser an object URL through a temporary <a download>.
 * Resolves to {name, size}.
 */
export async function download(path, query, fallbackName) {
  const response = await request(path, { query, headers: { Accept: "*/*" } });
  const blob = await response.blob();
  const name = filenameOf(response.headers.get("Content-Disposition")) || fallbackName;
  const href = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = href;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return { name, size: blob.size };
}

const TERMINAL_EVENTS = new Set(["completed", "failed", "cancelled"]);

/**
 * Follow a job's Server-Sent Events (`progress`, then `completed` or `failed`). EventSource cannot
 * send an Authorization header, so the stream is read with fetch() and parsed here. `onEvent(type,
 * document)` is called for each event; resolves to the final [type, document]. A stream that ends
 * early is resumed with Last-Event-ID (after a pause that grows, up to 10 s); an API error (404, 401)
 * rejects.
 */
export async function followEvents(path, onEvent, { signal } = {}) {
  let lastEventId = null;
  let pause = 500;
  for (;;) {
    const headers = { Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    let final = null;
    try {
      const response = await request(path, { headers, signal });
      final = await readEvents(response.body, (type, data, id) => {
        if (id) lastEventId = id;
        const document = JSON.parse(data);
        onEvent(type, document);
        pause = 500;
        return TERMINAL_EVENTS.has(type) ? [type, document] : null;
      });
    } catch (error) {
      if (error.name === "AbortError" || (error instanceof ApiError && error.status !== 0)) throw error;
      // A network failure: try again below.
    }
    if (final) return final;
    await sleep(pause, signal);
    pause = Math.min(pause * 2, 10_000);
  }
}

/** Parse an event stream; `handle(type, data, id)` returning non-null ends it with that value. */
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buffer += value;
      // Lines end in CRLF, LF or CR; a CR at the very end may be the first half of a CRLF.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) {
            const result = handle(type || "message", data.join("\n"), id);
            if (result) return result;
          }
          type = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the keep-alive ping
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") type = text;
        else if (field === "data") data.push(text);
        else if (field === "id" && !text.includes("\0")) id = text;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new DOMException("Stopped.", "AbortError"));
      },
      { once: true },
    );
  });
}
