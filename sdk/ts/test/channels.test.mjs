// Channels against a real junction binary: subscribe, publish, presence,
// snapshots, and resume from the last position after every reconnect.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';
import { startProxy, startServer, waitFor } from './harness.mjs';

const quiet = { warn() {}, debug() {} };

test('subscribe, publish, presence and history', async (t) => {
  const srv = await startServer(t);
  const a = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'a1'), WebSocket });
  const b = new Client({ url: srv.wsUrl, token: await srv.token('bob', 'b1'), WebSocket });
  await a.connect();
  await b.connect();
  t.after(() => Promise.all([a.close(), b.close()]));

  const got = [];
  const joins = [];
  a.on('channel.join', (d, f) => joins.push([f.topic, d.userId]));
  const subs = [];
  const sub = await a.subscribe('room:1', (p) => got.push(p), { onSubscribed: (s) => subs.push(s) });
  assert.equal(subs.length, 1);
  assert.equal(subs[0].resubscribed, false);
  await b.subscribe('room:1', () => {});
  await waitFor(() => joins.length === 1, 'bob\'s join');
  assert.deepEqual(joins[0], ['room:1', 'bob']);

  const pos = await b.publish('room:1', { text: 'hi' });
  assert.equal(pos.offset, 1);
  await waitFor(() => got.length === 1, 'the publication');
  assert.deepEqual(got[0], { topic: 'room:1', epoch: pos.epoch, offset: 1, data: { text: 'hi' } });
  assert.deepEqual(sub.position, { epoch: pos.epoch, offset: 1 });

  // idem: a repeat answers the first position and publishes nothing.
  const p2 = await b.publish('room:1', { text: 'once' }, { idem: 'k-1' });
  const p3 = await b.publish('room:1', { text: 'once' }, { idem: 'k-1' });
  assert.deepEqual(p3, p2);
  await waitFor(() => got.length === 2, 'the idempotent publication');

  const pres = await a.presence('room:1');
  assert.deepEqual(Object.values(pres.clients).map((c) => c.userId).sort(), ['alice', 'bob']);
  const hist = await a.history('room:1', { limit: 10 });
  assert.deepEqual(hist.publications.map((p) => p.data.text), ['hi', 'once']);

  await sub.unsubscribe();
  await b.publish('room:1', { text: 'after' });
  // a receives nothing more: its next own publication on another topic is the marker.
  const marks = [];
  await a.subscribe('room:2', (p) => marks.push(p));
  await a.publish('room:2', 'mark');
  await waitFor(() => marks.length === 1, 'the marker');
  assert.equal(got.length, 2);
});

test('a snapshot comes with the subscription (retained provider)', async (t) => {
  const srv = await startServer(t);
  const a = new Client({ url: srv.wsUrl, token: await srv.token('alice', 'a1'), WebSocket });
  await a.connect();
  t.after(() => a.close());
  await a.publish('last:temp', { c: 21 });
  await a.publish('last:temp', { c: 22 });
  const subs = [];
  await a.subscribe('last:temp', () => {}, { onSubscribed: (s) => subs.push(s) });
  assert.equal(subs[0].offset, 2);
  assert.deepEqual(subs[0].snapshot.data, { c: 22 });
});

test('resume after a forced disconnect: no publication lost or repeated, after every reconnect', async (t) => {
  const srv = await startServer(t);
  const proxy = await startProxy(t, srv.url);
  const pub = new Client({ url: srv.wsUrl, token: await srv.token('bob', 'b1'), WebSocket });
  await pub.connect();
  const sub = new Client({ url: proxy.wsUrl, token: await srv.token('alice', 'a1'), WebSocket, minBackoffMs: 20, maxBackoffMs: 200, logger: quiet });
  const got = [];
  const subscribed = [];
  const reconnects = [];
  sub.onConnect((re) => re && reconnects.push(Date.now()));
  await sub.connect();
  t.after(() => Promise.all([pub.close(), sub.close()]));
  await sub.subscribe('room:resume', (p) => got.push(p.data), { onSubscribed: (s) => subscribed.push(s) });

  let n = 0;
  const publish = async (k) => {
    for (let i = 0; i < k; i++) await pub.publish('room:resume', ++n);
  };
  for (let round = 1; round <= 3; round++) {
    await publish(5);
    await waitFor(() => got.length === n, `round ${round}: the live publications`);
    proxy.refuse(true); // the reconnects fail until the publications below are made
    proxy.cut(); // a network failure: no close frame
    await waitFor(() => sub.state !== 'connected', `round ${round}: the disconnect`);
    assert.equal(sub.closeCode, 0);
    await publish(7); // published while the subscriber is away
    proxy.refuse(false);
    await waitFor(() => subscribed.length === round + 1, `round ${round}: the resubscription`);
    const s = subscribed[round];
    assert.equal(s.resubscribed, true);
    assert.equal(s.recovered, true, 'the gap is within history');
    await publish(3);
    await waitFor(() => got.length === n, `round ${round}: every publication`);
  }
  assert.equal(reconnects.length, 3);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i + 1), 'each publication exactly once, in order');
});

test('a gap outside history: recovered false, with the current position', async (t) => {
  const srv = await startServer(t, `
hub:
  namespaces:
    - pattern: "short:{name}"
      subscribe: ["any"]
      publish: ["scope=write"]
      history_size: 2
      snapshot: retained
`);
  const proxy = await startProxy(t, srv.url);
  const pub = new Client({ url: srv.wsUrl, token: await srv.token('bob', 'b1'), WebSocket });
  await pub.connect();
  const sub = new Client({ url: proxy.wsUrl, token: await srv.token('alice', 'a1'), WebSocket, minBackoffMs: 20, maxBackoffMs: 200, logger: quiet });
  await sub.connect();
  t.after(() => Promise.all([pub.close(), sub.close()]));
  const got = [];
  const subscribed = [];
  await sub.subscribe('short:x', (p) => got.push(p.data), { onSubscribed: (s) => subscribed.push(s) });
  await pub.publish('short:x', 1);
  await waitFor(() => got.length === 1, 'the first publication');
  proxy.refuse(true);
  proxy.cut();
  await waitFor(() => sub.state !== 'connected', 'the disconnect');
  for (let i = 2; i <= 6; i++) await pub.publish('short:x', i); // more than history holds
  proxy.refuse(false);
  await waitFor(() => subscribed.length === 2, 'the resubscription');
  assert.equal(subscribed[1].recovered, false);
  assert.equal(subscribed[1].offset, 6);
  assert.deepEqual(subscribed[1].snapshot.data, 6, 'the fresh snapshot');
  await pub.publish('short:x', 7);
  await waitFor(() => got.length === 2, 'the next live publication');
  assert.deepEqual(got, [1, 7]);
});
