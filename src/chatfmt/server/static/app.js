// chatfmt's web page: chat with the served model and see, for every turn, exactly the prompt it got.
// The prompt view comes from the server (POST /v1/render/tokens: the same rendering as the chat
// route); nothing is rendered or tokenized here. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  model: null,
  messages: [], // the conversation as sent (without the system prompt, which is added per request)
  turns: [], // {request, prompt, usage, el}
  selected: -1,
  view: "roles",
  pendingCalls: [], // tool calls of the last reply still waiting for their result
};

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(data && data.error ? data.error.message : r.status + " " + r.statusText);
  return data;
}

function setStatus(text) { $("status").textContent = text; }

function setBusy(busy) {
  document.body.dataset.state = busy ? "busy" : "idle";
  $("send").disabled = busy;
}

function toolsValue() {
  const raw = $("tools").value.trim();
  if (!raw) return null;
  const tools = JSON.parse(raw); // a syntax error is reported by send()
  if (!Array.isArray(tools)) throw new Error("tools must be a JSON list");
  return tools.length ? tools : null;
}

function chatRequest() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.messages.map((m) => ({ ...m })));
  const body = { messages };
  if (state.model) body.model = state.model;
  const tools = toolsValue();
  if (tools) body.tools = tools;
  return body;
}

// -- the conversation ------------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function addMessage(role, text, turnIndex) {
  const li = el("li", "msg " + role);
  const who = el("div", "who");
  who.append(el("span", "role", role));
  li.append(who, el("div", "body", text));
  if (turnIndex !== undefined) {
    li.dataset.turn = String(turnIndex);
    li.addEventListener("click", () => selectTurn(turnIndex));
  }
  $("turns").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function showReply(turn) {
  const li = turn.el;
  const r = turn.reply;
  li.querySelector(".body").textContent = r.content;
  let box = li.querySelector(".reasoning");
  if (r.reasoning) {
    if (!box) {
      box = el("details", "reasoning");
      box.open = true;
      box.append(el("summary", null, "reasoning"), el("div", "text"));
      li.querySelector(".body").before(box);
    }
    box.querySelector(".text").textContent = r.reasoning;
  }
  li.querySelectorAll(".tool-call").forEach((n) => n.remove());
  for (const call of r.toolCalls) {
    const c = el("div", "tool-call");
    c.append(el("span", "name", "tool call: " + call.function.name), document.createTextNode("(" + call.function.arguments + ")"));
    li.append(c);
  }
}

function showUsage(turn) {
  const u = turn.usage;
  const li = turn.el;
  let line = li.querySelector(".usage");
  if (!line) { line = el("div", "usage"); li.append(line); }
  const cached = u.prompt_tokens_details ? u.prompt_tokens_details.cached_tokens : 0;
  line.textContent = `prompt ${u.prompt_tokens} tokens (${cached} cached) · reply ${u.completion_tokens} tokens · ${turn.finish || ""}`;
  if (turn.prompt && u.prompt_tokens !== turn.prompt.num_tokens) {
    line.append(el("span", "mismatch", ` · the prompt view has ${turn.prompt.num_tokens} tokens`));
  }
  if (state.selected === state.turns.indexOf(turn)) showPrompt(turn);
}

// -- streaming -------------------------------------------------------------------------------------

function applyChunk(turn, obj) {
  if (obj.error) throw new Error(obj.error.message || "the server reported an error");
  if (obj.usage) turn.usage = obj.usage;
  for (const choice of obj.choices || []) {
    const d = choice.delta || {};
    if (d.content) turn.reply.content += d.content;
    if (d.reasoning_content) turn.reply.reasoning += d.reasoning_content;
    for (const tc of d.tool_calls || []) {
      const calls = turn.reply.toolCalls;
      while (calls.length <= tc.index) calls.push({ id: null, type: "function", function: { name: "", arguments: "" } });
      const call = calls[tc.index];
      if (tc.id) call.id = tc.id;
      if (tc.function && tc.function.name) call.function.name += tc.function.name;
      if (tc.function && tc.function.arguments) call.function.arguments += tc.function.arguments;
    }
    if (choice.finish_reason) turn.finish = choice.finish_reason;
  }
}

async function streamReply(turn) {
  const body = {
    ...turn.request,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value) || 256,
    temperature: Number($("temperature").value),
  };
  const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { const data = await r.json(); if (data.error) msg = data.error.message; } catch (e) { /* keep the status */ }
    throw new Error(msg);
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue; // a keep-alive comment
      if (data === "[DONE]") return;
      applyChunk(turn, JSON.parse(data));
      showReply(turn);
    }
  }
}

