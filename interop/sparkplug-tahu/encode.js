// Encodes Sparkplug B payloads with Eclipse Tahu's JavaScript library, for tests that check
// scrap-pulse's decoder against an implementation it shares no code with.
//
// stdin: a JSON array of payloads in the library's own form ({timestamp, seq, metrics: [{name,
// alias, timestamp, type, value, isHistorical, isNull}]}); 64-bit numbers may be given as
// decimal strings. stdout: one line of hex per payload, in order.
'use strict';

const Long = require('long');
const sparkplug = require('sparkplug-payload').get('spBv1.0');

const LONG_FIELDS = ['timestamp', 'seq', 'alias'];
const LONG_TYPES = ['Int64', 'UInt64', 'DateTime'];

function longs(object) {
  for (const field of LONG_FIELDS) {
    if (typeof object[field] === 'string') object[field] = Long.fromString(object[field], true);
  }
  return object;
}

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  for (const payload of JSON.parse(input)) {
    longs(payload);
    for (const metric of payload.metrics || []) {
      longs(metric);
      if (LONG_TYPES.includes(metric.type) && typeof metric.value === 'string') {
        metric.value = Long.fromString(metric.value, metric.type !== 'Int64');
      }
    }
    process.stdout.write(Buffer.from(sparkplug.encodePayload(payload)).toString('hex') + '\n');
  }
});
