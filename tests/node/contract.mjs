// The openai npm SDK's realtime client (OpenAIRealtimeWS) against `stepvoice serve` over wss://.
// Usage: node contract.mjs BASE_URL SPEECH.pcm OUT.json [generic]   (trust the server's certificate with
// NODE_EXTRA_CA_CERTS=cert.pem). Runs the flows an app relies on, asserts what it sees, and writes
// every server event to OUT.json for the strict TypeScript check (tsc over the recorded events).
// `generic`: the model's words are not known (a random-weight checkpoint): content checks are skipped,
// every response must finish (completed, or incomplete at its token limit) without an error.
import { readFileSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const [baseURL, speechPath, outPath, mode] = process.argv.slice(2);
const generic = mode === "generic";
const scripted = !generic;
const finished = (events) => assert.ok(["completed", "incomplete"].includes(events.at(-1).response.status),
                                       JSON.stringify(events.at(-1).response.status_details));
const client = new OpenAI({ apiKey: "sk-local", baseURL });
const rt = await OpenAIRealtimeWS.create(client, { model: "step-audio-2-mini" });

const all = [];
let queue = [];
let wake = null;
rt.socket.on("message", (raw) => {
  const ev = JSON.parse(raw.toString());
  all.push(ev);
  queue.push(ev);
  if (wake) wake();
});
rt.on("error", () => {}); // error events are checked by until() below

async function until(type, { errorsOk = false, timeoutMs = generic ? 120000 : 30000 } = {}) {
  const seen = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    while (queue.length) {
      const ev = queue.shift();
      seen.push(ev);
      if (!errorsOk) assert.notEqual(ev.type, "error", JSON.stringify(ev));
      if (ev.type === type) return seen;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${type}`);
    await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 200); });
    wake = null;
  }
}
const of = (events, type) => events.filter((e) => e.type === type);
const text = (events, type = "response.output_text.delta") => of(events, type).map((e) => e.delta).join("");
const pcmBytes = (events) => of(events, "response.output_audio.delta")
  .reduce((n, e) => n + Buffer.from(e.delta, "base64").length, 0);
await new Promise((resolve) => rt.socket.once("open", resolve));

// session.created: OpenAI's defaults (server VAD on, audio out)
const created = (await until("session.created")).at(-1);
assert.equal(created.session.audio.input.turn_detection.type, "server_vad");

// greeting: response.create with no input at all
if (generic) {  // short replies on CPU
  rt.send({ type: "session.update", session: { type: "realtime", max_output_tokens: 24 } });
  await until("session.updated");
}
rt.send({ type: "response.create" });
let ev = await until("response.done");
finished(ev);
if (scripted) {
  assert.equal(text(ev, "response.output_audio_transcript.delta"), "Hello, how can I help?");
  assert.equal(pcmBytes(ev), 30 * 960 * 2);
}
const greeting = of(ev, "response.output_item.done").at(-1)?.item;
const greetingId = greeting?.id;

// out-of-band response: conversation "none", its own input, metadata
rt.send({ type: "response.create", response: {
  conversation: "none", output_modalities: ["text"], metadata: { purpose: "summary" },
  input: [...(greetingId ? [{ type: "item_reference", id: greetingId }] : []),
          { type: "message", role: "user", content: [{ type: "input_text", text: "summary?" }] }] } });
ev = await until("response.done");
finished(ev);
assert.equal(ev.at(-1).response.metadata.purpose, "summary");
assert.equal(of(ev, "conversation.item.added").length, 0);
if (scripted) assert.equal(text(ev), "Summary: nothing yet");

// session.update with an OpenAI voice name and a client tool; text replies for now
rt.send({ type: "session.update", session: { type: "realtime", output_modalities: ["text"],
  audio: { output: { voice: "alloy" } },
  tools: [{ type: "function", name: "get_location", description: "Where the user is",
            parameters: { type: "object", properties: {} } }] } });
ev = await until("session.updated");
assert.equal(ev.at(-1).session.audio.output.voice, "alloy");

// history seeding: system and assistant items, then a user text turn
for (const [role, kind, t] of [["system", "input_text", "The user is Ada."], ["assistant", "output_text", "Hi Ada."],
                               ["user", "input_text", "Hello!"]]) {
  rt.send({ type: "conversation.item.create", item: { type: "message", role, content: [{ type: kind, text: t }] } });
  await until("conversation.item.done");
}
rt.send({ type: "response.create" });
ev = await until("response.done");
finished(ev);
if (scripted) assert.equal(text(ev), "Nice to meet you");

// a naive client: answer every function_call, while a server tool (mcp_call) also runs
rt.send({ type: "conversation.item.create", item: { type: "message", role: "user",
  content: [{ type: "input_text", text: "where and weather?" }] } });
rt.send({ type: "response.create" });
let rounds = 0;
for (;;) {
  ev = await until("response.done");
  const done = ev.at(-1).response;
  finished(ev);
  const calls = done.output.filter((o) => o.type === "function_call");
  if (!calls.length) break;
  rounds += 1;
  for (const c of calls) {
    rt.send({ type: "conversation.item.create", item: { type: "function_call_output", call_id: c.call_id, output: "Paris" } });
  }
  rt.send({ type: "response.create" });
}
if (scripted) {
  assert.equal(rounds, 1);
  assert.equal(text(ev), "You are in Paris and it is sunny");
  assert.ok(all.some((e) => e.type === "response.mcp_call.completed"));
}

// truncate a spoken reply after 400 ms (the random model: at 0 ms, if it spoke at all)
rt.send({ type: "response.create", response: { output_modalities: ["audio"] } });
ev = await until("response.done");
finished(ev);
const spoken = of(ev, "response.output_item.done").at(-1)?.item;
if (spoken && spoken.type === "message" && spoken.content.length) {
  const ms = scripted ? 400 : 0;
  rt.send({ type: "conversation.item.truncate", item_id: spoken.id, content_index: 0, audio_end_ms: ms });
  ev = await until("conversation.item.truncated");
  assert.equal(ev.at(-1).audio_end_ms, ms);
}

// cancel
rt.send({ type: "response.create", response: { max_output_tokens: 2000 } });
await until(scripted ? "response.output_text.delta" : "response.created");
rt.send({ type: "response.cancel" });
ev = await until("response.done");
assert.equal(ev.at(-1).response.status, "cancelled");

// audio with the default server VAD (no turn_detection was ever sent): speech, then silence
const speech = readFileSync(speechPath);
const silence = Buffer.alloc(24000 * 2);
async function stream(buf) {
  for (let i = 0; i < buf.length; i += 4800) {
    rt.send({ type: "input_audio_buffer.append", audio: buf.subarray(i, i + 4800).toString("base64") });
    await new Promise((r) => setImmediate(r));
  }
}
rt.send({ type: "session.update", session: { type: "realtime", output_modalities: ["audio"] } });
await until("session.updated");
await stream(Buffer.concat([silence.subarray(0, 24000), speech, silence]));
ev = await until("response.done");
assert.ok(of(ev, "input_audio_buffer.speech_started").length === 1);
finished(ev);

// input transcription on; barge-in over a long spoken reply: no audio after speech_started
rt.send({ type: "session.update", session: { type: "realtime", audio: { input: { transcription: { model: "whisper-1" } } } } });
await until("session.updated");
if (scripted) {
  await stream(Buffer.concat([speech, silence]));
  await until("response.output_audio.delta");
} else {  // a long reply the speech will interrupt
  rt.send({ type: "response.create", response: { max_output_tokens: 2000 } });
  await until("response.created");
}
await stream(Buffer.concat([speech, silence]));
ev = await until("response.done");
const started = ev.findIndex((e) => e.type === "input_audio_buffer.speech_started");
assert.ok(started >= 0);
assert.equal(of(ev.slice(started), "response.output_audio.delta").length, 0);
assert.equal(ev.at(-1).response.status, "cancelled");
ev = await until("response.done");
finished(ev);
const wanted = scripted ? 2 : 1;
while (of(all, "conversation.item.input_audio_transcription.completed").length < wanted) {
  await until("conversation.item.input_audio_transcription.completed", { timeoutMs: 120000 });
}
if (scripted) assert.equal(of(all, "conversation.item.input_audio_transcription.completed")[0].transcript, "tell me a story");

rt.close();
writeFileSync(outPath, JSON.stringify(all));
console.log(`ok ${all.length} events`);
