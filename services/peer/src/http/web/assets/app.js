// The peer's page: plain DOM, the peer's own JSON API, nothing from elsewhere. Text from the
// network (file names, peer ids) only ever goes into textContent or attribute values.
'use strict';

const $ = (id) => document.getElementById(id);
let status = null;
let events = null;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k in e && k !== 'list') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}
const rate = (n) => bytes(n) + '/s';
function eta(left, perSecond) {
  if (!perSecond || left <= 0) return '–';
  const s = Math.ceil(left / perSecond);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}
const fileUrl = (name) => '/files/' + encodeURIComponent(name);

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: 'same-origin' }, opts));
  if (r.status === 401) { showLogin(); throw new Error('this peer wants its token'); }
  return r;
}
async function errorText(r) {
  try { return (await r.json()).error || r.statusText; } catch (_) { return r.statusText; }
}

// The SHA-256 as a read-only field (selectable with the keyboard) and a copy button.
function shaCell(name, sha) {
  const input = el('input', { className: 'sha', readOnly: true, value: sha, 'aria-label': 'SHA-256 of ' + name });
  const copy = el('button', {
    type: 'button', className: 'small', text: 'Copy', 'aria-label': 'Copy the SHA-256 of ' + name,
    on: { click: async () => {
      input.select();
      try { await navigator.clipboard.writeText(sha); } catch (_) { document.execCommand('copy'); }
      copy.textContent = 'Copied';
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    } },
  });
  return el('td', { 'data-label': 'SHA-256' }, input, ' ', copy);
}

// --- access -------------------------------------------------------------------------------

function showLogin() {
  $('main').hidden = true;
  $('login').hidden = false;
  $('ready').textContent = 'locked';
  $('ready').className = 'badge';
  if (events) { events.close(); events = null; }
  $('token').focus();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const r = await fetch('/api/session', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: $('token').value }),
  });
  if (r.ok) {
    $('token').value = '';
    $('login-message').textContent = '';
    start();
  } else {
    $('login-message').textContent = 'Refused: ' + await errorText(r);
  }
});

$('logout').addEventListener('click', async () => {
  await fetch('/api/session', { method: 'DELETE', credentials: 'same-origin' });
  // Locked only if the peer now refuses this browser: a peer with no token stays open.
  const r = await fetch('/api/status', { credentials: 'same-origin' }).catch(() => null);
  if (r && r.status === 401) showLogin();
  else if (r && r.ok) showStatus(status = await r.json());
});

// --- the peer -------------------------------------------------------------------------------

function showReady(ready) {
  $('ready').textContent = ready ? 'ready' : 'not ready';
  $('ready').className = 'badge ' + (ready ? 'ok' : 'bad');
}

function showStatus(s) {
  $('peer-id').textContent = s.peer_id;
  document.title = s.peer_id + ' · p2pshare';
  showReady(s.ready);
  const l = s.limits;
  const unl = (v) => (v === '0' ? 'unlimited' : v + '/s');
  const facts = [
    ['Peer id', s.peer_id], ['Version', s.version], ['Address', s.address],
    ['Tracker', s.trackers.join(', ')],
    ['Upload limit', unl(l.upload_limit)], ['Download limit', unl(l.download_limit)],
    ['Sources per download', String(l.max_sources)],
    ['Largest upload', bytes(l.max_upload_bytes)],
    ['Transfers at once', String(l.max_concurrent_transfers)],
    ['Access', s.auth ? 'token (this browser has a session)' : 'open: no token set'],
  ];
  $('facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  $('logout').hidden = !s.auth;
}

async function start() {
  let r;
  try { r = await api('/api/status'); } catch (_) { return; }
  if (!r.ok) { $('ready').textContent = 'error: ' + await errorText(r); return; }
  status = await r.json();
  $('login').hidden = true;
  $('main').hidden = false;
  showStatus(status);
  loadShare();
  const q = new URLSearchParams(location.search).get('search');
  $('search').value = q || '';
  if (q !== null) runSearch(q);
  listen();
}

// --- share ----------------------------------------------------------------------------------

let shareRows = [];

async function loadShare() {
  let r;
  try { r = await api('/api/share'); } catch (_) { return; }
  if (!r.ok) { $('share-status').textContent = await errorText(r); return; }
  const files = await r.json();
  shareRows = files.map((f) => ({
    name: f.name,
    row: el('tr', {},
      el('td', { 'data-label': 'Name', text: f.name }),
      el('td', { className: 'num', 'data-label': 'Size', text: bytes(f.size) }),
      shaCell(f.name, f.sha256),
      el('td', { className: 'num', 'data-label': 'Pieces held', text: f.pieces_held + ' / ' + f.pieces }),
      el('td', { 'data-label': 'Download' },
        el('a', { href: fileUrl(f.name), download: f.name, text: 'Download', 'aria-label': 'Download ' + f.name }))),
  }));
  $('share').tBodies[0].replaceChildren(...shareRows.map((s) => s.row));
  filterShare();
}

function filterShare() {
  const needle = $('filter').value.toLowerCase();
  let shown = 0;
  for (const s of shareRows) {
    const show = s.name.toLowerCase().includes(needle);
    s.row.hidden = !show;
    if (show) shown++;
  }
  $('share-status').textContent = shareRows.length === 0
    ? 'Nothing shared yet.'
    : shown + ' of ' + shareRows.length + ' file' + (shareRows.length === 1 ? '' : 's');
}
$('filter').addEventListener('input', filterShare);

// --- search ---------------------------------------------------------------------------------

$('search-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = $('search').value.trim();
  history.pushState(null, '', '/?search=' + encodeURIComponent(q));
  runSearch(q);
});
window.addEventListener('popstate', () => {
  const q = new URLSearchParams(location.search).get('search');
  $('search').value = q || '';
  if (q !== null) runSearch(q);
});

