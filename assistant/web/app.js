// stepvoice browser client: the OpenAI Realtime protocol over one WebSocket.
// Microphone -> PCM16 24 kHz -> input_audio_buffer.append (the server's VAD finds the turns);
// response.output_audio.delta -> Web Audio playback; transcript, tool calls and voice picker on the page.
// The page keeps what tests need to read in window.stepvoice.
"use strict";

const RATE = 24000;            // audio/pcm in both directions
const SEND_EVERY = RATE / 10;  // samples per append (100 ms)
const params = new URLSearchParams(location.search);
const token = params.get("token");  // browsers cannot set headers on a WebSocket: sent as a subprotocol

const state = window.stepvoice = {
  connected: false, micOn: false, micSamples: 0, speechStarts: 0, responses: 0, lastStatus: null,
  audioDeltas: 0, samplesScheduled: 0, samplesPlayed: 0, errors: [], toolCalls: [], transcript: [],
};

const $ = (id) => document.getElementById(id);
const ui = { status: $("status"), voice: $("voice"), mode: $("mode"), mic: $("mic"), transcript: $("transcript"),
             level: $("level"), form: $("say"), text: $("text"), info: $("info") };

let ws = null;
let ctx = null;
let playHead = 0;          // AudioContext time where the next chunk starts
let sources = [];          // scheduled chunks (stopped on barge-in)
let speaking = null;       // {itemId, start} of the reply being played
const bubbles = new Map(); // item id -> element
const spokenFrom = {};     // user item id -> audio_start_ms (server VAD)
const spokenMs = {};       // user item id -> how long the user spoke

// ---- connection ------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = ["realtime"];
  if (token) protocols.push("openai-insecure-api-key." + token);
  ws = new WebSocket(`${scheme}://${location.host}/v1/realtime`, protocols);
  ws.onopen = () => { state.connected = true; setStatus("on", "connected"); sendSession(); };
  ws.onclose = () => {
    state.connected = false; setStatus("off", "disconnected");
    setTimeout(connect, 1500);
  };
  ws.onmessage = (m) => handle(JSON.parse(m.data));
}

function send(event) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(event));
}

function sendSession() {
  const output = { format: { type: "audio/pcm", rate: RATE } };
  if (ui.voice.value) output.voice = ui.voice.value;
  send({ type: "session.update", session: {
    type: "realtime",
    output_modalities: [ui.mode.value],
    audio: {
      input: { format: { type: "audio/pcm", rate: RATE },
               turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500,
                                 create_response: true, interrupt_response: true } },
      output,
    },
  } });
}

function setStatus(kind, text) {
  ui.status.className = "status " + kind;
  ui.status.textContent = text;
}

// ---- server events -----------------------------------------------------------------------

function handle(ev) {
  switch (ev.type) {
    case "session.updated": {
      const voice = ev.session.audio && ev.session.audio.output && ev.session.audio.output.voice;
      if (voice && [...ui.voice.options].some((o) => o.value === voice)) ui.voice.value = voice;
      break;
    }
    case "input_audio_buffer.speech_started":
      state.speechStarts += 1;
      spokenFrom[ev.item_id] = ev.audio_start_ms;
      bargeIn();
      setStatus("busy", "listening");
      break;
    case "input_audio_buffer.speech_stopped":
      if (ev.item_id in spokenFrom) spokenMs[ev.item_id] = ev.audio_end_ms - spokenFrom[ev.item_id];
      break;
    case "conversation.item.done":
      if (ev.item.type === "message" && ev.item.role === "user") userTurn(ev.item);
      if (ev.item.type === "function_call_output") addTurn("tool", "result", ev.item.output);
      // a tool the server ran itself (OpenAI's item for server-side tools): call and result in one item
      if (ev.item.type === "mcp_call") {
        state.toolCalls.push({ name: ev.item.name, arguments: ev.item.arguments, server: true });
        addTurn("tool", "tool call", `${ev.item.name}(${ev.item.arguments})`);
        addTurn("tool", "result", ev.item.output != null ? ev.item.output : (ev.item.error || {}).message || "");
      }
      // a tool under the `confirm` policy: the server waits for this page's answer
      if (ev.item.type === "mcp_approval_request") {
        const approve = window.confirm(`The assistant wants to run ${ev.item.name}(${ev.item.arguments}). Allow it?`);
        addTurn("tool", approve ? "allowed" : "refused", `${ev.item.name}(${ev.item.arguments})`);
        send({ type: "conversation.item.create",
               item: { type: "mcp_approval_response", approval_request_id: ev.item.id, approve } });
      }
      break;
    case "response.created":
      setStatus("busy", "answering");
      break;
    case "response.output_item.added":
      if (ev.item.type === "message") bubbles.set(ev.item.id, addTurn("assistant", "stepvoice", ""));
      break;
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta": {
      const el = bubbles.get(ev.item_id);
      if (el) { el.querySelector(".body").textContent += ev.delta; scrollDown(); }
      const last = state.transcript[state.transcript.length - 1];
      if (last && last.id === ev.item_id) last.text += ev.delta;
      else state.transcript.push({ role: "assistant", id: ev.item_id, text: ev.delta });
      break;
    }
    case "response.output_audio.delta":
      play(ev.item_id, ev.delta);
      break;
    case "response.function_call_arguments.done":
      state.toolCalls.push({ name: ev.name, arguments: ev.arguments });
      addTurn("tool", "tool call", `${ev.name}(${ev.arguments})`);
      break;
    case "response.done":
      state.responses += 1;
      state.lastStatus = ev.response.status;
      setStatus("on", state.micOn ? "listening" : "connected");
      break;
    case "error":
      state.errors.push(ev.error);
      ui.info.textContent = "server: " + ev.error.message;
      break;
  }
}

