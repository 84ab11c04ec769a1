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

// "not ready" says why (the peer's own words: tracker, share directory, leaving).
function showReady(ready, why) {
  $('ready').textContent = ready ? 'ready' : 'not ready' + (why && why.length ? ': ' + why.join('; ') : '');
  $('ready').className = 'badge ' + (ready ? 'ok' : 'bad');
}

function showStatus(s) {
  $('peer-id').textContent = s.peer_id;
  document.title = s.peer_id + ' · p2pshare';
  showReady(s.ready, s.not_ready);
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
  if (s.disk) facts.push(['Disk space left', bytes(s.disk.free) + ' free of ' + bytes(s.disk.total)]);
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

async function loadShare() {
  let r;
  try { r = await api('/api/share'); } catch (_) { return; }
  if (!r.ok) { $('share-status').textContent = await errorText(r); return; }
  const files = await r.json();
  shareTable.rows = files.map((f) => ({
    name: f.name,
    size: f.size,
    row: el('tr', {},
      el('td', { 'data-label': 'Name', text: f.name }),
      el('td', { className: 'num', 'data-label': 'Size', text: bytes(f.size) }),
      shaCell(f.name, f.sha256),
      el('td', { className: 'num', 'data-label': 'Pieces held', text: f.pieces_held + ' / ' + f.pieces }),
      el('td', { 'data-label': 'Download' },
        el('a', { href: fileUrl(f.name), download: f.name, text: 'Download', 'aria-label': 'Download ' + f.name })),
      el('td', { 'data-label': 'Remove' }, removeButton(f.name))),
  }));
  shareTable.sort();
  filterShare();
}

// Sorting by a column, for every table that lists files: a header with `data-sort` becomes a
// button (a second click turns the order round), and a list gives the same orders at a phone's
// width, where the headers are not shown. `rows` are { row, ...values by the headers' keys }.
function sortable(tableId, selectId) {
  const t = { rows: [], key: 'name', dir: 1 };
  const table = $(tableId);
  t.sort = () => {
    const { key, dir } = t;
    t.rows.sort((a, b) => (a[key] < b[key] ? -dir : a[key] > b[key] ? dir : 0));
    table.tBodies[0].replaceChildren(...t.rows.map((s) => s.row));
    for (const th of table.tHead.rows[0].cells) {
      const k = th.dataset.sort;
      if (!k) continue;
      th.setAttribute('aria-sort', k === key ? (dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    $(selectId).value = key + ':' + dir;
  };
  $(selectId).addEventListener('change', (ev) => {
    const [key, dir] = ev.target.value.split(':');
    Object.assign(t, { key, dir: Number(dir) });
    t.sort();
  });
  for (const th of table.tHead.rows[0].cells) {
    const k = th.dataset.sort;
    if (!k) continue;
    const b = el('button', { type: 'button', className: 'sort', text: th.textContent, 'aria-label': 'Sort by ' + th.textContent.toLowerCase() });
    b.addEventListener('click', () => {
      Object.assign(t, { dir: t.key === k ? -t.dir : 1, key: k });
      t.sort();
    });
    th.replaceChildren(b);
  }
  return t;
}
const shareTable = sortable('share', 'share-sort');

// Removing asks twice: the first click arms the button for five seconds.
function removeButton(name) {
  const why = status && !status.fetch.allowed ? status.fetch.reason : null;
  const b = el('button', {
    type: 'button', className: 'small danger', text: 'Remove', disabled: !!why, title: why,
    'aria-label': 'Remove ' + name + ' from this peer and the network',
  });
  let armed = null;
  b.addEventListener('click', async () => {
    if (!armed) {
      b.textContent = 'Remove for good?';
      armed = setTimeout(() => { armed = null; b.textContent = 'Remove'; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.disabled = true;
    let r;
    try { r = await api(fileUrl(name), { method: 'DELETE' }); } catch (e) { $('share-status').textContent = e.message; return; }
    $('share-status').textContent = r.ok ? 'Removed ' + name + ' from this peer and the network.' : 'Not removed: ' + await errorText(r);
    if (r.ok) { shareTable.rows = shareTable.rows.filter((s) => s.name !== name); b.closest('tr').remove(); }
    else b.disabled = false;
  });
  return b;
}

function filterShare() {
  const needle = $('filter').value.toLowerCase();
  let shown = 0;
  const rows = shareTable.rows;
  for (const s of rows) {
    const show = s.name.toLowerCase().includes(needle);
    s.row.hidden = !show;
    if (show) shown++;
  }
  // A message from a removal stays until the next filtering.
  $('share-status').textContent = rows.length === 0
    ? 'Nothing shared yet.'
    : shown + ' of ' + rows.length + ' file' + (rows.length === 1 ? '' : 's');
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
// Results keep the order last chosen from one search to the next.
const resultsTable = sortable('results', 'results-sort');

async function runSearch(q) {
  lastQuery = q;
  $('search-status').textContent = 'Searching…';
  let r;
  try { r = await api('/api/search?q=' + encodeURIComponent(q)); } catch (_) { return; }
  if (!r.ok) { $('search-status').textContent = 'Search failed: ' + await errorText(r); return; }
  const found = await r.json();
  const rows = found.matches.map((m) => ({ name: m.name, size: m.size, holders: m.holder_count, row: resultRow(m) }));
  resultsTable.rows = rows;
  resultsTable.sort();
  $('results').hidden = rows.length === 0;
  $('results-tools').hidden = rows.length === 0;
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
  // The numbers are the peer's own account of the download (its tally, as "Transfers now"
  // shows it), never a second estimate of this page's: the two cannot disagree.
  const show = (have, size) => {
    const d = liveByDigest.get(m.sha256);
    if (d) { have = Math.max(have, d.have); size = d.size; }
    bar.max = size || 1;
    bar.value = have;
    const pieces = have >= size ? m.pieces : Math.floor(have / m.piece_size);
    line.textContent = 'pieces ' + pieces + ' / ' + m.pieces + (d ? ' · ' + describe(d) : '');
  };
  fetchCards.set(m.sha256, () => { if (!card.dataset.state) show(bar.value, bar.max); });
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
      if (e.event === 'start') show(e.have, e.size);
      else if (e.event === 'progress') show(e.have, e.size);
      else if (e.event === 'done') {
        fetchCards.delete(m.sha256);
        dropDownload(m.sha256);
        bar.value = bar.max;
        line.className = 'ok';
        line.textContent = e.status === 'identical'
          ? 'Already here: this peer shares the same bytes as ' + e.name + '.'
          : 'Verified and shared as ' + e.name + ' (' + bytes(e.size) + ').';
        card.dataset.state = 'done';
        loadShare();
        if (lastQuery !== null) runSearch(lastQuery);
      } else if (e.event === 'error') {
        fetchCards.delete(m.sha256);
        dropDownload(m.sha256);
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

// `as`: the name to store it under (the file's own name when empty).
function uploadFile(file, as) {
  const name = as || file.name;
  const bar = el('progress', { max: file.size || 1, value: 0, 'aria-label': 'Upload of ' + name });
  const line = el('p', { text: 'Sending…' });
  const card = el('li', { className: 'upload' }, el('strong', { text: name }), bar, line);
  $('uploads').prepend(card);
  const form = new FormData();
  form.append('file', file, name);
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

// The name field applies to one file at a time; it is emptied once used.
function uploadAll(files) {
  const as = $('upload-name').value.trim();
  if (as && files.length > 1) {
    $('uploads').prepend(el('li', { className: 'bad', text: 'A name is for one file: pick one file, or empty the name field.' }));
    return;
  }
  for (const f of files) uploadFile(f, as);
  $('upload-name').value = '';
}
$('upload-input').addEventListener('change', (ev) => {
  uploadAll(ev.target.files);
  ev.target.value = '';
});
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  uploadAll(ev.dataTransfer.files);
});

// --- transfers now: server-sent events ------------------------------------------------------

// One card per download, kept across updates (a button keeps its focus), with its controls:
// pause or resume, cancel keeping the verified pieces, cancel removing them.
const downloadCards = new Map();
// The last account of each download in progress, by digest, and the fetch cards that show it.
const liveByDigest = new Map();
const fetchCards = new Map();

// One line for a download: what every panel says of it.
function describe(d) {
  const paused = d.state === 'paused';
  const n = d.sources.length;
  return (paused ? 'Paused · ' : '') + bytes(d.have) + ' of ' + bytes(d.size) +
    (d.kept > 0 ? ' (' + bytes(d.kept) + ' kept from before)' : '') +
    ' · from ' + n + ' peer' + (n === 1 ? '' : 's') +
    (paused ? '' : ' · ' + rate(d.rate) + ' over ' + d.rate_window_secs + ' s') +
    ' · ETA ' + (paused || d.eta_secs === undefined ? '–' : eta(d.eta_secs, 1));
}

// The rate over the last minute, one point a second, scaled to its own peak.
function drawRates(canvas, rates) {
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  const peak = Math.max(1, ...rates);
  g.strokeStyle = '#0b5cad';
  g.lineWidth = 2;
  g.beginPath();
  rates.forEach((r, i) => {
    const x = w - (rates.length - 1 - i) * (w / 59);
    const y = h - 2 - (r / peak) * (h - 4);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  canvas.title = 'peak ' + rate(peak);
}

// The pieces held, from the peer's bitfield (bit i: bit 7 - i % 8 of byte i / 8), as a strip:
// each column as dark as the share of its pieces held.
async function drawPieces(canvas, sha256) {
  let r;
  try { r = await api('/blobs/' + sha256 + '/bitfield'); } catch (_) { return; }
  if (!r.ok) return;
  const n = Number(r.headers.get('x-p2p-pieces')) || 0;
  const bits = new Uint8Array(await r.arrayBuffer());
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  g.fillStyle = '#e4e8ec';
  g.fillRect(0, 0, w, h);
  if (!n) return;
  let held = 0;
  for (let x = 0; x < w; x++) {
    const from = Math.floor((x * n) / w), to = Math.max(from + 1, Math.floor(((x + 1) * n) / w));
    let got = 0;
    for (let i = from; i < to; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) got++;
    g.fillStyle = 'rgba(26, 127, 55, ' + (got / (to - from)) + ')';
    g.fillRect(x, 0, 1, h);
  }
  for (let i = 0; i < n; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) held++;
  canvas.dataset.held = String(held);
  canvas.dataset.pieces = String(n);
  canvas.title = held + ' of ' + n + ' pieces held';
}

// A download that ended leaves "Transfers now" at once, not at the next update.
function dropDownload(sha256) {
  liveByDigest.delete(sha256);
  for (const [k, c] of downloadCards) {
    if (k.startsWith(sha256 + '/')) { c.card.remove(); downloadCards.delete(k); }
  }
}

async function control(d, method, path, card) {
  const line = card.querySelector('.said');
  let r;
  try { r = await api('/downloads/' + d.sha256 + path, { method }); } catch (e) { line.textContent = e.message; return; }
  line.textContent = r.ok ? '' : 'Refused: ' + await errorText(r);
}

function downloadItem(d) {
  const key = (d.sha256 || '') + '/' + d.name;
  let c = downloadCards.get(key);
  if (!c) {
    const label = (what) => what + ' the download of ' + d.name;
    c = {
      card: el('li', { className: 'download' }),
      bar: el('progress', { 'aria-label': 'Download of ' + d.name }),
      text: el('span', {}),
      src: el('ul', { className: 'holders sources', 'aria-label': 'Sources of ' + d.name }),
      graph: el('canvas', { className: 'graph', width: 240, height: 40, role: 'img', 'aria-label': 'Rate of ' + d.name + ' over the last minute' }),
      map: el('canvas', { className: 'map', width: 240, height: 12, role: 'img', 'aria-label': 'Pieces of ' + d.name + ' held' }),
      rates: [],
      mapAt: 0,
      pause: el('button', { type: 'button', className: 'small', text: 'Pause', 'aria-label': label('Pause') }),
      resume: el('button', { type: 'button', className: 'small', text: 'Resume', 'aria-label': label('Resume') }),
      keep: el('button', { type: 'button', className: 'small', text: 'Cancel, keep pieces', 'aria-label': label('Cancel (keeping its pieces)') }),
      drop: el('button', { type: 'button', className: 'small danger', text: 'Cancel and delete', 'aria-label': label('Cancel and delete') }),
    };
    const card = c.card;
    c.pause.addEventListener('click', () => control(d, 'POST', '/pause', card));
    c.resume.addEventListener('click', () => control(d, 'POST', '/resume', card));
    c.keep.addEventListener('click', () => control(d, 'DELETE', '?keep=true', card));
    c.drop.addEventListener('click', () => control(d, 'DELETE', '', card));
    const controls = el('span', { className: 'controls' }, c.pause, c.resume, c.keep, c.drop);
    card.append(el('strong', { text: d.name }), ' ', c.bar, c.text, c.src,
      el('span', { className: 'pictures' }, c.graph, c.map), controls, el('span', { className: 'said bad', role: 'alert' }));
    downloadCards.set(key, c);
  }
  c.seen = true;
  c.bar.max = d.size || 1;
  c.bar.value = d.have;
  const paused = d.state === 'paused';
  c.card.dataset.state = d.state;
  c.text.textContent = describe(d);
  c.src.replaceChildren(...d.sources.map((s) => el('li', { text: s.peer + ' (' + s.address + ') · ' + rate(s.rate) })));
  c.rates.push(d.rate);
  if (c.rates.length > 60) c.rates.shift();
  drawRates(c.graph, c.rates);
  if (d.sha256 && performance.now() - c.mapAt > 2000) { c.mapAt = performance.now(); drawPieces(c.map, d.sha256); }
  const can = !!d.sha256 && d.state !== 'cancelling' && !(status && !status.fetch.allowed);
  c.pause.hidden = paused;
  c.resume.hidden = !paused;
  for (const b of [c.pause, c.resume, c.keep, c.drop]) b.disabled = !can;
  return c.card;
}

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
    showReady(t.ready, t.not_ready);
    const dir = (d) => d.active + ' active · ' + rate(d.rate) + ' · ' + bytes(d.total) + ' in all';
    $('serving').textContent = dir(t.serving);
    $('receiving').textContent = dir(t.receiving);
    liveByDigest.clear();
    for (const d of t.downloads) liveByDigest.set(d.sha256, d);
    for (const f of fetchCards.values()) f();
    const items = t.downloads.map(downloadItem);
    const named = new Set(t.downloads.map((d) => d.sha256));
    for (const p of t.partials) {
      if (named.has(p.sha256)) continue;
      items.push(el('li', {}, 'Download of ' + p.sha256.slice(0, 12) + '… · pieces ' + p.pieces_held + ' / ' + p.pieces));
    }
    if (items.length === 0) items.push(el('li', { className: 'muted', text: 'No download in progress.' }));
    for (const [k, c] of downloadCards) { if (!c.seen) downloadCards.delete(k); c.seen = false; }
    // The same cards in the same order stay where they are (a focused button keeps focus).
    const now = $('transfers').children;
    if (items.length !== now.length || items.some((n, i) => n !== now[i])) $('transfers').replaceChildren(...items);
  });
}

// A page left for another keeps no stream open: a browser holds few connections per peer (six
// in Chromium) and a page kept for "back" would hold its stream, until a fetch on the next page
// waits for a connection forever.
window.addEventListener('pagehide', () => { if (events) { events.close(); events = null; } });
window.addEventListener('pageshow', (ev) => { if (ev.persisted && !$('main').hidden) listen(); });

start();
