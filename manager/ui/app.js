// Shoal's live dashboard, served at /ui by every manager. It lists the nodes, services
// and tasks once, then keeps them current from the event stream (/v1/events): every
// event carries the object as it now is, applied by id unless an older version. The
// page never reloads and talks to nothing but this manager's API.
//
// On the TCP listener (HTTPS) every API call needs a token. The page asks for one
// (the read-only token is enough), keeps it in sessionStorage (this tab only) and
// sends it as `Authorization: Bearer`. So the stream is read with fetch(), not
// EventSource, which cannot send headers, and no token ever goes into a URL.

const TOKEN_KEY = 'shoal.token';
const FEED_MAX = 60;
const RETRY_MS = [500, 1000, 2000, 5000];

/** The cluster as last seen: objects by id, and the id of the last event applied. */
const store = { nodes: new Map(), services: new Map(), tasks: new Map(), lastEvent: null };
/** The current connection; aborting it ends its stream. */
let connection = null;
let failures = 0;

const $ = (sel) => document.querySelector(sel);

// ---- The API ---------------------------------------------------------------------

/** A refusal of the credentials (401, 403): ask for a token. */
class Unauthorized extends Error {}

/** A non-2xx answer other than a refusal. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** GETs `path`; throws Unauthorized or ApiError on a refusal or failure. */
async function get(path, signal) {
  const resp = await fetch(path, { headers: authHeaders(), signal, cache: 'no-store' });
  if (resp.ok) return resp;
  let message = `${resp.status} ${resp.statusText}`;
  try {
    message = (await resp.json()).error.message;
  } catch {
    // Not the API's JSON error: keep the status line.
  }
  if (resp.status === 401 || resp.status === 403) throw new Unauthorized(message);
  throw new ApiError(resp.status, message);
}

/** Lists nodes, services and tasks afresh, replacing what the store held. */
async function loadAll(signal) {
  const [nodes, services, tasks] = await Promise.all(
    ['/v1/nodes', '/v1/services', '/v1/tasks'].map((p) => get(p, signal).then((r) => r.json())),
  );
  store.nodes = new Map(nodes.map((o) => [o.id, o]));
  store.services = new Map(services.map((o) => [o.id, o]));
  store.tasks = new Map(tasks.map((o) => [o.id, o]));
  groups = null;
}

/** Parses a text/event-stream body into {event, id, data} messages. */
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const msg = { event: 'message', id: null, data: [] };
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue; // keep-alive comments
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') msg.data.push(text);
        else if (field === 'event') msg.event = text;
        else if (field === 'id') msg.id = text;
      }
      if (msg.data.length) yield { ...msg, data: msg.data.join('\n') };
    }
  }
}

/**
 * Opens the event stream, then (on a fresh start) lists everything, and applies
 * events until the stream ends. The stream is opened first so that no write falls
 * between the lists and the events; an event older than a listed object is ignored.
 * After a break it resumes from the last event, or lists again if that is gone.
 */
async function connect() {
  connection?.abort();
  const ctl = new AbortController();
  connection = ctl;
  const since = store.lastEvent;
  let reason = 'the stream ended';
  setConnection(since == null ? 'loading' : 'reconnecting', '');
  try {
    const stream = await get(since == null ? '/v1/events' : `/v1/events?since=${since}`, ctl.signal);
    if (since == null) await loadAll(ctl.signal);
    showDashboard();
    failures = 0;
    render();
    setConnection('live', 'live');
    for await (const msg of serverSentEvents(stream.body)) {
      if (msg.event === 'error') {
        // Fell behind: the events missed are gone, so list again.
        reason = JSON.parse(msg.data).error.message;
        store.lastEvent = null;
        break;
      }
      apply(JSON.parse(msg.data));
      store.lastEvent = Number(msg.id);
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (e instanceof Unauthorized) {
      askToken(e.message);
      return;
    }
    if (e instanceof ApiError && e.status === 410) store.lastEvent = null;
    reason = e.message;
  }
  if (connection !== ctl) return;
  ctl.abort(); // the stream, if the lists failed after it opened
  const wait = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)];
  note(`disconnected: ${reason}`);
  setConnection('down', `disconnected (${reason}), retrying in ${wait / 1000}s`);
  setTimeout(() => connection === ctl && connect(), wait);
}

/** Applies one event to the store, notes it in the feed, and schedules a render. */
function apply(event) {
  const { kind, object } = event.object;
  const map = { node: store.nodes, service: store.services, task: store.tasks }[kind];
  if (map) {
    const have = map.get(object.id);
    if (event.action === 'delete') {
      if (!have || have.version <= event.index) map.delete(object.id);
    } else if (!have || have.version <= object.version) {
      map.set(object.id, object);
    }
    groups = null;
  }
  note(describe(event));
  scheduleRender();
}

