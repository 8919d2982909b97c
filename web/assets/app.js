// Atelier chat: one session over the WebSocket chat protocol (docs/protocol.md).
// Session messages are numbered; the page keeps the last number so a reconnect (network loss,
// server restart of the connection, page reload) replays exactly what was missed.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = $("conversation");
const input = $("input");
const brandSelect = $("brand");
const connection = $("connection");
const cancelButton = $("cancel");
const sendButton = $("send");
const progressBox = $("progress");
const progressBar = $("progress-bar");
const phaseLabel = $("phase");
const preview = $("preview");

const store = window.sessionStorage;
let sessionId = store.getItem("atelier.session");
// A fresh page has drawn nothing yet: it replays the session from the start.
let lastSeq = 0;
let socket = null;
let retry = 0;
let pingTimer = null;
let reconnectTimer = null;
let connecting = false;
let state = { running: false, question: null };
let streaming = null; // the assistant bubble the deltas are written into
let gallery = null; // the image grid of the running brief
let limits = { max_message_chars: 4000 };

function scrollDown() {
  window.scrollTo({ top: document.body.scrollHeight });
}

function bubble(kind, text) {
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  li.textContent = text;
  conversation.appendChild(li);
  scrollDown();
  return li;
}

function setConnection(text, offline) {
  connection.textContent = text;
  connection.classList.toggle("offline", Boolean(offline));
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    bubble("error", "Not connected; reconnecting, please try again in a moment.");
    return false;
  }
  socket.send(JSON.stringify({ v: 1, ...message }));
  return true;
}

function disableChoices() {
  for (const b of conversation.querySelectorAll(".choices button")) b.disabled = true;
}

function showQuestion(q) {
  const li = bubble("assistant", q.text);
  li.dataset.question = q.id;
  const row = document.createElement("div");
  row.className = "choices";
  row.setAttribute("role", "group");
  row.setAttribute("aria-label", "Quick replies");
  for (const choice of q.choices) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = choice;
    b.addEventListener("click", () => {
      if (send({ type: "answer", question_id: q.id, text: choice })) disableChoices();
    });
    row.appendChild(b);
  }
  const skip = document.createElement("button");
  skip.type = "button";
  skip.textContent = "Just go";
  skip.title = "Skip the question; the assistant states what it assumed";
  skip.addEventListener("click", () => {
    if (send({ type: "skip", question_id: q.id })) disableChoices();
  });
  row.appendChild(skip);
  li.appendChild(row);
  row.querySelector("button")?.focus();
}

function imageCard(m) {
  if (!gallery) {
    const li = document.createElement("li");
    li.className = "images";
    li.setAttribute("aria-label", "Images");
    conversation.appendChild(li);
    gallery = li;
  }
  const card = document.createElement("figure");
  card.className = "card";
  card.dataset.image = m.image.id;
  card.style.margin = "0";
  const img = document.createElement("img");
  img.src = m.image.url;
  img.alt = `Variant ${gallery.children.length + 1}, round ${m.iteration}: ${m.prompt}`;
  img.width = m.image.width;
  img.height = m.image.height;
  const meta = document.createElement("figcaption");
  meta.className = "meta";
  const badge = document.createElement("span");
  badge.className = `badge ${m.passed ? "pass" : "fail"}`;
  badge.textContent = m.passed ? "passed" : "failed";
  const score = document.createElement("span");
  score.textContent = `score ${m.score.toFixed(2)}`;
  const choose = document.createElement("button");
  choose.type = "button";
  choose.className = "secondary";
  choose.textContent = "Choose";
  choose.addEventListener("click", () => send({ type: "choose", image_id: m.image.id }));
  const link = document.createElement("a");
  link.href = m.image.url;
  link.download = `atelier-${m.image.id.slice(0, 12)}.png`;
  link.textContent = "Download";
  meta.append(badge, score, choose, link);
  card.append(img, meta);
  gallery.appendChild(card);
  scrollDown();
}

function applyState(s) {
  state = s;
  const busy = s.running;
  cancelButton.hidden = !busy;
  progressBox.hidden = !busy || s.phase === "clarify";
  phaseLabel.textContent = s.detail || s.phase;
  if (!busy) {
    progressBar.value = 0;
    preview.hidden = true;
  }
  if (s.brand && brandSelect.value !== s.brand) brandSelect.value = s.brand;
  updatePlaceholder();
}

function updatePlaceholder() {
  input.placeholder = state.question ? "Type your answer, or pick a quick reply" :
    state.running ? "Working… you can cancel" : "Describe what you need, e.g. “a banner for our summer sale”";
}

