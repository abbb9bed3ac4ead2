// The chat page: streams answers from /v1/chat/completions, keeps the conversation in
// localStorage, resumes a stream that was in flight when the page was reloaded (GET
// /v1/stream, the conversation's X-Conversation-Id), and picks a pool's model (POST
// /models/load, progress from GET /llamaproc/status). Model output is untrusted: it is only
// ever put in the page as text nodes.
"use strict";

const CHAT_STORE = "llamaproc.chat";
const SETTINGS_STORE = "llamaproc.settings";

const $ = (id) => document.getElementById(id);

let chat = loadChat();
let models = [];        // from /llamaproc/status
let serverKind = "server";
let generating = null;  // {controller, message} while a response streams in
let pollTimer = null;

function newConversationId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "chat-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function loadChat() {
  try {
    const saved = JSON.parse(localStorage.getItem(CHAT_STORE));
    if (saved && saved.id && Array.isArray(saved.messages)) return saved;
  } catch (_) { /* a broken entry starts a new chat */ }
  return { id: newConversationId(), model: "", messages: [] };
}

function saveChat() {
  localStorage.setItem(CHAT_STORE, JSON.stringify(chat));
}

function loadSettings() {
  let s = {};
  try { s = JSON.parse(localStorage.getItem(SETTINGS_STORE)) || {}; } catch (_) { /* defaults */ }
  $("system-prompt").value = s.system || "";
  if (s.temperature !== undefined) $("temperature").value = s.temperature;
  if (s.max_tokens !== undefined) $("max-tokens").value = s.max_tokens;
}

function saveSettings() {
  localStorage.setItem(SETTINGS_STORE, JSON.stringify({
    system: $("system-prompt").value,
    temperature: $("temperature").value,
    max_tokens: $("max-tokens").value,
  }));
}

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

// -- rendering ------------------------------------------------------------------------------

