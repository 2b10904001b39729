// A Sparkplug B edge node built on Eclipse Tahu's own client (npm `sparkplug-client`), for the
// end-to-end tests of ingest's Sparkplug input: an implementation scrap-pulse shares no code
// with. The client does what a real node does by itself (the NDEATH will, bdSeq, sequence
// numbers, the NCMD subscription); this script only tells it what to publish, when.
//
// Usage: node edge.js --broker mqtt://127.0.0.1:1883 --group G --node N --device D1=1,2
//        [--device D2=1] ...
// (or EDGE_BROKER, EDGE_GROUP, EDGE_NODE and EDGE_DEVICES="D1=1,2;D2=1"). Each device has the
// Double metrics `scrap/{index}` for the indices listed. Aliases are numbered from 1 in the
// order the devices and their indices are given (D1=1,2;D2=1: D1 scrap/1 = 1, D1 scrap/2 = 2,
// D2 scrap/1 = 3), as Sparkplug wants them unique across the node.
//
// stdin, one JSON object per line:
//   {"birth": true}       NBIRTH, then a DBIRTH per device
//   {"data": {"device": "D1", "metrics": [{"alias": 1, "value": 2.5}]}}
//                         a DDATA by alias, the payload and metric timestamps now
//   {"skip_seq": true}    the client draws one sequence number and drops it, so its next
//                         message leaves a gap, as after a message lost on the way
//   {"kill": true}        the TCP connection dropped without DISCONNECT: the broker sends the
//                         NDEATH will, as when a node loses power
//   {"connect": true}     a new connection after a kill (no births until asked)
//   {"stop": true}        NDEATH, DISCONNECT, exit 0 (also on the end of stdin)
// stdout, one JSON object per line: {"event": "connected"} once the node's NCMD subscription
// is acknowledged, {"event": "published", "type": "DDATA", "seq": 5, ...} for every message
// handed to the connection, {"event": "rebirth_requested"} for an NCMD asking for a rebirth
// (answered with NBIRTH and DBIRTHs at once, as a real node does), {"event": "killed"},
// {"event": "closed"}, {"event": "error", "message": ...}.
'use strict';

const readline = require('readline');
const sparkplugClient = require('sparkplug-client');

const REBIRTH = 'Node Control/Rebirth';

/** Prints one event line. */
function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

/** Settings from flags, else from the environment. */
function settings(argv, env) {
  const flags = { device: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (argv[i + 1] === undefined) throw new Error(`flag ${argv[i]} has no value`);
    if (name === 'device') flags.device.push(argv[i + 1]);
    else flags[name] = argv[i + 1];
  }
  if (flags.device.length === 0 && env.EDGE_DEVICES) flags.device = env.EDGE_DEVICES.split(';');
  const found = {
    broker: flags.broker || env.EDGE_BROKER,
    group: flags.group || env.EDGE_GROUP,
    node: flags.node || env.EDGE_NODE,
    devices: devices(flags.device),
  };
  for (const [name, value] of Object.entries(found)) {
    if (!value) throw new Error(`--${name} is required`);
  }
  return found;
}

/** `["D1=1,2", "D2=1"]` as devices with their metrics and node-wide aliases. */
function devices(specs) {
  let alias = 0;
  return specs.map((spec) => {
    const [id, indices] = spec.split('=');
    if (!id || !indices) throw new Error(`--device ${spec}: expected ID=INDEX[,INDEX...]`);
    const metrics = indices.split(',').map((index) => ({ name: `scrap/${index}`, alias: ++alias }));
    return { id, metrics };
  });
}

/** The edge node: one Tahu client at a time, replaced after a kill. */
class Edge {
  constructor(config) {
    this.config = config;
    this.client = null;
  }

  /** Connects a new Tahu client; `connected` is printed once it can hear commands. */
  connect() {
    const { broker, group, node } = this.config;
    const client = sparkplugClient.newClient({
      serverUrl: broker,
      groupId: group,
      edgeNode: node,
      clientId: `tahu-edge-${group}-${node}-${process.pid}`,
      // Required by the client; null logs in anonymously.
      username: null,
      password: null,
      // A clean stop says goodbye with an NDEATH of its own, not only the will.
      publishDeath: true,
    });
    this.client = client;
    client.on('birth', () => this.subscribed(client));
    client.on('ncmd', (payload) => this.command(client, payload));
    client.on('close', () => emit('closed'));
    client.on('error', (error) => emit('error', { message: String(error) }));
  }

