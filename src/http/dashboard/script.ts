/**
 * The dashboard's script, sent as it is written here (plain JavaScript in a string: no build step,
 * no library). Two views by the URL's hash: `#/` the runs, live; `#/runs/ID` one run, live, with
 * its graph, steps, event log, a form per open wait and its controls. Every value from the API is
 * put into the page as text, never as HTML.
 */

export const PAGE_SCRIPT = String.raw`
const main = document.getElementById('main');
const connection = document.getElementById('connection');
const COLORS = { completed: '#1f9d55', running: '#2b6cb0', waiting: '#b7791f', failed: '#c53030', cancelled: '#718096', pending: '#a0aec0', skipped: '#805ad5' };
let stop = () => {};

/** An element: h('td', { class: 'x', onclick: fn }, 'text', child...). Strings are text, never HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child !== undefined && child !== null && child !== false) el.append(child instanceof Node ? child : String(child));
  return el;
}
function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children.flat()) if (child !== undefined && child !== null) el.append(child instanceof Node ? child : String(child));
  return el;
}
const api = (path) => new URL('api/' + path, document.baseURI).href;
async function call(method, path, body) {
  const response = await fetch(api(path), { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text === '' ? undefined : JSON.parse(text);
  if (!response.ok) throw new Error(data && data.error ? data.error.message : response.statusText);
  return data;
}
const badge = (status) => h('span', { class: 'status ' + status, 'data-status': status }, status);
const time = (ms) => (ms === undefined ? '' : new Date(ms).toLocaleTimeString());
const duration = (ms) => (ms === undefined ? '' : ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s');
function bar(progress) {
  const total = Math.max(progress.total, 1);
  return h('progress', { max: total, value: progress.done, 'aria-valuenow': progress.done, 'aria-valuemax': progress.total, title: progress.done + ' of ' + progress.total + ' steps' });
}

// ---- the runs ------------------------------------------------------------------------------

async function showRuns() {
  const state = { status: '', flow: '', pages: [undefined], rows: new Map() };
  const body = h('tbody');
  const statusSelect = h('select', { onchange: () => { state.status = statusSelect.value; state.pages = [undefined]; load(); } },
    ['', 'running', 'waiting', 'completed', 'failed', 'cancelled'].map((s) => h('option', { value: s }, s === '' ? 'any status' : s)));
  const flowSelect = h('select', { onchange: () => { state.flow = flowSelect.value; state.pages = [undefined]; load(); } }, h('option', { value: '' }, 'any flow'));
  const older = h('button', { onclick: () => { state.pages.push(state.next); load(); } }, 'Older');
  const newer = h('button', { onclick: () => { state.pages.pop(); load(); } }, 'Newer');
  main.replaceChildren(h('h1', {}, 'Runs'), h('div', { class: 'filters' }, statusSelect, flowSelect, newer, older),
    h('div', { class: 'card' }, h('table', { id: 'runs' }, h('thead', {}, h('tr', {}, ['Run', 'Flow', 'Status', 'Progress', 'Now', 'Started'].map((t) => h('th', {}, t)))), body)));
  call('GET', 'flows').then(({ flows }) => flowSelect.append(...flows.map((f) => h('option', { value: f.name }, f.name)))).catch(() => {});

  function row(run) {
    const now = run.current ? run.current.step + (run.current.progress && run.current.progress.message ? ': ' + run.current.progress.message : '') : (run.running || []).join(', ');
    return h('tr', { 'data-run': run.runId },
      h('td', {}, h('a', { href: '#/runs/' + encodeURIComponent(run.runId) }, run.runId)),
      h('td', {}, run.flow), h('td', {}, badge(run.status)), h('td', {}, run.progress ? [bar(run.progress), ' ', h('span', { class: 'muted' }, run.progress.done + '/' + run.progress.total)] : ''),
      h('td', { class: 'now' }, now), h('td', { class: 'muted' }, time(run.createdAt)));
  }
  async function load() {
    const query = new URLSearchParams({ limit: '25' });
    if (state.status) query.set('status', state.status);
    if (state.flow) query.set('flow', state.flow);
    const before = state.pages[state.pages.length - 1];
    if (before) query.set('before', before);
    const page = await call('GET', 'runs?' + query);
    state.next = page.next;
    older.disabled = !page.next;
    newer.disabled = state.pages.length === 1;
    state.rows = new Map(page.runs.map((run) => [run.runId, row(run)]));
    body.replaceChildren(...state.rows.values());
  }
  await load();
  const source = new EventSource(api('events'));
  source.onopen = () => (connection.textContent = 'live');
  source.onerror = () => (connection.textContent = 'reconnecting');
  source.addEventListener('summary', (message) => {
    const run = JSON.parse(message.data);
    if ((state.status && run.status !== state.status) || (state.flow && run.flow !== state.flow)) return;
    const fresh = row(run);
    const old = state.rows.get(run.runId);
    if (old) old.replaceWith(fresh);
    else if (state.pages.length === 1) body.prepend(fresh);
    else return;
    state.rows.set(run.runId, fresh);
  });
  return () => source.close();
}

// ---- one run -----------------------------------------------------------------------------------

/** Lays the flow's tree out in layers (by containment and dependencies) and draws it, steps coloured by status. */
function drawGraph(graph, steps) {
  const layer = new Map();
  const parentOf = new Map(graph.nodes.map((n) => [n.name, n.parent]));
  const depth = (name, seen = new Set()) => {
    if (layer.has(name)) return layer.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    let d = parentOf.get(name) ? depth(parentOf.get(name), seen) + 1 : 0;
    for (const e of graph.edges) if (e.to === name) d = Math.max(d, depth(e.from, seen) + 1);
    layer.set(name, d);
    return d;
  };
  graph.nodes.forEach((n) => depth(n.name));
  const rows = new Map();
  for (const n of graph.nodes) { const d = layer.get(n.name); if (!rows.has(d)) rows.set(d, []); rows.get(d).push(n); }
  const W = 150, H = 34, GX = 30, GY = 40, pos = new Map();
  let width = 0;
  for (const [d, nodes] of rows) nodes.forEach((n, i) => { pos.set(n.name, { x: 10 + i * (W + GX), y: 10 + d * (H + GY) }); width = Math.max(width, 10 + (i + 1) * (W + GX)); });
  const height = 10 + rows.size * (H + GY);
  const el = svg('svg', { class: 'graph', viewBox: '0 0 ' + width + ' ' + height, height });
  el.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#667085' }))));
  const line = (a, b, attrs) => svg('line', { x1: a.x + W / 2, y1: a.y + H, x2: b.x + W / 2, y2: b.y, stroke: '#667085', ...attrs });
  for (const n of graph.nodes) if (n.parent && pos.has(n.parent)) el.append(line(pos.get(n.parent), pos.get(n.name), { 'stroke-dasharray': '2 3', opacity: 0.5 }));
  for (const e of graph.edges) el.append(line(pos.get(e.from), pos.get(e.to), { 'marker-end': 'url(#arrow)', ...(e.required ? {} : { 'stroke-dasharray': '6 4' }) }));
  for (const n of graph.nodes) {
    const p = pos.get(n.name);
    const status = n.name === graph.root ? steps.__run : (steps[n.name] && steps[n.name].status) || 'pending';
    const composite = n.type === 'parallel' || n.type === 'sequential';
    el.append(svg('g', { 'data-step': n.name, 'data-status': status },
      svg('rect', { x: p.x, y: p.y, width: W, height: H, fill: composite ? '#fff' : COLORS[status] || COLORS.pending, stroke: COLORS[status] || COLORS.pending, 'stroke-dasharray': composite ? '4 3' : '' }),
      svg('text', { x: p.x + W / 2, y: p.y + H / 2 + 4, 'text-anchor': 'middle', fill: composite ? '#1d232b' : '#fff' }, n.name + (composite ? ' (' + n.type + ')' : ''))));
  }
  return el;
}

/** A form for one open wait, from the JSON Schema of what must be submitted. */
function answerForm(runId, wait, onSent) {
  const schema = wait.schema || {};
  const message = h('div', { class: 'error', role: 'alert' });
  const fields = [];
  const input = (name, prop) => {
    const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== 'null') : prop.type;
    if (prop.enum) return { el: h('select', { name }, prop.enum.map((v) => h('option', { value: JSON.stringify(v) }, String(v)))), read: (el) => JSON.parse(el.value) };
    if (type === 'boolean') return { el: h('input', { type: 'checkbox', name }), read: (el) => el.checked };
    if (type === 'number' || type === 'integer') return { el: h('input', { type: 'number', name, step: type === 'integer' ? 1 : 'any' }), read: (el) => (el.value === '' ? undefined : Number(el.value)) };
    if (type === 'string') return { el: h('input', { type: 'text', name }), read: (el) => el.value };
    return { el: h('textarea', { name, rows: 3, cols: 40 }), read: (el) => JSON.parse(el.value || 'null') };
  };
  let read;
  if (schema.type === 'object' && schema.properties) {
    for (const [name, prop] of Object.entries(schema.properties)) { const f = input(name, prop); fields.push(h('label', {}, name, f.el)); f.name = name; fields.push(f); }
    read = () => { const value = {}; for (const f of fields) if (f.read) { const v = f.read(f.el); if (v !== undefined) value[f.name] = v; } return value; };
  } else {
    const f = input('value', schema);
    fields.push(h('label', {}, 'value', f.el));
    read = () => f.read(f.el);
  }
  const form = h('form', { class: 'answer', 'data-key': wait.key, onsubmit: async (event) => {
    event.preventDefault();
    message.textContent = '';
    try {
      await call('POST', 'runs/' + encodeURIComponent(runId) + '/input', { key: wait.key, value: read() });
      message.className = 'ok';
      message.textContent = 'sent';
      onSent();
    } catch (error) {
      message.className = 'error';
      message.textContent = error.message;
    }
  } }, h('div', {}, h('strong', {}, wait.step), ' asks for ', h('code', {}, wait.key), wait.deadline ? h('span', { class: 'muted' }, ' (until ' + time(wait.deadline) + ')') : ''),
    fields.filter((f) => f instanceof Node), h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Answer')), message);
  return form;
}

async function showRun(runId) {
  const title = h('h1', {}, 'Run ', h('code', {}, runId));
  const head = h('div', { class: 'card' });
  const graphCard = h('div', { class: 'card' });
  const waits = h('div');
  const stepsBody = h('tbody');
  const log = h('div', { class: 'log', id: 'log' });
  const notice = h('div', { class: 'error', role: 'alert' });
  main.replaceChildren(h('a', { href: '#/' }, '← runs'), title, head, notice, waits, graphCard,
    h('div', { class: 'card' }, h('h2', {}, 'Steps'), h('table', {}, h('thead', {}, h('tr', {}, ['Step', 'Status', 'Attempts', 'Started', 'Took', 'Error', ''].map((t) => h('th', {}, t)))), stepsBody)),
    h('div', { class: 'card' }, h('h2', {}, 'Events'), log));
  let graph;
  let refreshing;
  const control = (label, path, body, danger) => h('button', { class: danger ? 'danger' : '', 'data-action': path, onclick: async () => {
    if (!confirm(label + ' run ' + runId + '?')) return;
    notice.textContent = '';
    try { await call('POST', 'runs/' + encodeURIComponent(runId) + '/' + path, body); refresh(); follow(); } catch (error) { notice.textContent = error.message; }
  } }, label);
  let again = false;
  async function refresh() {
    // One read at a time; one asked for meanwhile comes after it, so the page never stays behind the last event.
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        const run = await call('GET', 'runs/' + encodeURIComponent(runId));
        graph = graph || (await call('GET', 'graph?flow=' + encodeURIComponent(run.flow)).catch(() => undefined));
        head.replaceChildren(h('div', {}, badge(run.status), ' ', h('strong', {}, run.flow), ' ', bar(run.progress), ' ', h('span', { class: 'muted', id: 'progress' }, run.progress.done + ' of ' + run.progress.total + ' steps'),
          run.error ? h('div', { class: 'error' }, (run.error.code || '') + ': ' + run.error.message) : ''),
          h('div', { class: 'actions' }, control('Resume', 'resume', {}), control('Retry', 'retry', undefined), control('Cancel', 'cancel', {}, true)));
        stepsBody.replaceChildren(...Object.values(run.steps).map((s) => h('tr', { 'data-step': s.name },
          h('td', {}, s.name), h('td', {}, badge(s.status), s.progress && s.status === 'running' ? h('span', { class: 'muted' }, ' ' + Math.round(s.progress.fraction * 100) + '% ' + (s.progress.message || '')) : ''),
          h('td', {}, String(s.attempts.length)), h('td', { class: 'muted' }, time(s.startTime)), h('td', {}, s.endTime && s.startTime ? duration(s.endTime - s.startTime) : ''),
          h('td', { class: 'error' }, s.error ? (s.error.code || s.error.name) + ': ' + s.error.message : ''),
          h('td', {}, s.status === 'failed' || s.status === 'waiting' ? control('Skip', 'skip', { step: s.name }) : ''))));
        const steps = Object.fromEntries(Object.entries(run.steps));
        steps.__run = run.status;
        if (graph) graphCard.replaceChildren(h('h2', {}, 'Graph'), drawGraph(graph, steps));
        const open = run.waitingFor || [];
        const shown = [...waits.querySelectorAll('form')].map((f) => f.dataset.key).join(',');
        if (shown !== open.map((w) => w.key).join(',')) waits.replaceChildren(...open.map((w) => h('div', { class: 'card' }, answerForm(runId, w, refresh))));
      } catch (error) {
        notice.textContent = error.message;
      } finally {
        refreshing = undefined;
        if (again) {
          again = false;
          refresh();
        }
      }
    })();
    return refreshing;
  }
  let source;
  let last = 0;
  function follow() {
    if (source) source.close();
    source = new EventSource(api('runs/' + encodeURIComponent(runId) + '/events?after=' + last));
    source.onopen = () => (connection.textContent = 'live');
    source.onerror = () => (connection.textContent = 'reconnecting');
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      last = event.seq;
      const what = [event.step, event.attempt ? '#' + event.attempt : '', event.key ? '"' + event.key + '"' : '', event.progress !== undefined ? Math.round(event.progress * 100) + '%' : '', event.message || '', event.error ? event.error.code || event.error.message : ''].filter(Boolean).join(' ');
      log.append(h('div', { 'data-seq': event.seq }, time(event.time) + '  ' + String(event.seq).padStart(4) + '  ' + event.type + '  ' + what));
      log.scrollTop = log.scrollHeight;
      refresh();
    };
    source.addEventListener('end', () => { source.close(); connection.textContent = 'ended'; refresh(); });
  }
  await refresh();
  follow();
  return () => source && source.close();
}

async function route() {
  stop();
  stop = () => {};
  const match = /^#\/runs\/(.+)$/.exec(location.hash);
  try {
    stop = (await (match ? showRun(decodeURIComponent(match[1])) : showRuns())) || stop;
  } catch (error) {
    main.replaceChildren(h('div', { class: 'error' }, error.message));
  }
}
window.addEventListener('hashchange', route);
route();
`;