let lastQuery = null;

async function runSearch(q) {
  lastQuery = q;
  $('search-status').textContent = 'Searching…';
  let r;
  try { r = await api('/api/search?q=' + encodeURIComponent(q)); } catch (_) { return; }
  if (!r.ok) { $('search-status').textContent = 'Search failed: ' + await errorText(r); return; }
  const found = await r.json();
  const rows = found.matches.map(resultRow);
  $('results').tBodies[0].replaceChildren(...rows);
  $('results').hidden = rows.length === 0;
  const what = q === '' ? 'every file' : '“' + q + '”';
  $('search-status').textContent = rows.length === 0
    ? 'No file on the network matches ' + what + '.'
    : rows.length + ' file' + (rows.length === 1 ? '' : 's') + ' on the network for ' + what + '.';
}

function resultRow(m) {
  const holders = el('ul', { className: 'holders' }, ...m.holders.map((h) =>
    el('li', {}, h.peer_id + ' (' + h.address + ')', h.partial ? el('span', { className: 'tag', text: ' partial' }) : null)));
  if (m.holder_count > m.holders.length) {
    holders.append(el('li', { text: '… ' + m.holder_count + ' holders in all' }));
  }
  let action;
  if (m.here_as) {
    action = el('a', { href: fileUrl(m.here_as), download: m.here_as, text: 'Download', 'aria-label': 'Download ' + m.name });
  } else {
    const why = status && !status.fetch.allowed ? status.fetch.reason : null;
    const whyId = 'why-' + m.sha256;
    action = el('span', {},
      el('button', {
        type: 'button', text: 'Fetch into this peer', disabled: !!why,
        'aria-label': 'Fetch ' + m.name + ' into this peer',
        'aria-describedby': why ? whyId : null,
        on: { click: (ev) => { ev.target.disabled = true; fetchInto(m, ev.target); } },
      }),
      why ? el('span', { id: whyId, className: 'why', text: 'Disabled: ' + why }) : null);
  }
  return el('tr', {},
    el('td', { 'data-label': 'Name', text: m.name }),
    el('td', { className: 'num', 'data-label': 'Size', text: bytes(m.size) }),
    shaCell(m.name, m.sha256),
    el('td', { 'data-label': 'Holders' }, holders),
    el('td', { 'data-label': 'Get it' }, action));
}

// --- fetch into this peer: POST /downloads, its NDJSON stream read as it comes --------------

// `button` is enabled again when the fetch fails, to try once more.
async function fetchInto(m, button) {
  $('fetches-section').hidden = false;
  const bar = el('progress', { max: m.size || 1, value: 0, 'aria-label': 'Progress of ' + m.name });
  const line = el('p', { text: 'Asking the network…' });
  const card = el('li', { className: 'fetch' }, el('strong', { text: m.name }), bar, line);
  $('fetches').prepend(card);
  let last = { t: performance.now(), have: 0 };
  let speed = 0;
  const show = (have, size, sources) => {
    const now = performance.now();
    const dt = (now - last.t) / 1000;
    if (dt >= 0.5) {
      const inst = (have - last.have) / dt;
      speed = speed ? 0.6 * speed + 0.4 * inst : inst;
      last = { t: now, have };
    }
    bar.max = size || 1;
    bar.value = have;
    const pieces = have >= size ? m.pieces : Math.floor(have / m.piece_size);
    line.textContent = 'pieces ' + pieces + ' / ' + m.pieces + ' · ' + sources + ' source' + (sources === 1 ? '' : 's') +
      ' · ' + rate(Math.max(0, speed)) + ' · ETA ' + eta(size - have, speed);
  };
  let r;
  try {
    r = await api('/downloads', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: m.name, sha256: m.sha256 }),
    });
  } catch (e) { line.textContent = e.message; button.disabled = false; return; }
  if (!r.ok) {
    line.className = 'bad';
    line.textContent = 'Refused: ' + await errorText(r);
    button.disabled = false;
    return;
  }
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!text) continue;
      const e = JSON.parse(text);
      if (e.event === 'start') { last = { t: performance.now(), have: e.have }; show(e.have, e.size, 0); }
      else if (e.event === 'progress') show(e.have, e.size, e.sources);
      else if (e.event === 'done') {
        bar.value = bar.max;
        line.className = 'ok';
        line.textContent = e.status === 'identical'
          ? 'Already here: this peer shares the same bytes as ' + e.name + '.'
          : 'Verified and shared as ' + e.name + ' (' + bytes(e.size) + ').';
        card.dataset.state = 'done';
        loadShare();
        if (lastQuery !== null) runSearch(lastQuery);
      } else if (e.event === 'error') {
        line.className = 'bad';
        line.textContent = 'Failed (' + e.kind + '): ' + e.message;
        card.dataset.state = 'error';
        button.disabled = false;
      }
    }
  }
}

