// bigpipe dashboard: polls /metrics and the admin groups API every 2 s and renders them.
// Hand-written, no framework, no build step. Every value from the server is put on the page
// with textContent, never innerHTML: host names and group ids come from callers and config.
'use strict';

(() => {
  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 5000;
  const HISTORY_MS = 5 * 60 * 1000; // sparklines
  const WINDOW_MS = 60 * 1000; // latency quantiles and per-minute rates
  const MAX_GROUPS = 20; // detail requests per poll are bounded
  const TOKEN_KEY = 'bigpipe.adminToken';

  // ---------------------------------------------------------------- Prometheus text parser

  /** A parse failure, with the offending line. */
  class ParseError extends Error {}

  /** The value of a sample: a float, or +Inf/-Inf/NaN. */
  function parseValue(s) {
    if (s === undefined || s === '') return null;
    if (s === '+Inf' || s === 'Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    if (s === 'NaN') return NaN;
    const n = Number(s);
    return Number.isNaN(n) ? null : n;
  }

  /** One sample line `name{label="value",...} value [timestamp] [# exemplar]`. */
  function parseSample(line) {
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!m) return null;
    const labels = {};
    let i = m[0].length;
    if (line[i] === '{') {
      i++;
      for (;;) {
        while (line[i] === ' ' || line[i] === ',') i++;
        if (line[i] === '}') { i++; break; }
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(i));
        if (!lm) return null;
        i += lm[0].length;
        let v = '';
        for (;;) {
          const c = line[i++];
          if (c === undefined) return null;
          if (c === '"') break;
          if (c === '\\') {
            const e = line[i++];
            if (e === undefined) return null;
            v += e === 'n' ? '\n' : e; // \\ and \" stand for themselves
          } else {
            v += c;
          }
        }
        labels[lm[1]] = v;
      }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const value = parseValue(rest[0]);
    if (value === null) return null;
    return { name: m[0], labels, value };
  }

  /**
   * Parses the Prometheus text format (and OpenMetrics text, its superset for our needs):
   * every sample by its own name (`x_total`, `x_bucket`, ...), and each family's type.
   */
  function parseMetrics(text) {
    const samples = new Map();
    const types = new Map();
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '') continue;
      if (line.startsWith('#')) {
        const t = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
        if (t) types.set(t[1], t[2]);
        continue;
      }
      const s = parseSample(line);
      if (!s) throw new ParseError('unreadable /metrics line: ' + line.slice(0, 120));
      if (!samples.has(s.name)) samples.set(s.name, []);
      samples.get(s.name).push({ labels: s.labels, value: s.value });
    }
    return new Metrics(samples, types);
  }

  /** Parsed metrics with the few queries the panels need. */
  class Metrics {
    constructor(samples, types) {
      this.samples = samples;
      this.types = types;
    }

    /** Every sample named `name` (empty when absent). */
    all(name) {
      return this.samples.get(name) || [];
    }

    /** Sum of the samples named `name` whose labels pass `keep`; null when there are none. */
    sum(name, keep = () => true) {
      let total = null;
      for (const s of this.all(name)) {
        if (keep(s.labels)) total = (total || 0) + s.value;
      }
      return total;
    }

    /** Sums `name` by the label values `keys`: Map of joined key -> {labels, value}. */
    by(name, keys, keep = () => true) {
      const out = new Map();
      for (const s of this.all(name)) {
        if (!keep(s.labels)) continue;
        const k = keys.map((key) => s.labels[key] ?? '').join('\u0000');
        const cur = out.get(k);
        if (cur) cur.value += s.value;
        else out.set(k, { labels: Object.fromEntries(keys.map((key) => [key, s.labels[key] ?? ''])), value: s.value });
      }
      return out;
    }

    /** Cumulative bucket counts of histogram `base` summed over all series: Map le -> count. */
    buckets(base) {
      const out = new Map();
      for (const s of this.all(base + '_bucket')) {
        const le = parseValue(s.labels.le);
        if (le === null) continue;
        out.set(le, (out.get(le) || 0) + s.value);
      }
      return out;
    }
  }

  /**
   * The q-quantile of the observations between two cumulative bucket snapshots, like
   * Prometheus's histogram_quantile: linear interpolation inside the bucket that holds the
   * rank, 0 as the lower bound of the first bucket, and the highest finite bound when the
   * rank falls in the +Inf bucket. null when nothing was observed in between.
   */
  function quantile(q, now, before) {
    const bounds = [...now.keys()].sort((a, b) => a - b);
    const delta = bounds.map((le) => Math.max(0, now.get(le) - ((before && before.get(le)) || 0)));
    const total = delta.length ? delta[delta.length - 1] : 0;
    if (!(total > 0) || bounds[bounds.length - 1] !== Infinity) return null;
    const rank = q * total;
    let prevCount = 0;
    let prevBound = 0;
    for (let i = 0; i < bounds.length; i++) {
      if (delta[i] >= rank) {
        if (bounds[i] === Infinity) return i > 0 ? bounds[i - 1] : null;
        const inBucket = delta[i] - prevCount;
        const lower = i === 0 && bounds[0] <= 0 ? bounds[0] : prevBound;
        return inBucket > 0 ? lower + (bounds[i] - lower) * ((rank - prevCount) / inBucket) : bounds[i];
      }
      prevCount = delta[i];
      prevBound = bounds[i];
    }
    return null;
  }

  // ---------------------------------------------------------------- fetching

  let token = sessionStorage.getItem(TOKEN_KEY);
  let awaitingToken = false;

  /** An HTTP answer that is not 2xx. */
  class HttpError extends Error {
    constructor(path, status) {
      super(`GET ${path}: HTTP ${status}`);
      this.status = status;
    }
  }

  async function get(path) {
    const headers = { Accept: path === '/metrics' ? 'text/plain' : 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(path, { headers, cache: 'no-store', signal: abort.signal });
    } catch (e) {
      throw new Error(`GET ${path}: ${abort.signal.aborted ? 'no answer within 5 s' : 'cannot connect'}`);
    } finally {
      clearTimeout(timer);
    }
    if (!resp.ok) throw new HttpError(path, resp.status);
    return path === '/metrics' ? resp.text() : resp.json();
  }

  /** The admin groups and their detail; 'unavailable' when the API answers 404. */
  async function getGroups() {
    let list;
    try {
      list = await get('/admin/v1/groups');
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) return 'unavailable';
      throw e;
    }
    const groups = ((list && list.data && list.data.groups) || []).slice(0, MAX_GROUPS);
    const details = await Promise.allSettled(groups.map((g) =>
      get(`/admin/v1/groups/${encodeURIComponent(g.group)}?topic=${encodeURIComponent(g.topic)}`)));
    return groups.map((g, i) => ({
      entry: g,
      detail: details[i].status === 'fulfilled' ? details[i].value.data : null,
      error: details[i].status === 'rejected' ? details[i].reason.message : null,
    }));
  }

  // ---------------------------------------------------------------- state over time

  /** One scrape's numbers that later scrapes are compared with. */
  const history = [];
  let polls = 0;

  function snapshot(m, t) {
    return {
      t,
      accepted: m.sum('bigpipe_calls_accepted_total') || 0,
      delivered: m.sum('bigpipe_delivery_calls_total', (l) => l.result === 'delivered') || 0,
      latency: m.buckets('bigpipe_delivery_latency_seconds'),
      failures: m.by('bigpipe_delivery_attempts_total', ['host', 'outcome', 'status_class'],
        (l) => l.outcome !== 'delivered'),
      deadLetters: m.by('bigpipe_dead_letters_total', ['group', 'topic', 'reason']),
    };
  }

  /** Per-second increase of a counter between two values; a reset counts from zero. */
  function rate(now, before, seconds) {
    if (!(seconds > 0)) return null;
    const d = now >= before ? now - before : now;
    return d / seconds;
  }

  /** The oldest snapshot no older than `ms` before `now` (not `now` itself). */
  function since(now, ms) {
    for (const s of history) {
      if (s !== now && now.t - s.t <= ms) return s;
    }
    return null;
  }

  // ---------------------------------------------------------------- rendering

  const $ = (sel) => document.querySelector(sel);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setMetric(name, text) {
    for (const e of document.querySelectorAll(`[data-metric="${name}"]`)) e.textContent = text;
  }

  const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const int = (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : intFmt.format(v));
  const perSec = (v) => (v === null ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(0));
  function seconds(v) {
    if (v === null) return '–';
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 2 : 0) + ' ms';
    return v.toFixed(2) + ' s';
  }

  function fillTable(id, rows, empty) {
    const body = $(`#${id} tbody`);
    const cols = $(`#${id} thead tr`).children.length;
    body.replaceChildren();
    if (rows.length === 0) {
      const td = el('td', empty, 'empty');
      td.colSpan = cols;
      body.append(el('tr'));
      body.lastChild.append(td);
      return;
    }
    for (const r of rows) body.append(r);
  }

  function row(cells, attrs = {}) {
    const tr = el('tr');
    for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
    for (const c of cells) {
      const numeric = typeof c === 'number' || c === null;
      tr.append(el('td', numeric ? int(c) : c, numeric ? 'n' : undefined));
    }
    return tr;
  }

  function sparkline(id, values) {
    const svg = $(`#${id}`);
    svg.replaceChildren();
    if (values.length < 2) return;
    const max = Math.max(...values, 1e-9);
    const step = 300 / (HISTORY_MS / POLL_MS);
    const x0 = 300 - step * (values.length - 1);
    const pts = values.map((v, i) => `${(x0 + i * step).toFixed(1)},${(38 - (v / max) * 36).toFixed(1)}`);
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.append(line);
  }

  function renderThroughput(m, now) {
    setMetric('accepted_total', int(now.accepted));
    setMetric('delivered_total', int(now.delivered));
    // A counter with no series yet (no refusal so far, say) has counted nothing.
    setMetric('received_total', int(m.sum('bigpipe_calls_received_total') ?? 0));
    setMetric('refused_total', int(m.sum('bigpipe_calls_refused_total') ?? 0));
    setMetric('failed_total', int(m.sum('bigpipe_delivery_calls_total', (l) => l.result === 'failed') ?? 0));
    setMetric('queue_calls', int(m.sum('bigpipe_ingest_queue_calls')));
    setMetric('queue_bytes', int(m.sum('bigpipe_ingest_queue_bytes')));
    const rin = [];
    const rout = [];
    for (let i = 1; i < history.length; i++) {
      const a = history[i - 1];
      const b = history[i];
      const dt = (b.t - a.t) / 1000;
      rin.push(rate(b.accepted, a.accepted, dt));
      rout.push(rate(b.delivered, a.delivered, dt));
    }
    setMetric('accepted_rate', perSec(rin.length ? rin[rin.length - 1] : null));
    setMetric('delivered_rate', perSec(rout.length ? rout[rout.length - 1] : null));
    sparkline('spark-in', rin);
    sparkline('spark-out', rout);
  }

  function renderLatency(now) {
    const before = since(now, WINDOW_MS);
    const from = before ? before.latency : null;
    const inf = now.latency.get(Infinity) || 0;
    const count = Math.max(0, inf - ((from && from.get(Infinity)) || 0));
    setMetric('latency_count', int(from ? count : null));
    setMetric('latency_window', before ? `${Math.round((now.t - before.t) / 1000)} s` : '–');
    for (const q of [0.5, 0.9, 0.99]) {
      setMetric(`latency_p${Math.round(q * 100)}`, seconds(from ? quantile(q, now.latency, from) : null));
    }
  }

  function perMinute(now, key, pick) {
    const before = since(now, WINDOW_MS);
    if (!before) return null;
    const prev = pick(before).get(key);
    const cur = pick(now).get(key);
    const r = rate(cur ? cur.value : 0, prev ? prev.value : 0, (now.t - before.t) / 1000);
    return r === null ? null : r * 60;
  }

  function renderLag(m) {
    const key = (l) => [l.group, l.topic, l.partition].join('\u0000');
    const index = (name) => new Map(m.all(name).map((s) => [key(s.labels), s.value]));
    const committed = index('bigpipe_consumer_committed_offset');
    const logEnd = index('bigpipe_consumer_log_end_offset');
    const inFlight = index('bigpipe_consumer_in_flight_calls');
    const stalled = index('bigpipe_consumer_stalled');
    const lags = [...m.all('bigpipe_consumer_lag_records')].sort((a, b) =>
      a.labels.group.localeCompare(b.labels.group) || a.labels.topic.localeCompare(b.labels.topic)
      || Number(a.labels.partition) - Number(b.labels.partition));
    let total = lags.length ? 0 : null;
    let idle = 0;
    const rows = [];
    for (const s of lags) {
      const l = s.labels;
      const k = key(l);
      total += s.value;
      const isStalled = stalled.get(k) === 1;
      // Partitions with nothing to do (no lag, nothing in flight, e.g. idle retry tiers) are
      // counted, not listed: the table stays short enough to read.
      if (s.value === 0 && !isStalled && !(inFlight.get(k) > 0)) {
        idle++;
        continue;
      }
      const tr = row([l.group, l.topic, Number(l.partition), s.value, committed.get(k) ?? null,
        logEnd.get(k) ?? null, inFlight.get(k) ?? null, isStalled ? 'stalled' : 'no'],
      { 'data-lag': `${l.group}/${l.topic}/${l.partition}` });
      if (isStalled) tr.className = 'stalled';
      tr.children[3].setAttribute('data-value', String(s.value));
      rows.push(tr);
    }
    $('#lag-idle').textContent = idle ? `${idle} more partitions with no lag and nothing in flight` : '';
    setMetric('lag_total', int(total));
    fillTable('lag', rows, lags.length ? 'no lag' : 'no partitions assigned to this process');
  }

  function renderFailures(now) {
    const rows = [...now.failures.entries()]
      .filter(([, f]) => f.value > 0)
      .sort((a, b) => b[1].value - a[1].value)
      .map(([k, f]) => row([f.labels.host, f.labels.outcome, f.labels.status_class, f.value,
        perMinute(now, k, (s) => s.failures)]));
    fillTable('failures', rows, 'no failed attempts');
  }

  function renderDeadLetters(now) {
    let total = 0;
    const rows = [...now.deadLetters.entries()]
      .filter(([, d]) => d.value > 0)
      .sort((a, b) => b[1].value - a[1].value)
      .map(([k, d]) => {
        total += d.value;
        return row([d.labels.group, d.labels.topic, d.labels.reason, d.value,
          perMinute(now, k, (s) => s.deadLetters)]);
      });
    setMetric('dead_letters_total', int(total));
    fillTable('deadletters', rows, 'no dead letters');
  }

  function renderCircuits(m, groups) {
    const names = { 1: 'open', 2: 'half open' };
    const circuits = m.all('bigpipe_circuit_state').filter((s) => s.value !== 0);
    setMetric('circuits_open', int(circuits.filter((s) => s.value === 1).length));
    fillTable('circuits', circuits.map((s) =>
      row([s.labels.host, `${s.labels.group} / ${s.labels.topic}`, names[s.value] || String(s.value)])),
    'all closed');
    const paused = new Set(m.all('bigpipe_consumer_paused').filter((s) => s.value === 1)
      .map((s) => `${s.labels.group} / ${s.labels.topic}`));
    if (Array.isArray(groups)) {
      for (const g of groups) if (g.entry.paused) paused.add(`${g.entry.group} / ${g.entry.topic}`);
    }
    setMetric('paused_count', int(paused.size));
    const list = $('#paused');
    list.replaceChildren(...[...paused].sort().map((p) => el('li', p)));
    if (paused.size === 0) list.append(el('li', 'none', 'muted'));
  }

  function renderGroups(groups, error) {
    const box = $('#groups');
    box.replaceChildren();
    if (error) {
      box.append(el('p', `groups: ${error}`, 'bad'));
      return;
    }
    if (groups === 'unavailable') {
      box.append(el('p', 'not available: this bigpipe has no admin groups API (/admin/v1/groups answered 404)', 'muted'));
      box.firstChild.setAttribute('data-groups', 'not-available');
      return;
    }
    if (groups.length === 0) {
      box.append(el('p', 'no consumer entries in this process', 'muted'));
      return;
    }
    for (const g of groups) {
      const div = el('div', null, 'group');
      div.setAttribute('data-group', `${g.entry.group}/${g.entry.topic}`);
      const head = el('div');
      head.append(el('strong', g.entry.group), ' on ', el('strong', g.entry.topic), ' ');
      const d = g.detail;
      if (d) {
        head.append(el('span', d.state || '?', 'tag'), el('span', `gen ${d.generation ?? '–'}`, 'tag'));
        if (d.protocol) head.append(el('span', d.protocol, 'tag'));
      }
      if (g.entry.paused) head.append(el('span', 'paused', 'tag warn'));
      if (g.entry.deadLetterTopic) head.append(el('span', `DLQ ${g.entry.deadLetterTopic}`, 'tag'));
      div.append(head);
      if (g.error) div.append(el('div', g.error, 'bad'));
      if (d && Array.isArray(d.members)) {
        const ul = el('ul', null, 'plain');
        for (const mem of d.members) {
          const parts = (mem.partitions || []).slice().sort((a, b) => a - b).join(', ') || 'none';
          ul.append(el('li', `${mem.clientId || mem.memberId} @ ${mem.host || '?'}: partitions ${parts}`));
        }
        if (d.members.length === 0) ul.append(el('li', 'no members', 'muted'));
        div.append(ul);
      }
      box.append(div);
    }
  }

  function showBanner(errors) {
    const banner = $('#banner');
    banner.textContent = errors.join('\n');
    banner.hidden = errors.length === 0;
    const state = $('#state');
    state.textContent = errors.length ? 'errors' : 'live';
    state.className = 'pill ' + (errors.length ? 'bad' : 'ok');
  }

  function askForToken(refused) {
    awaitingToken = true;
    $('#auth').hidden = false;
    $('#auth-note').textContent = refused
      ? 'the token was refused; enter the admin token (http.admin.token)'
      : 'this bigpipe needs its admin token (http.admin.token); it is kept in this tab only';
    $('#token').focus();
  }

  // ---------------------------------------------------------------- the loop

  async function poll() {
    const [metrics, groups] = await Promise.allSettled([get('/metrics'), getGroups()]);
    const failed = [metrics, groups].filter((r) => r.status === 'rejected').map((r) => r.reason);
    if (failed.some((e) => e instanceof HttpError && e.status === 401)) {
      const hadToken = Boolean(token);
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(hadToken);
      showBanner(['the admin API needs a token']);
      return;
    }
    const errors = failed.map((e) => e.message);
    if (metrics.status === 'fulfilled') {
      try {
        const m = parseMetrics(metrics.value);
        const now = snapshot(m, Date.now());
        history.push(now);
        while (history.length && now.t - history[0].t > HISTORY_MS) history.shift();
        const build = m.all('bigpipe_build_info')[0];
        setMetric('version', build ? build.labels.version : '?');
        renderThroughput(m, now);
        renderLatency(now);
        renderLag(m);
        renderFailures(now);
        renderDeadLetters(now);
        renderCircuits(m, groups.status === 'fulfilled' ? groups.value : null);
        setMetric('last_update', new Date(now.t).toLocaleTimeString('en-GB'));
        // A hook for tests: which update the numbers on the page come from.
        document.body.dataset.polls = String(++polls);
      } catch (e) {
        errors.push(e instanceof ParseError ? e.message : `rendering failed: ${e.message}`);
      }
    }
    renderGroups(groups.status === 'fulfilled' ? groups.value : null,
      groups.status === 'rejected' ? groups.reason.message : null);
    showBanner(errors);
  }

  let busy = false;

  /** One poll unless one is running (a token entered mid-poll must not interleave two). */
  async function pollOnce() {
    if (busy || awaitingToken) return;
    busy = true;
    try {
      await poll();
    } catch (e) {
      showBanner([`dashboard error: ${e.message}`]);
    } finally {
      busy = false;
    }
  }

  async function loop() {
    await pollOnce();
    setTimeout(loop, POLL_MS);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#span-minutes').textContent = String(HISTORY_MS / 60000);
    $('#auth').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = $('#token').value.trim();
      if (!value) return;
      token = value;
      sessionStorage.setItem(TOKEN_KEY, value);
      $('#token').value = '';
      $('#auth').hidden = true;
      awaitingToken = false;
      pollOnce();
    });
    loop();
  });

  // For the unit checks in it/fixtures (run in the browser): the pure functions.
  window.bigpipeDashboard = { parseMetrics, quantile };
})();
