// Reading a payload as JSON exactly as the Rust SDK (serde_json) does, so a
// JavaScript handler accepts and refuses the same payloads as its Rust twin.
//
// `JSON.parse` is more lenient than serde_json in five ways, each refused
// here: bytes that are not UTF-8 (a `TextDecoder` would replace them), a
// leading byte-order mark (a `TextDecoder` would drop it), nesting deeper
// than serde_json's limit of 127 arrays or objects, a `\u` escape that is a
// lone UTF-16 surrogate, and a number too large for a double (`1e400`, which
// `JSON.parse` turns into `Infinity`).

/** Why a payload is not the JSON a handler takes. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
}

/** serde_json's recursion limit: 127 nested arrays/objects parse, 128 do not. */
export const MAX_DEPTH = 127;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** `bytes` as UTF-8 text, or a `DecodeError`. */
export function utf8Text(bytes) {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new DecodeError("not JSON: the payload is not valid UTF-8");
  }
}

/** `bytes` (a `Uint8Array`) parsed as JSON, or a `DecodeError` saying why. */
export function parseJson(bytes) {
  return parseJsonText(utf8Text(bytes));
}

/** `text` parsed as JSON with serde_json's rules, or a `DecodeError`. */
export function parseJsonText(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DecodeError(`not JSON: ${err && err.message ? err.message : err}`);
  }
  const refused = serdeRefuses(text);
  if (refused) throw new DecodeError(`not JSON: ${refused}`);
  return value;
}

const isHex = (c) => /^[0-9a-fA-F]$/.test(c);

/**
 * What serde_json refuses in `text`, which `JSON.parse` accepted (so it is
 * well-formed JSON), or `null`.
 */
export function serdeRefuses(text) {
  let depth = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] !== "\\") {
          i++;
          continue;
        }
        if (text[i + 1] !== "u") {
          i += 2;
          continue;
        }
        const unit = parseInt(text.slice(i + 2, i + 6), 16);
        i += 6;
        if (unit >= 0xdc00 && unit <= 0xdfff) {
          return "lone trailing surrogate in hex escape";
        }
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const next = text.slice(i, i + 6);
          const low =
            next.length === 6 && next[0] === "\\" && next[1] === "u" &&
            [...next.slice(2)].every(isHex) ? parseInt(next.slice(2), 16) : -1;
          if (low < 0xdc00 || low > 0xdfff) {
            return "lone leading surrogate in hex escape";
          }
          i += 6;
        }
      }
      i++;
    } else if (c === "[" || c === "{") {
      depth++;
      if (depth > MAX_DEPTH) return "recursion limit exceeded";
      i++;
    } else if (c === "]" || c === "}") {
      depth--;
      i++;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      let j = i + 1;
      while (j < n && /[0-9eE.+-]/.test(text[j])) j++;
      if (!Number.isFinite(Number(text.slice(i, j)))) return "number out of range";
      i = j;
    } else {
      i++;
    }
  }
  return null;
}