function handle(m) {
  const connectionMessage = m.type === "welcome" || m.type === "pong" || m.type === "error";
  if (!connectionMessage) {
    if (m.seq <= lastSeq) return; // already shown
    lastSeq = m.seq;
  }
  switch (m.type) {
    case "welcome":
      // A restarted server restores the session with a fresh log: follow its numbering.
      if (m.replay_from < lastSeq) lastSeq = m.replay_from;
      limits = m.limits;
      input.maxLength = limits.max_message_chars;
      applyState(m.state);
      break;
    case "state":
      applyState(m.state);
      break;
    case "user":
      bubble("user", m.text);
      disableChoices();
      if (!state.running) gallery = null;
      streaming = null;
      break;
    case "message":
      bubble("note", m.text);
      break;
    case "question":
      state.question = m.question;
      progressBox.hidden = true;
      updatePlaceholder();
      showQuestion(m.question);
      break;
    case "tool":
      if (m.status === "failed") bubble("note", `${m.tool} failed: ${m.summary}`);
      break;
    case "progress": {
      progressBox.hidden = false;
      progressBar.value = m.step / m.steps;
      phaseLabel.textContent = `Drawing image ${m.image + 1}: step ${m.step} of ${m.steps}`;
      if (m.preview) {
        preview.src = m.preview;
        preview.hidden = false;
      }
      break;
    }
    case "image":
      imageCard(m);
      break;
    case "critique": {
      const card = conversation.querySelector(`[data-image="${m.image_id}"]`);
      if (card) {
        const lines = m.checks.map((c) => `${c.passed ? "✓" : "✗"} ${c.name}: ${c.detail}`);
        for (const n of m.not_measured || []) lines.push(`– ${n.name}: not measured (${n.reason})`);
        card.title = lines.join("\n");
      }
      break;
    }
    case "chosen":
      for (const c of conversation.querySelectorAll(".card")) {
        c.classList.toggle("chosen", c.dataset.image === m.image_id);
      }
      break;
    case "delta":
      if (!streaming) streaming = bubble("assistant", "");
      streaming.textContent += m.text;
      scrollDown();
      break;
    case "final": {
      const text = m.message + (m.assumptions.length ? `\n\nAssumed: ${m.assumptions.join("; ")}` : "") +
        (m.citations.length ? `\nGuidelines applied: ${m.citations.join("; ")}` : "");
      if (streaming) streaming.textContent = text; else bubble("assistant", text);
      streaming = null;
      gallery = null;
      break;
    }
    case "error":
      bubble("error", m.message);
      break;
    case "pong":
      break;
  }
}

async function ensureSession() {
  if (sessionId) {
    const r = await fetch(`/v1/sessions/${sessionId}`);
    if (r.ok) return;
    if (r.status !== 404) throw new Error(`session check failed: ${r.status}`);
    bubble("note", "The earlier conversation has ended on the server; starting a new one.");
  }
  const r = await fetch("/v1/sessions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(brandSelect.value ? { brand: brandSelect.value } : {}),
  });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(body?.error?.message || `could not start a session (${r.status})`);
  }
  const created = await r.json();
  sessionId = created.id;
  lastSeq = 0;
  store.setItem("atelier.session", sessionId);
}

async function connect() {
  if (connecting || socket) return;
  connecting = true;
  clearTimeout(reconnectTimer);
  setConnection(retry ? "reconnecting…" : "connecting…", retry > 0);
  try {
    await ensureSession();
  } catch (e) {
    connecting = false;
    return reconnectLater(String(e.message || e));
  }
  connecting = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/v1/sessions/${sessionId}/ws?after=${lastSeq}`);
  socket.addEventListener("open", () => {
    retry = 0;
    setConnection("connected");
    clearInterval(pingTimer);
    pingTimer = setInterval(() => send({ type: "ping" }), 25000);
  });
  socket.addEventListener("message", (e) => {
    try {
      handle(JSON.parse(e.data));
    } catch (err) {
      console.error("bad server message", err);
    }
  });
  const current = socket;
  socket.addEventListener("close", () => {
    if (socket !== current) return;
    clearInterval(pingTimer);
    reconnectLater(navigator.onLine ? "connection lost" : "offline");
  });
}

function reconnectLater(why) {
  socket = null;
  retry += 1;
  const delay = Math.min(8000, 500 * 2 ** Math.min(retry, 4));
  setConnection(`${why}; retrying in ${Math.round(delay / 1000)} s`, true);
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, delay);
}

// A lost network may leave the socket looking open for minutes: drop it at once, and come
// back as soon as the network does.
window.addEventListener("offline", () => {
  if (socket) socket.close();
  setConnection("offline; waiting for the network", true);
});
window.addEventListener("online", () => {
  retry = 0;
  connect();
});

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  if ([...text].length > limits.max_message_chars) {
    bubble("error", `That is ${[...text].length} characters; at most ${limits.max_message_chars}.`);
    return;
  }
  const message = state.question
    ? { type: "answer", question_id: state.question.id, text }
    : { type: "message", text, ...(brandSelect.value ? { brand: brandSelect.value } : {}) };
  if (send(message)) input.value = "";
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

cancelButton.addEventListener("click", () => send({ type: "cancel" }));

async function loadBrands() {
  try {
    const r = await fetch("/v1/brands");
    if (!r.ok) return;
    const { brands } = await r.json();
    for (const b of brands) {
      const o = document.createElement("option");
      o.value = b;
      o.textContent = b;
      brandSelect.appendChild(o);
    }
    if (brands.length === 1) brandSelect.value = brands[0];
  } catch (e) {
    console.warn("brands unavailable", e);
  }
}

loadBrands().then(connect);