// --- upload ---------------------------------------------------------------------------------

const uploadWords = {
  201: () => 'Published: now in the share.',
  200: () => 'Already here: an identical file has this name.',
  409: (msg) => 'Name taken: a different file is shared under this name (' + msg + ').',
  413: (msg) => 'Too large: ' + msg + '.',
  400: (msg) => 'Refused: ' + msg + '.',
  429: (msg) => 'Not now: ' + msg + '.',
  503: (msg) => 'Busy: ' + msg + '.',
  401: () => 'This peer wants its token.',
  403: (msg) => 'Refused: ' + msg + '.',
};

function uploadFile(file) {
  const bar = el('progress', { max: file.size || 1, value: 0, 'aria-label': 'Upload of ' + file.name });
  const line = el('p', { text: 'Sending…' });
  const card = el('li', { className: 'upload' }, el('strong', { text: file.name }), bar, line);
  $('uploads').prepend(card);
  const form = new FormData();
  form.append('file', file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '/upload');
  xhr.upload.addEventListener('progress', (e) => {
    if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; line.textContent = bytes(e.loaded) + ' of ' + bytes(e.total); }
  });
  xhr.addEventListener('load', () => {
    let msg = xhr.statusText;
    try { msg = JSON.parse(xhr.responseText).error || msg; } catch (_) { /* not JSON */ }
    const words = uploadWords[xhr.status];
    line.textContent = words ? words(msg) : 'Failed (' + xhr.status + '): ' + msg;
    line.className = xhr.status === 200 || xhr.status === 201 ? 'ok' : 'bad';
    card.dataset.state = String(xhr.status);
    bar.value = bar.max;
    if (xhr.status === 401) showLogin();
    loadShare();
  });
  xhr.addEventListener('error', () => { line.className = 'bad'; line.textContent = 'The connection failed.'; });
  xhr.send(form);
}

$('upload-input').addEventListener('change', (ev) => {
  for (const f of ev.target.files) uploadFile(f);
  ev.target.value = '';
});
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  for (const f of ev.dataTransfer.files) uploadFile(f);
});

// --- transfers now: server-sent events ------------------------------------------------------

function listen() {
  if (events) events.close();
  events = new EventSource('/api/events');
  // The browser reconnects by itself; a session that ended needs the token again.
  events.addEventListener('error', async () => {
    const r = await fetch('/api/status', { credentials: 'same-origin' }).catch(() => null);
    if (r && r.status === 401) showLogin();
  });
  events.addEventListener('transfers', (ev) => {
    const t = JSON.parse(ev.data);
    showReady(t.ready);
    const dir = (d) => d.active + ' active · ' + rate(d.rate) + ' · ' + bytes(d.total) + ' in all';
    $('serving').textContent = dir(t.serving);
    $('receiving').textContent = dir(t.receiving);
    const items = t.downloads.map((d) => el('li', {},
      el('strong', { text: d.name }), ' ',
      el('progress', { max: d.size || 1, value: d.have, 'aria-label': 'Download of ' + d.name }),
      el('span', { text: bytes(d.have) + ' of ' + bytes(d.size) + ' · ' + d.sources + ' source' + (d.sources === 1 ? '' : 's') + ' · ' + rate(d.rate) + ' · ETA ' + eta(d.size - d.have, d.rate) })));
    const named = new Set(t.downloads.map((d) => d.sha256));
    for (const p of t.partials) {
      if (named.has(p.sha256)) continue;
      items.push(el('li', {}, 'Download of ' + p.sha256.slice(0, 12) + '… · pieces ' + p.pieces_held + ' / ' + p.pieces));
    }
    if (items.length === 0) items.push(el('li', { className: 'muted', text: 'No download in progress.' }));
    $('transfers').replaceChildren(...items);
  });
}

start();