// ---- What the objects mean -------------------------------------------------------

const hostname = (nodeId) => store.nodes.get(nodeId)?.description.hostname ?? nodeId?.slice(0, 12) ?? '';
const serviceName = (id) => store.services.get(id)?.spec.name ?? id.slice(0, 12);
const isLeader = (node) => node.manager_status?.leader === true;
const wantsRunning = (task) => task.desired_state === 'running';
const isRunning = (task) => wantsRunning(task) && task.status.state === 'running';

/** Tasks by service and by node ('-' for none yet), grouped once per change. */
let groups = null;
function grouped() {
  if (!groups) {
    groups = { service: new Map(), node: new Map() };
    const add = (map, key, t) => (map.get(key) ?? map.set(key, []).get(key)).push(t);
    for (const t of store.tasks.values()) {
      add(groups.service, t.service_id, t);
      add(groups.node, t.node_id ?? '-', t);
    }
  }
  return groups;
}
const tasksOf = (serviceId) => grouped().service.get(serviceId) ?? [];
const tasksOn = (nodeId) => grouped().node.get(nodeId) ?? [];

/** A task's name as the CLI shows it: service.slot, or service.node for global ones. */
function taskName(task) {
  const suffix = task.slot != null ? task.slot : hostname(task.node_id);
  return `${serviceName(task.service_id)}.${suffix}`;
}

/** Running and desired task counts; for jobs, completions and the total wanted. */
function counts(service) {
  const tasks = tasksOf(service.id);
  const mode = service.spec.mode;
  if (mode.kind === 'replicated_job' || mode.kind === 'global_job') {
    const iteration = Math.max(0, ...tasks.map((t) => t.job_iteration ?? 0));
    const current = tasks.filter((t) => (t.job_iteration ?? 0) === iteration);
    const done = current.filter((t) => t.status.state === 'complete').length;
    const total = mode.kind === 'replicated_job' ? mode.total_completions ?? mode.max_concurrent : current.length;
    return { running: done, desired: total, label: 'completed' };
  }
  const desired = mode.kind === 'replicated' ? mode.replicas : tasks.filter(wantsRunning).length;
  return { running: tasks.filter(isRunning).length, desired, label: 'running' };
}

/** Whether a task runs what the service's template asks now (placement aside). */
function upToDate(task, template) {
  const same = (k) => JSON.stringify(task.spec[k]) === JSON.stringify(template[k]);
  return ['container', 'resources', 'restart_policy', 'networks', 'force_update'].every(same);
}

const ROLLING = ['updating', 'paused', 'rollback_started', 'rollback_paused'];

/** The rollout's state and, while it runs, how many running tasks are up to date. */
function rollout(service, desired) {
  const status = service.update_status;
  if (!status) return null;
  if (!ROLLING.includes(status.state)) return { state: status.state, message: status.message };
  const updated = tasksOf(service.id).filter((t) => isRunning(t) && upToDate(t, service.spec.task_template));
  return { state: status.state, message: status.message, done: updated.length, of: desired };
}

/** The newest failed task's error, with when it happened. */
function lastError(service) {
  const failed = tasksOf(service.id)
    .filter((t) => ['failed', 'rejected'].includes(t.status.state) || t.status.error)
    .sort((a, b) => b.status.timestamp.localeCompare(a.status.timestamp));
  if (!failed.length) return '';
  const t = failed[0];
  return `${taskName(t)}: ${t.status.error || t.status.message || t.status.state} (${ago(t.status.timestamp)})`;
}

/** CPU and memory a node's running tasks reserve. */
function reserved(nodeId) {
  let cpus = 0;
  let memory = 0;
  for (const t of tasksOn(nodeId).filter(wantsRunning)) {
    cpus += t.spec.resources?.reservations?.nano_cpus ?? 0;
    memory += t.spec.resources?.reservations?.memory_bytes ?? 0;
  }
  return { cpus, memory };
}

function describe(event) {
  const { kind, object } = event.object;
  const verb = { create: 'created', update: 'updated', delete: 'removed' }[event.action] ?? event.action;
  switch (kind) {
    case 'task': {
      const where = object.node_id ? ` on ${hostname(object.node_id)}` : '';
      const error = object.status.error ? `: ${object.status.error}` : '';
      const state = event.action === 'delete' ? 'removed' : object.status.state;
      return `task ${taskName(object)} ${state}${where}${error}`;
    }
    case 'service':
      return `service ${object.spec.name} ${verb}`;
    case 'node':
      return `node ${object.description.hostname} ${verb}: ${object.status.state}, ${object.spec.availability}`;
    default:
      return `${kind} ${object.spec?.name ?? object.id?.slice(0, 12) ?? ''} ${verb}`;
  }
}

