// Channels: the active topics (admin), and one topic at a time: subscribe
// live, publish, history and presence, all through the SDK.
import { clear, errorText, field, h, status, table, time } from '../dom.js';
import { adminError, type Page } from '../page.js';
import type { Subscription } from '../../../sdk/ts/src/index.js';
import type { Rest } from '../../../sdk/ts/src/protocol.js';

const MAX_LOG = 200;

export const channels: Page = {
  path: '/channels',
  title: 'Channels',
  render(main, s, signal) {
    let sub: Subscription | undefined;
    const unsubscribe = async () => {
      const old = sub;
      sub = undefined;
      await old?.unsubscribe().catch(() => {});
    };
    signal.addEventListener('abort', () => void unsubscribe());

    // Active topics (GET /api/v1/admin/channels).
    const active = h('div', { class: 'active' });
    const refresh = async () => {
      clear(active);
      try {
        const r = await s.rest<Rest.AdminChannelList>('GET', '/api/v1/admin/channels?limit=100');
        if (!r.items.length) active.append(h('p', {}, 'No topic has subscribers on this node.'));
        else
          active.append(
            table('Topics with subscribers', ['Topic', 'Node', 'Subscribers', ''], r.items.map((c) => [
              c.topic,
              c.nodeId,
              c.subscribers,
              h('button', { type: 'button', onclick: () => ((topic.value = c.topic), void open()) }, 'Open'),
            ])),
          );
      } catch (e) {
        active.append(h('p', { class: 'status muted' }, adminError(e) ?? errorText(e)));
      }
    };

    const topic = h('input', { id: 'ch-topic', name: 'topic', required: true, placeholder: 'room:lobby', autocomplete: 'off', spellcheck: 'false' });
    const st = status();
    const log = h('ol', { class: 'log', id: 'ch-log', 'aria-live': 'polite', 'aria-label': 'Live publications' });
    const subState = h('p', { class: 'sub-state' }, 'Not subscribed.');
    const data = h('textarea', { id: 'ch-data', rows: 4, spellcheck: 'false' });
    data.value = '{"text": "hello"}';
    const out = h('div', { class: 'out' });

    const open = async () => {
      const t = topic.value.trim();
      if (!t) return st.fail('enter a topic');
      await unsubscribe();
      clear(log);
      st.set(`Subscribing to ${t}…`);
      try {
        sub = await s.client.subscribe(t, (p) => {
          log.prepend(h('li', {}, h('span', { class: 'offset' }, `#${p.offset}`), h('code', {}, JSON.stringify(p.data))));
          while (log.children.length > MAX_LOG) log.lastElementChild?.remove();
        }, {
          onSubscribed: (x) => (subState.textContent = `Subscribed to ${x.topic} at offset ${x.offset}${x.resubscribed ? (x.recovered ? ' (resumed)' : ' (resubscribed, gap)') : ''}.`),
          onUnsubscribed: (reason) => (subState.textContent = `The server ended the subscription: ${reason}.`),
          signal,
        });
        st.ok(`Subscribed to ${t}.`);
      } catch (e) {
        st.fail(e);
      }
    };

    const publish = async () => {
      const t = topic.value.trim();
      let v: unknown;
      try {
        v = JSON.parse(data.value);
      } catch {
        return st.fail('the data is not valid JSON');
      }
      try {
        const r = await s.client.publish(t, v);
        st.ok(`Published to ${t} at offset ${r.offset}.`);
      } catch (e) {
        st.fail(e);
      }
    };

    const history = async () => {
      try {
        const r = await s.client.history(topic.value.trim(), { limit: 100 });
        clear(out);
        out.append(
          table(`History of ${topic.value.trim()} (epoch ${r.epoch}, offset ${r.offset})`, ['Offset', 'Time', 'From', 'Data'], r.publications.map((p) => [
            p.offset,
            time(p.timeMs),
            p.info ? `${p.info.userId ?? ''} ${p.info.deviceId ?? ''}` : '',
            h('code', {}, JSON.stringify(p.data)),
          ])),
        );
        st.ok(`${r.publications.length} publications in history.`);
      } catch (e) {
        st.fail(e);
      }
    };

    const presence = async () => {
      try {
        const r = await s.client.presence(topic.value.trim());
        const rows = Object.values(r.clients).map((c) => [c.userId ?? '', c.deviceId ?? '', c.kind ?? '', c.nodeId ?? '', c.connId]);
        clear(out);
        out.append(table(`Presence in ${topic.value.trim()}`, ['User', 'Device', 'Kind', 'Node', 'Connection'], rows));
        st.ok(`${rows.length} present.`);
      } catch (e) {
        st.fail(e);
      }
    };

    main.append(
      h('section', { 'aria-labelledby': 'ch-active' }, h('h2', { id: 'ch-active' }, 'Active topics'),
        h('button', { type: 'button', onclick: () => void refresh() }, 'Refresh'), active),
      h('section', { 'aria-labelledby': 'ch-one' }, h('h2', { id: 'ch-one' }, 'Topic'),
        h('form', { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), void open()) },
          field('Topic', topic),
          h('button', { type: 'submit' }, 'Subscribe'),
          h('button', { type: 'button', onclick: () => void unsubscribe().then(() => (subState.textContent = 'Not subscribed.')) }, 'Unsubscribe'),
          h('button', { type: 'button', onclick: () => void history() }, 'History'),
          h('button', { type: 'button', onclick: () => void presence() }, 'Presence')),
        st, subState, log,
        h('form', { class: 'stack', onsubmit: (e: Event) => (e.preventDefault(), void publish()) },
          field('Data (JSON)', data), h('button', { type: 'submit' }, 'Publish')),
        out),
    );
    void refresh();
  },
};
