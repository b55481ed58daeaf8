// The one-line audit record of a message, as the Rust `audit` writes it:
// `audit SUBJECT (N bytes)`, followed by ` event_id=ID` when the payload is
// a JSON object with a string `event_id`. "JSON" is what serde_json reads
// (see the SDK's json.js): a payload the Rust audit cannot parse gets no
// event_id here either.

import { parseJson } from "../../js-sdk/src/json.js";

/** The event_id of `payload` (a Uint8Array), or `undefined`. */
export function eventId(payload) {
  let value;
  try {
    value = parseJson(payload);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  if (!Object.hasOwn(value, "event_id")) return undefined;
  return typeof value.event_id === "string" ? value.event_id : undefined;
}

/** The audit line of `msg` (anything with `subject` and `payload`). */
export function describe(msg) {
  const id = eventId(msg.payload);
  const head = `audit ${msg.subject} (${msg.payload.length} bytes)`;
  return id === undefined ? head : `${head} event_id=${id}`;
}
