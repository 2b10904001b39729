// Decodes Sparkplug B payloads with Eclipse Tahu's JavaScript library, for tests that check
// what scrap-pulse's simulator writes against an implementation it shares no code with.
//
// stdin: one payload per line, in hex. stdout: one line of JSON per payload, in the library's
// own form ({timestamp, seq, metrics: [{name, alias, timestamp, type, value, isNull, ...}]});
// 64-bit numbers (Long) are written as decimal strings, so none loses precision. A line that
// does not decode ends the run with an error naming it.
'use strict';

const Long = require('long');
const readline = require('readline');
const sparkplug = require('sparkplug-payload').get('spBv1.0');

function plain(key, value) {
  if (Long.isLong(value)) return value.toString();
  return value;
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
let n = 0;
lines.on('line', (hex) => {
  n += 1;
  if (hex.trim() === '') return;
  let payload;
  try {
    payload = sparkplug.decodePayload(Buffer.from(hex.trim(), 'hex'));
  } catch (e) {
    process.stderr.write(`line ${n}: not a Sparkplug B payload: ${e.message}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify(payload, plain) + '\n');
});