  /**
   * Tahu subscribes to NCMD on connect without waiting for the broker; subscribing again with
   * a callback tells when a rebirth request can no longer be missed.
   */
  subscribed(client) {
    const { group, node } = this.config;
    const topic = `spBv1.0/${group}/NCMD/${node}/#`;
    client.client.subscribe(topic, { qos: 0 }, (error) => {
      if (error) emit('error', { message: `subscribing ${topic}: ${error}` });
      else emit('connected');
    });
  }

  /** An NCMD: a rebirth request is answered at once with births. */
  command(client, payload) {
    const metrics = payload.metrics || [];
    if (metrics.some((m) => m.name === REBIRTH && m.value === true)) {
      emit('rebirth_requested');
      if (client === this.client) this.birth();
    } else {
      emit('ncmd', { metrics: metrics.map((m) => ({ name: m.name, value: m.value })) });
    }
  }

  /** NBIRTH (Tahu adds bdSeq and restarts seq at 0), then a DBIRTH per device. */
  birth() {
    const now = Date.now();
    const nbirth = {
      timestamp: now,
      metrics: [{ name: REBIRTH, type: 'Boolean', value: false, timestamp: now }],
    };
    this.client.publishNodeBirth(nbirth);
    published('NBIRTH', null, nbirth);
    for (const device of this.config.devices) {
      const dbirth = {
        timestamp: now,
        metrics: device.metrics.map((m) => ({ ...m, type: 'Double', value: 0, timestamp: now })),
      };
      this.client.publishDeviceBirth(device.id, dbirth);
      published('DBIRTH', device.id, dbirth);
    }
  }

  /** A DDATA of `metrics` (`{alias, value}`) for `device`, by alias only. */
  data({ device, metrics }) {
    const now = Date.now();
    const payload = {
      timestamp: now,
      metrics: metrics.map(({ alias, value }) => ({ alias, type: 'Double', value, timestamp: now })),
    };
    this.client.publishDeviceData(device, payload);
    published('DDATA', device, payload);
  }

  /** Draws a sequence number through the client's own counter and never sends it. */
  skipSeq() {
    const skipped = this.client.incrementSeqNum();
    emit('seq_skipped', { seq: skipped });
  }

  /** Destroys the socket without DISCONNECT (mqtt.js `end(true)`), so the will goes out. */
  kill() {
    const mqtt = this.client.client;
    mqtt.stream.once('close', () => emit('killed'));
    mqtt.end(true);
  }

  /** NDEATH, DISCONNECT, then exit. */
  stop() {
    if (this.client.client.disconnecting) process.exit(0);
    this.client.stop();
    this.client.client.once('end', () => process.exit(0));
  }
}

/** Prints what was handed to the connection, with the seq Tahu gave it. */
function published(type, device, payload) {
  const metrics = payload.metrics.map(({ name, alias, value }) => ({ name, alias, value }));
  emit('published', { type, device, seq: payload.seq, metrics });
}

/** Runs one command line. */
function run(edge, line) {
  if (line.trim() === '') return;
  const command = JSON.parse(line);
  if (command.birth) edge.birth();
  else if (command.data) edge.data(command.data);
  else if (command.skip_seq) edge.skipSeq();
  else if (command.kill) edge.kill();
  else if (command.connect) edge.connect();
  else if (command.stop) edge.stop();
  else throw new Error(`unknown command ${line}`);
}

function main() {
  let edge;
  try {
    edge = new Edge(settings(process.argv.slice(2), process.env));
  } catch (error) {
    process.stderr.write(`edge.js: ${error.message}\n`);
    process.exit(2);
  }
  edge.connect();
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    try {
      run(edge, line);
    } catch (error) {
      emit('error', { message: `${error.message} (command ${line})` });
    }
  });
  lines.on('close', () => edge.stop());
}

main();
