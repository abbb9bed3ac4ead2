// Shared by the chat page and the dashboard: API calls with the key, SSE over fetch, the key
// dialog and small formatting helpers. Written for llamaproc; no third-party code.
"use strict";

const KEY_STORE = "llamaproc.apiKey";

// The server's root, from the page's data-root ("." on the chat page, ".." on the dashboard),
// so that the pages work under llama-server's --api-prefix too.
const ROOT = new URL((document.documentElement.dataset.root || ".") + "/", location.href);

function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), ROOT).toString();
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function storedKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

let keyPrompt = null;  // one dialog at a time; every caller that got 401 waits for it

// Asks the user for the API key (a form in the page, not window.prompt). Resolves once a key
// was entered.
function keyDialog() {
  let dialog = document.getElementById("key-dialog");
  if (!dialog) {
    dialog = el("div", { id: "key-dialog", class: "dialog", hidden: true, role: "dialog", "aria-modal": "true",
                         "aria-labelledby": "key-title" },
      el("form", {},
        el("h2", { id: "key-title" }, "API key"),
        el("p", { class: "key-reason" }),
        el("input", { type: "password", autocomplete: "current-password", "aria-label": "API key",
                      placeholder: "API key" }),
        el("button", { type: "submit" }, "Use this key")));
    document.body.append(dialog);
  }
  return dialog;
}

function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const dialog = keyDialog();
    const form = dialog.querySelector("form");
    const input = dialog.querySelector("input");
    dialog.querySelector(".key-reason").textContent = reason || "";
    input.value = "";
    dialog.hidden = false;
    input.focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      localStorage.setItem(KEY_STORE, key);
      dialog.hidden = true;
      keyPrompt = null;
      resolve(key);
    };
  });
  return keyPrompt;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = storedKey();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function errorMessage(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error) return body.error.message || JSON.stringify(body.error);
  } catch (_) { /* not JSON */ }
  return text || res.status + " " + res.statusText;
}

// fetch() with the key; on 401 asks for a key and tries again. Throws ApiError on any other
// error status, with the server's message.
async function api(path, options) {
  const opts = Object.assign({}, options || {});
  for (;;) {
    opts.headers = headers((options || {}).headers);
    const res = await fetch(apiUrl(path), opts);
    if (res.status === 401) {
      await askForKey(storedKey() ? "That key was refused. Enter the server's API key." :
                                    "This server needs an API key.");
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await errorMessage(res));
    return res;
  }
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

function postJson(path, body, options) {
  return api(path, Object.assign({
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }, options || {}));
}

// Reads a text/event-stream response, calling onData(dataText) for each event's data. Returns
// when the stream ends (or throws AbortError when its signal is aborted).
async function readEvents(res, onData) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) onData(data);
    }
  }
}

// A model id to show: a file path's last part (a single server's id is its model's path).
function shortName(id) {
  const parts = String(id).split("/");
  return id.startsWith("/") || id.includes(".gguf") ? parts[parts.length - 1] : id;
}

function formatBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

// Creates an element with attributes and children (strings become text nodes: never HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setupKeyButton() {
  const button = document.getElementById("key-button");
  if (!button) return;
  button.addEventListener("click", () => {
    localStorage.removeItem(KEY_STORE);
    askForKey("Enter the server's API key (kept in this browser).").then(() => location.reload());
  });
}

document.addEventListener("DOMContentLoaded", setupKeyButton);