// Puts `text` into `container` readably: ``` fences become code blocks, `x` inline code, line
// breaks stay. Only text nodes: a "<script>" in the text is shown, never run.
function renderText(container, text) {
  container.replaceChildren();
  const parts = text.split("```");
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      let code = part;
      let lang = "";
      const nl = part.indexOf("\n");
      if (nl >= 0 && /^[\w+#.-]*$/.test(part.slice(0, nl).trim())) {
        lang = part.slice(0, nl).trim();
        code = part.slice(nl + 1);
      }
      container.append(el("pre", { class: "code", "data-lang": lang || null }, el("code", {}, code)));
      return;
    }
    if (!part) return;
    const block = el("div", { class: "text" });
    part.split(/`([^`\n]+)`/).forEach((seg, j) => {
      block.append(j % 2 ? el("code", {}, seg) : document.createTextNode(seg));
    });
    container.append(block);
  });
}

function messageNode(message, index) {
  const body = el("div", { class: "body" });
  renderText(body, message.content || "");
  const node = el("article", { class: "message " + message.role, "data-index": index },
    el("div", { class: "who" }, message.role === "user" ? "You" : (message.model ? shortName(message.model) : "Assistant")));
  if (message.reasoning) {
    const thinking = el("div", { class: "body" });
    renderText(thinking, message.reasoning);
    node.append(el("details", { class: "reasoning" }, el("summary", {}, "Reasoning"), thinking));
  }
  node.append(body);
  const notes = [];
  if (message.pending) notes.push(el("span", { class: "typing" }, "generating…"));
  if (message.stopped) notes.push("stopped");
  if (message.interrupted) notes.push("interrupted (the server no longer has this stream)");
  if (message.error) notes.push(el("span", { class: "error-text" }, "error: " + message.error));
  if (message.timings && message.timings.predicted_per_second) {
    notes.push(message.timings.predicted_n + " tokens, " +
               message.timings.predicted_per_second.toFixed(1) + " tok/s");
  }
  if (message.role === "assistant" && !message.pending && (message.error || message.stopped || message.interrupted)) {
    notes.push(el("button", { type: "button", class: "link", onclick: () => retry(index) }, "Retry"));
  }
  if (notes.length) {
    const footer = el("footer", {});
    notes.forEach((n, i) => { if (i) footer.append(" · "); footer.append(n); });
    node.append(footer);
  }
  return node;
}

function render() {
  const box = $("messages");
  box.replaceChildren(...chat.messages.map(messageNode));
  if (!chat.messages.length) {
    box.append(el("p", { id: "empty-hint", class: "hint" },
      "Ask anything. Enter sends, Shift+Enter starts a new line, Esc stops."));
  }
  box.scrollTop = box.scrollHeight;
  $("send").hidden = Boolean(generating);
  $("stop").hidden = !generating;
}

// Re-renders only the streaming message (cheap enough per chunk, batched per frame).
let frameAsked = false;
function renderStreaming() {
  if (frameAsked) return;
  frameAsked = true;
  requestAnimationFrame(() => {
    frameAsked = false;
    const box = $("messages");
    const index = chat.messages.length - 1;
    const old = box.querySelector(`article[data-index="${index}"]`);
    if (!old) { render(); return; }
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    old.replaceWith(messageNode(chat.messages[index], index));
    if (nearBottom) box.scrollTop = box.scrollHeight;
  });
}

// -- models ---------------------------------------------------------------------------------

function modelLabel(m) {
  const name = shortName(m.id);
  if (m.state === "loading") return `${name} (loading ${Math.round(100 * m.load_progress)}%)`;
  if (m.state === "failed") return `${name} (failed)`;
  return `${name} (${m.state})`;
}

function selectedModel() {
  return models.find((m) => m.id === chat.model) || null;
}

function showModelState() {
  const m = selectedModel();
  const box = $("model-state");
  if (!m) { box.textContent = ""; return; }
  box.className = "model-state state-" + m.state;
  if (m.state === "loading") box.textContent = `loading ${Math.round(100 * m.load_progress)}%`;
  else if (m.state === "failed") box.textContent = "failed: " + (m.failure ? m.failure.message : "unknown reason");
  else box.textContent = m.state;
}

async function refreshModels() {
  try {
    const status = await apiJson("llamaproc/status");
    serverKind = status.kind;
    models = status.models;
  } catch (e) {
    showError("Cannot read the server's models: " + e.message);
    return;
  }
  const select = $("model");
  if (!models.some((m) => m.id === chat.model)) {
    const loaded = models.find((m) => m.state === "loaded");
    chat.model = (loaded || models[0] || { id: "" }).id;
    saveChat();
  }
  select.replaceChildren(...models.map((m) => el("option", { value: m.id, selected: m.id === chat.model, title: m.id }, modelLabel(m))));
  select.disabled = serverKind !== "pool";
  showModelState();
  const busy = models.some((m) => m.state === "loading");
  schedulePoll(busy ? 500 : 3000);
}

function schedulePoll(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(refreshModels, ms);
}

async function pickModel(id) {
  chat.model = id;
  saveChat();
  const m = selectedModel();
  showModelState();
  if (serverKind === "pool" && m && m.state !== "loaded" && m.state !== "loading") {
    try {
      await postJson("models/load", { model: id });
    } catch (e) {
      showError(`Loading ${id} failed: ${e.message}`);
    }
  }
  refreshModels();
}

// -- generation -----------------------------------------------------------------------------

function requestMessages(upTo) {
  const out = [];
  const system = $("system-prompt").value.trim();
  if (system) out.push({ role: "system", content: system });
  for (const m of chat.messages.slice(0, upTo)) {
    if (m.role === "assistant" && (m.error || !m.content)) continue;
    out.push({ role: m.role, content: m.content });
  }
  return out;
}

let lastSave = 0;
function saveSoon(force) {
  const now = Date.now();
  if (force || now - lastSave > 400) {
    lastSave = now;
    saveChat();
  }
}

// Applies one SSE data payload of a chat completion stream to `message`. True at [DONE].
function applyChunk(message, data) {
  if (data === "[DONE]") return true;
  let chunk;
  try { chunk = JSON.parse(data); } catch (_) { return false; }
  if (chunk.error) {
    message.error = chunk.error.message || JSON.stringify(chunk.error);
    return true;
  }
  const choice = (chunk.choices || [])[0];
  if (choice && choice.delta) {
    if (choice.delta.content) message.content += choice.delta.content;
    if (choice.delta.reasoning_content) message.reasoning = (message.reasoning || "") + choice.delta.reasoning_content;
  }
  if (chunk.timings) message.timings = chunk.timings;
  return false;
}

async function consume(res, message) {
  await readEvents(res, (data) => {
    applyChunk(message, data);
    saveSoon(false);
    renderStreaming();
  });
}

async function generate(message, requestBody, resumeFrom) {
  const controller = new AbortController();
  generating = { controller, message };
  render();
  try {
    let res;
    if (resumeFrom === undefined) {
      res = await api("v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Conversation-Id": chat.id },
        body: JSON.stringify(requestBody),
        signal: controller.signal,
      });
    } else {
      res = await api(`v1/stream?conv_id=${encodeURIComponent(chat.id)}&from=${resumeFrom}`, { signal: controller.signal });
    }
    await consume(res, message);
  } catch (e) {
    if (e.name === "AbortError") {
      message.stopped = true;
    } else if (resumeFrom !== undefined && e.status === 404) {
      message.interrupted = true;
    } else {
      message.error = e.message;
    }
  } finally {
    message.pending = false;
    generating = null;
    saveSoon(true);
    render();
    refreshModels();
  }
}

function send(text) {
  showError("");
  chat.messages.push({ role: "user", content: text });
  const upTo = chat.messages.length;
  const message = { role: "assistant", content: "", pending: true, model: chat.model };
  chat.messages.push(message);
  saveChat();
  generate(message, requestBody(upTo));
}

function requestBody(upTo) {
  const body = {
    messages: requestMessages(upTo),
    stream: true,
    temperature: Number($("temperature").value),
    max_tokens: Number($("max-tokens").value),
  };
  if (chat.model) body.model = chat.model;
  return body;
}

function retry(index) {
  if (generating) return;
  chat.messages.splice(index);
  const message = { role: "assistant", content: "", pending: true, model: chat.model };
  chat.messages.push(message);
  saveChat();
  generate(message, requestBody(index));
}

async function stop() {
  if (!generating) return;
  generating.controller.abort();
  // the server goes on generating a resumable stream after its client leaves: end it there too
  try {
    await api(`v1/stream?conv_id=${encodeURIComponent(chat.id)}`, { method: "DELETE" });
  } catch (_) { /* it had ended already */ }
}

// A response that was streaming when the page went away: replay it from the first byte (the
// server keeps it, and keeps generating it, for a while).
function resumePending() {
  const last = chat.messages[chat.messages.length - 1];
  if (!last || last.role !== "assistant" || !last.pending) return;
  last.content = "";
  last.reasoning = "";
  generate(last, null, 0);
}

// -- wiring ---------------------------------------------------------------------------------

function submitPrompt() {
  const box = $("prompt");
  const text = box.value.trim();
  if (!text || generating) return;
  box.value = "";
  send(text);
}

document.addEventListener("DOMContentLoaded", () => {
  loadSettings();
  render();
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); submitPrompt(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitPrompt();
    }
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
  $("stop").addEventListener("click", stop);
  $("model").addEventListener("change", (event) => pickModel(event.target.value));
  $("new-chat").addEventListener("click", () => {
    if (generating) stop();
    chat = { id: newConversationId(), model: chat.model, messages: [] };
    saveChat();
    render();
    $("prompt").focus();
  });
  $("settings-button").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("settings-button").setAttribute("aria-expanded", String(!panel.hidden));
  });
  for (const id of ["system-prompt", "temperature", "max-tokens"]) $(id).addEventListener("change", saveSettings);
  refreshModels().then(resumePending);
});