// ---- Formatting ------------------------------------------------------------------

const plural = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;
const cpus = (nano) => `${+(nano / 1e9).toFixed(2)}`;

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${+n.toFixed(1)} ${units[i]}`;
}

function ago(timestamp) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(timestamp)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** A colour per service, the same on every load and in every cluster (a hash of its name). */
function colour(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 60%, 45%)`;
}

// ---- The DOM ---------------------------------------------------------------------

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
}

/** A bar filled `done` of `of`. */
function setBar(bar, done, of) {
  const share = of > 0 ? Math.min(1, done / of) : 1;
  bar.firstChild.style.width = `${Math.round(share * 100)}%`;
  bar.classList.toggle('short', done < of);
}

function bar() {
  const b = el('span', 'bar');
  b.append(el('span'));
  return b;
}

/**
 * Makes `parent`'s children match `items` in order, keyed by `key`: existing
 * elements are kept and refilled, missing ones made, stale ones removed.
 */
function sync(parent, items, key, make, fill) {
  const old = new Map([...parent.children].map((e) => [e.dataset.key, e]));
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let e = old.get(k);
    if (e) old.delete(k);
    else {
      e = make(item);
      e.dataset.key = k;
    }
    fill(e, item);
    const next = prev ? prev.nextSibling : parent.firstChild;
    if (e !== next) parent.insertBefore(e, next);
    prev = e;
  }
  for (const e of old.values()) e.remove();
}

/** A table row of `n` cells. */
const row = (n) => () => {
  const tr = el('tr');
  for (let i = 0; i < n; i++) tr.append(el('td'));
  return tr;
};

function setState(cell, state) {
  setText(cell, state);
  cell.className = `state-${state}`;
}

// ---- Rendering -------------------------------------------------------------------

let renderPending = false;

/** Renders once for a burst of events. */
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    render();
  }, 30);
}

const byHostname = (a, b) =>
  (isLeader(b) - isLeader(a)) ||
  a.spec.role.localeCompare(b.spec.role) ||
  a.description.hostname.localeCompare(b.description.hostname);

function render() {
  const nodes = [...store.nodes.values()].sort(byHostname);
  const services = [...store.services.values()].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
  renderBanner(nodes, services);
  renderNodes(nodes);
  renderServices(services);
  renderGrid(nodes);
}

function renderBanner(nodes, services) {
  const problems = [];
  if (!nodes.some(isLeader)) problems.push('No leader is known: the managers may have lost quorum.');
  const notReady = nodes.filter((n) => n.status.state !== 'ready');
  if (notReady.length) {
    const names = notReady.map((n) => `${n.description.hostname} (${n.status.state})`).join(', ');
    problems.push(`${notReady.length} of ${nodes.length} nodes not ready: ${names}.`);
  }
  const short = services.filter((s) => !s.spec.mode.kind.endsWith('job')).filter((s) => {
    const c = counts(s);
    return c.running < c.desired;
  });
  if (short.length) problems.push(`Not converged: ${short.map((s) => s.spec.name).join(', ')}.`);
  const paused = services.filter((s) => s.update_status?.state?.endsWith('paused'));
  if (paused.length) problems.push(`Rollout paused: ${paused.map((s) => s.spec.name).join(', ')}.`);
  const banner = $('#banner');
  banner.className = `banner ${problems.length ? 'bad' : 'ok'}`;
  const lines = problems.length
    ? problems
    : [`${plural(nodes.length, 'node')} ready, ${plural(services.length, 'service')} converged.`];
  sync(banner, lines, (l) => l, () => el('p'), (p, l) => setText(p, l));
}

function renderNodes(nodes) {
  sync($('#nodes tbody'), nodes, (n) => n.id, makeNodeRow, (tr, n) => {
    const [name, role, availability, state, cpu, memory, tasks, version] = tr.children;
    tr.dataset.name = n.description.hostname;
    setText(name.firstChild, n.description.hostname);
    name.lastChild.hidden = !isLeader(n);
    const reach = n.manager_status && !isLeader(n) ? ` (${n.manager_status.reachability})` : '';
    setText(role, n.spec.role + reach);
    setState(availability, n.spec.availability);
    setState(state, n.status.state);
    state.title = n.status.message;
    const r = reserved(n.id);
    const res = n.description.resources;
    setText(cpu, `${cpus(res.nano_cpus)} (${cpus(r.cpus)})`);
    setText(memory, `${bytes(res.memory_bytes)} (${bytes(r.memory)})`);
    setText(tasks, String(tasksOn(n.id).filter(isRunning).length));
    setText(version, n.description.version);
  });
}