async function send(text) {
  let request;
  const pending = state.pendingCalls.shift();
  const message = pending ? { role: "tool", tool_call_id: pending.id || undefined, content: text } : { role: "user", content: text };
  state.messages.push(message);
  try {
    request = chatRequest();
  } catch (e) {
    state.messages.pop();
    setStatus("tools: " + e.message);
    return;
  }
  const index = state.turns.length;
  addMessage(pending ? "tool" : "user", text, index);
  const turn = { request, prompt: null, usage: null, finish: null, reply: { content: "", reasoning: "", toolCalls: [] } };
  turn.el = addMessage("assistant", "", index);
  state.turns.push(turn);
  setBusy(true);
  try {
    setStatus("rendering the prompt…");
    turn.prompt = await post("/v1/render/tokens", request);
    selectTurn(index);
    setStatus("generating…");
    await streamReply(turn);
    showReply(turn);
    if (turn.usage) showUsage(turn);
    const r = turn.reply;
    const reply = { role: "assistant", content: r.content || (r.toolCalls.length ? null : "") };
    if (r.reasoning) reply.reasoning_content = r.reasoning;
    if (r.toolCalls.length) {
      reply.tool_calls = r.toolCalls.map((c, i) => ({ ...c, id: c.id || `call_${index}_${i}` }));
      state.pendingCalls = reply.tool_calls.slice();
    }
    state.messages.push(reply);
    turn.el.classList.add("done");
    setStatus(state.pendingCalls.length ? `send the result of ${state.pendingCalls[0].function.name} as the next message` : "");
  } catch (e) {
    state.messages.length = state.messages.indexOf(message); // the failed turn is not part of the history
    turn.el.classList.add("error");
    turn.el.querySelector(".body").textContent = "error: " + e.message;
    setStatus("");
  } finally {
    setBusy(false);
    $("input").placeholder = state.pendingCalls.length ? `Result of ${state.pendingCalls[0].function.name}` : "Message the model (Enter sends, Shift+Enter: new line)";
  }
}

// -- the prompt view -------------------------------------------------------------------------------

function visible(text) {
  return text.replace(/\n/g, "↵\n").replace(/\t/g, "→\t");
}

function selectTurn(index) {
  state.selected = index;
  document.querySelectorAll(".msg.selected").forEach((n) => n.classList.remove("selected"));
  document.querySelectorAll(`.msg[data-turn="${index}"]`).forEach((n) => n.classList.add("selected"));
  showPrompt(state.turns[index]);
}

function showPrompt(turn) {
  const view = $("prompt-view");
  view.replaceChildren();
  const p = turn && turn.prompt;
  if (!p) return;
  $("prompt-turn").textContent = `(turn ${state.turns.indexOf(turn) + 1})`;
  const frag = document.createDocumentFragment();
  for (const t of p.tokens) {
    const span = el("span", "tok role-" + (t.role || "none"), visible(t.text));
    if (t.control) span.classList.add("control");
    if (t.trained) span.classList.add("trained");
    if (!t.text.trim()) span.classList.add("ws");
    span.dataset.id = String(t.id);
    span.title = `id ${t.id}` + (t.role ? ` · ${t.role} (message ${t.message})` : " · format") + (t.control ? " · control token" : "") + (t.trained ? " · trained" : " · not trained");
    frag.append(span);
  }
  view.append(frag);
  const u = turn.usage;
  const cached = u && u.prompt_tokens_details ? u.prompt_tokens_details.cached_tokens : null;
  const parts = [`${p.num_tokens} tokens`, `${p.tokens.filter((t) => t.control).length} control`, `${p.num_trained} trained`, `format ${p.format}`];
  if (cached !== null) parts.push(`${cached} cached`);
  if (p.warnings.length) parts.push("warnings: " + p.warnings.join("; "));
  $("prompt-stats").textContent = parts.join(" · ");
  const legend = $("legend");
  legend.replaceChildren();
  const roles = [...new Set(p.tokens.map((t) => t.role || "none"))];
  for (const r of state.view === "roles" ? roles : ["trained", "untrained"]) {
    const s = el("span", state.view === "roles" ? "tok role-" + r : "tok" + (r === "trained" ? " trained" : ""), r === "none" ? "format" : r);
    legend.append(s);
  }
  legend.append(el("span", "tok control", "control token"));
  legend.className = "legend view-" + state.view;
}

function setView(view) {
  state.view = view;
  $("prompt-view").className = "view-" + view;
  document.querySelectorAll(".view-switch button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === view)));
  if (state.selected >= 0) showPrompt(state.turns[state.selected]);
}

// -- start -----------------------------------------------------------------------------------------

async function init() {
  const saved = sessionStorage.getItem("chatfmt-api-key");
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => sessionStorage.setItem("chatfmt-api-key", $("api-key").value.trim()));
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("input").value;
    if (!text.trim() || document.body.dataset.state === "busy") return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("reset").addEventListener("click", () => {
    state.messages = []; state.turns = []; state.selected = -1; state.pendingCalls = [];
    $("turns").replaceChildren(); $("prompt-view").replaceChildren(); $("prompt-stats").textContent = ""; $("prompt-turn").textContent = "";
  });
  document.querySelectorAll(".view-switch button").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
  try {
    const r = await fetch("/health");
    const h = await r.json();
    state.model = h.model || null;
    $("model").textContent = h.model ? "model " + h.model : "";
    $("format").textContent = h.format ? "format " + h.format : "";
  } catch (e) {
    setStatus("the server did not answer /health: " + e.message);
  }
  setBusy(false);
}

init();