function userTurn(item) {
  const spoken = item.id in spokenMs ? `(spoke ${(spokenMs[item.id] / 1000).toFixed(1)} s)` : "(spoke)";
  const parts = item.content.map((c) => c.type === "input_text" ? c.text : (c.transcript || spoken));
  const text = parts.join(" ");
  state.transcript.push({ role: "user", id: item.id, text });
  addTurn("user", "you", text);
}

function addTurn(kind, who, text) {
  const el = document.createElement("div");
  el.className = "turn " + kind;
  el.innerHTML = '<span class="who"></span><span class="body"></span>';
  el.querySelector(".who").textContent = who;
  el.querySelector(".body").textContent = text;
  ui.transcript.appendChild(el);
  scrollDown();
  return el;
}

function scrollDown() { ui.transcript.parentElement.scrollTop = ui.transcript.parentElement.scrollHeight; }

// ---- playback ---------------------------------------------------------------------------

async function audioContext() {
  if (!ctx) ctx = new AudioContext({ sampleRate: RATE });
  if (ctx.state === "suspended") await ctx.resume();
  return ctx;
}

function play(itemId, b64) {
  if (!ctx) return;
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  const n = bytes.length >> 1;
  if (!n) return;
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) samples[i] = view.getInt16(2 * i, true) / 32768;
  const buffer = ctx.createBuffer(1, n, RATE);
  buffer.copyToChannel(samples, 0);
  const src = ctx.createBufferSource();
  src.buffer = buffer;
  src.connect(ctx.destination);
  const at = Math.max(ctx.currentTime + 0.03, playHead);
  if (!speaking || speaking.itemId !== itemId) speaking = { itemId, start: at };
  src.start(at);
  playHead = at + buffer.duration;
  sources.push(src);
  state.audioDeltas += 1;
  state.samplesScheduled += n;
  src.onended = () => { state.samplesPlayed += n; sources = sources.filter((s) => s !== src); };
}

function bargeIn() {
  // The user talks over the reply: stop it and tell the server how much was heard.
  if (!ctx || !speaking || ctx.currentTime >= playHead) return;
  const heardMs = Math.max(0, Math.round((ctx.currentTime - speaking.start) * 1000));
  for (const s of sources) { try { s.stop(); } catch (e) { /* already ended */ } }
  sources = [];
  playHead = ctx.currentTime;
  send({ type: "conversation.item.truncate", item_id: speaking.itemId, content_index: 0, audio_end_ms: heardMs });
  const el = bubbles.get(speaking.itemId);
  if (el) el.classList.add("interrupted");
  speaking = null;
}

// ---- microphone -------------------------------------------------------------------------

const TAP = `class Tap extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0] && inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor("tap", Tap);`;

async function startMic() {
  const ac = await audioContext();
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  await ac.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: "application/javascript" })));
  const source = ac.createMediaStreamSource(stream);  // the context runs at 24 kHz: the browser resamples
  const tap = new AudioWorkletNode(ac, "tap");
  const mute = ac.createGain();
  mute.gain.value = 0;
  source.connect(tap).connect(mute).connect(ac.destination);
  let pending = [];
  let count = 0;
  tap.port.onmessage = (e) => {
    pending.push(e.data);
    count += e.data.length;
    if (count < SEND_EVERY) return;
    const pcm = new Int16Array(count);
    let o = 0;
    let peak = 0;
    for (const block of pending) {
      for (let i = 0; i < block.length; i++) {
        const v = Math.max(-1, Math.min(1, block[i]));
        peak = Math.max(peak, Math.abs(v));
        pcm[o++] = v < 0 ? v * 32768 : v * 32767;
      }
    }
    pending = [];
    count = 0;
    state.micSamples += pcm.length;
    ui.level.style.width = Math.min(100, peak * 140) + "%";
    send({ type: "input_audio_buffer.append", audio: base64(new Uint8Array(pcm.buffer)) });
  };
  state.micOn = true;
  ui.mic.textContent = "Microphone on";
  ui.mic.classList.add("live");
  setStatus("on", "listening");
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// ---- controls ---------------------------------------------------------------------------

async function loadVoices() {
  try {
    const r = await fetch("/v1/voices", { headers: token ? { Authorization: "Bearer " + token } : {} });
    const { voices } = await r.json();
    ui.voice.innerHTML = "";
    for (const v of voices) ui.voice.add(new Option(v, v));
    if (!voices.length) ui.voice.add(new Option("(server default)", ""));
  } catch (e) {
    ui.voice.add(new Option("(server default)", ""));
  }
}

ui.voice.onchange = sendSession;
ui.mode.onchange = sendSession;
ui.mic.onclick = () => { if (!state.micOn) startMic().catch((e) => { ui.info.textContent = "microphone: " + e.message; }); };
ui.form.onsubmit = async (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  await audioContext();
  ui.text.value = "";
  send({ type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
  send({ type: "response.create" });
};

loadVoices().then(() => {
  connect();
  if (params.get("autostart") === "1") {
    startMic().catch((e) => { ui.info.textContent = "microphone: " + e.message; state.errors.push({ message: String(e) }); });
  }
});
ui.info.textContent = "Talk after starting the microphone; the server detects when you stop. " +
  (token ? "Token sent as a WebSocket subprotocol." : "");