function makeNodeRow() {
  const tr = row(8)();
  tr.firstChild.append(el('span', 'host'), el('span', 'leader', 'leader'));
  return tr;
}

function renderServices(services) {
  sync($('#services tbody'), services, (s) => s.id, makeServiceRow, (tr, s) => {
    const [name, mode, image, replicas, update, error] = tr.children;
    tr.dataset.name = s.spec.name;
    setText(name, s.spec.name);
    setText(mode, s.spec.mode.kind.replace('_', ' '));
    setText(image, s.spec.task_template.container.image);
    const c = counts(s);
    setText(replicas.querySelector('.count'), `${c.running}/${c.desired}`);
    replicas.title = `${c.running} ${c.label} of ${c.desired}`;
    setBar(replicas.querySelector('.bar'), c.running, c.desired);
    const r = rollout(s, c.desired);
    const state = update.querySelector('.state');
    const running = r?.done != null;
    setText(state, r ? `${r.state.replace('_', ' ')}${running ? ` ${r.done}/${r.of}` : ''}` : '');
    state.className = r ? `state state-${r.state}` : 'state';
    update.title = r?.message ?? '';
    const progress = update.querySelector('.bar');
    progress.hidden = !running;
    if (running) setBar(progress, r.done, r.of);
    const e = lastError(s);
    setText(error, e);
    error.title = e;
  });
}

function makeServiceRow() {
  const tr = row(6)();
  const [, , , replicas, update, error] = tr.children;
  replicas.append(el('span', 'count'), bar());
  update.append(el('span', 'state'), ' ', bar());
  error.className = 'error';
  return tr;
}

/** Columns of nodes with a card per task meant to run there, as Swarm's visualizer. */
function renderGrid(nodes) {
  const columns = nodes.map((n) => ({ id: n.id, node: n }));
  if (tasksOn('-').some(wantsRunning)) columns.push({ id: '-', node: null });
  sync($('#grid'), columns, (c) => c.id, makeColumn, (col, { id, node }) => {
    const [title, about, cards] = col.children;
    setText(title, node ? node.description.hostname : 'not assigned');
    setText(about, node ? `${node.spec.role} · ${node.status.state} · ${node.spec.availability}` : 'pending');
    col.classList.toggle('down', node != null && node.status.state !== 'ready');
    const here = tasksOn(id)
      .filter(wantsRunning)
      .sort((a, b) => taskName(a).localeCompare(taskName(b), undefined, { numeric: true }));
    sync(cards, here, (t) => t.id, makeCard, fillCard);
  });
}

function makeColumn() {
  const col = el('div', 'column');
  col.append(el('h3'), el('div', 'about'), el('div', 'cards'));
  return col;
}

function makeCard() {
  const card = el('div', 'card');
  card.append(el('div', 'name'), el('div', 'about'));
  return card;
}

function fillCard(card, t) {
  const [name, about] = card.children;
  setText(name, taskName(t));
  setText(about, `${t.status.state} · ${t.spec.container.image}`);
  card.title = `${t.id}\n${t.status.message}`;
  card.style.borderLeftColor = colour(serviceName(t.service_id));
  const failed = ['failed', 'rejected'].includes(t.status.state);
  card.classList.toggle('failed', failed);
  card.classList.toggle('pending', !failed && t.status.state !== 'running');
}

// ---- The page around it ----------------------------------------------------------

function setConnection(cls, text) {
  const c = $('#conn');
  c.className = `conn ${cls}`;
  setText(c, text || cls);
}

function note(text) {
  const feed = $('#feed');
  const li = el('li');
  li.append(el('time', null, new Date().toLocaleTimeString()), text);
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

function showDashboard() {
  $('#login').hidden = true;
  $('#dash').hidden = false;
  $('#forget').hidden = !sessionStorage.getItem(TOKEN_KEY);
}

function askToken(message) {
  connection?.abort();
  connection = null;
  setConnection('down', 'needs a token');
  $('#dash').hidden = true;
  $('#login').hidden = false;
  $('#forget').hidden = true;
  setText($('#login-error'), sessionStorage.getItem(TOKEN_KEY) ? message : '');
  $('#token').focus();
}

$('#login').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim());
  $('#token').value = '';
  store.lastEvent = null;
  connect();
});

$('#forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askToken('');
});

connect();
// Ages ("12s ago") move on between events too.
setInterval(scheduleRender, 10000);
