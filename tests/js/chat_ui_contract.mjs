// Drives graphtune's served controller over the wire the way Agent Chat UI does, with LangChain's
// JavaScript SDK: the key in X-Api-Key, runs streamed, the approval read as a HITL card, answers sent
// as the card sends them (edited fields are strings), "Mark as Resolved" as command.goto "__end__".
// Run by tests/test_server_js_sdk.py; settings come from the environment; prints one JSON line.
import assert from "node:assert/strict";
import { Client } from "@langchain/langgraph-sdk";

const apiUrl = process.env.GT_URL;
const apiKey = process.env.GT_API_KEY;
const context = JSON.parse(process.env.GT_CONTEXT);
const request = process.env.GT_REQUEST;
const client = new Client({ apiUrl, apiKey });

async function run(threadId, payload) {
  // useStream's submit: a streamed run; the last "values" event is the thread's state
  let values = null;
  for await (const chunk of client.runs.stream(threadId, "controller", {
    ...payload, context, streamMode: ["values", "messages-tuple"],
  })) {
    if (chunk.event === "values") values = chunk.data;
    if (chunk.event === "error") throw new Error(`run failed: ${JSON.stringify(chunk.data)}`);
  }
  const state = await client.threads.getState(threadId);
  const card = state.tasks.flatMap((t) => t.interrupts ?? [])[0]?.value ?? null;
  return { values, card };
}

const say = (text) => ({ input: { messages: [{ type: "human", content: text }] } });
const lastMessage = (values, name) => values.messages.filter((m) => m.name === name).at(-1)?.content ?? "";
const answer = (decision) => ({ command: { resume: { decisions: [decision] } } });

// 1. a wrong key is refused; the right one, in X-Api-Key, is accepted
const stranger = new Client({ apiUrl, apiKey: "not-a-known-token-at-all" });
const refused = await stranger.threads.create().then(() => null, (error) => String(error));
assert.match(refused ?? "accepted", /401|invalid X-Api-Key/);

// 2. a chat request runs to the approval card
const first = (await client.threads.create()).thread_id;
let { values, card } = await run(first, say(request));
assert.ok(card, `no approval card; last message: ${values.messages.at(-1)?.content}`);
let [action] = card.action_requests;
assert.equal(card.review_configs[0].action_name, action.name);
assert.match(action.name, /^Promote \w+ as the new config of toy/);
assert.deepEqual(Object.keys(action.args), ["mutations"]);
assert.equal(typeof action.args.mutations, "string");

// 3. ended from the card ("Mark as Resolved"): a rejection that frees the workflow, and says so
({ values, card } = await run(first, { command: { goto: "__end__" } }));
assert.equal(card, null, "the thread must not wait any more");
assert.equal(values.outcome.status, "rejected");
assert.match(lastMessage(values, "promote"), /toy is free for the next tuning request/);

// 4. so the next request for the workflow is not turned away
const second = (await client.threads.create()).thread_id;
({ values, card } = await run(second, say(request)));
assert.notEqual(values.outcome?.status, "busy", lastMessage(values, "observe"));
assert.ok(card, "the next request must reach approval");
[action] = card.action_requests;

// 5. a broken edit is refused in the chat, and the card stays
({ values, card } = await run(second, answer({ type: "edit", edited_action: { name: action.name, args: { mutations: "[{oops" } } })));
assert.ok(card, "a refused edit must keep the thread at approval");
assert.match(lastMessage(values, "approve"), /refused.*mutations: cannot read the text/s);

// 6. an edit whose mutations are a JSON string, as the card's text box sends it, is evaluated and comes back
const edited = JSON.stringify([{ path: "answer.quality", value: "good" }, { path: "answer.delay_s", value: 0.002 }]);
({ values, card } = await run(second, answer({ type: "edit", edited_action: { name: action.name, args: { mutations: edited } } })));
assert.ok(card, `the edited candidate must come back for approval; got ${JSON.stringify(values.outcome)}`);
assert.match(card.action_requests[0].args.mutations, /answer\.delay_s: 0\.002/);

// 7. approve promotes
({ values, card } = await run(second, answer({ type: "approve" })));
assert.equal(card, null);
assert.equal(values.outcome.status, "promoted");

console.log(JSON.stringify({ resolved: first, promoted: second, refused }));
