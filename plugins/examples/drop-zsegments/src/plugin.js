// drop-zsegments: a Wyvern plugin in JavaScript (QuickJS via componentize-qjs), proving the
// contract is language-free. GP and PAS systems add local Z-segments the shared care records
// cannot read; this drops them all except those `keep` names, plus any segment `also_drop` names.
//
//   - wasm:
//       plugin: ../plugins/dist/drop-zsegments.wasm
//       config: { keep: [ZPD], also_drop: [NK1] }
//
// The contract (plugins/wit/plugin.wit) maps to JavaScript as: `configure(json)` returns
// nothing or throws a string (the plugin is refused at load); `process(msg)` returns an array
// of messages or throws { tag: "reject" | "error" | "transient", val: "why" }.
//
// It never decodes the message as text: HL7v2 comes in many charsets, and what it does not
// drop must leave byte for byte as it came.

import host from "wyvern:plugin/host@0.1.0";

let keep = new Set();
let alsoDrop = new Set();

const SEGMENT_ID = /^[A-Z][A-Z0-9]{2}$/;

export function configure(config) {
  const c = config.trim() === "" ? {} : JSON.parse(config);
  for (const key of Object.keys(c)) {
    if (key !== "keep" && key !== "also_drop") {
      throw `unknown config key ${JSON.stringify(key)}: expected keep or also_drop`;
    }
  }
  for (const [name, list, into] of [["keep", c.keep, keep], ["also_drop", c.also_drop, alsoDrop]]) {
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw `${name} must be a list of segment ids such as ["ZPD"]`;
    for (const id of list) {
      if (typeof id !== "string" || !SEGMENT_ID.test(id)) {
        throw `${name}: ${JSON.stringify(id)} is not a segment id such as ZPD`;
      }
      if (id === "MSH") throw `${name}: MSH cannot be dropped`;
      into.add(id);
    }
  }
}

// The body as a string of one char per byte, so string index = byte index. Made by native
// code: QuickJS interprets JS loops at roughly 250 ns a step, so the work stays in built-ins.
function text(bytes) {
  if (bytes.length <= 16384) return String.fromCharCode.apply(null, bytes);
  let s = "";
  for (let i = 0; i < bytes.length; i += 16384) {
    s += String.fromCharCode.apply(null, bytes.slice(i, i + 16384));
  }
  return s;
}

function drops(id) {
  return alsoDrop.has(id) || (id[0] === "Z" && !keep.has(id));
}

export function process(msg) {
  if (msg.contentType !== "hl7v2") return [msg];
  const body = msg.body;
  const s = text(body);
  if (!s.startsWith("MSH")) {
    throw { tag: "reject", val: "not HL7v2: the message does not start with MSH" };
  }
  // Byte ranges of the segments kept, each without its terminator (CR, LF or CRLF).
  const kept = [];
  let dropped = 0;
  let total = 0;
  const end = s.indexOf("\r") >= 0 ? "\r" : "\n";
  let start = 0;
  for (const part of s.split(end)) {
    // After a CRLF the LF leads the next part.
    const lf = part.length > 0 && part[0] === "\n" ? 1 : 0;
    const len = part.length - lf;
    if (len > 0) {
      if (drops(part.slice(lf, lf + 3))) {
        dropped++;
      } else {
        kept.push(start + lf, start + part.length);
        total += len + 1;
      }
    }
    start += part.length + 1;
  }
  if (dropped === 0) return [msg];
  // Copy the kept ranges as they are (native copies), each ended with CR.
  const out = new Uint8Array(total);
  const src = body instanceof Uint8Array ? body : Uint8Array.from(body);
  let at = 0;
  for (let i = 0; i < kept.length; i += 2) {
    out.set(src.subarray(kept[i], kept[i + 1]), at);
    at += kept[i + 1] - kept[i];
    out[at++] = 13;
  }
  host.log("debug", `dropped ${dropped} segment(s)`);
  return [{ contentType: "hl7v2", body: out, metadata: msg.metadata }];
}
