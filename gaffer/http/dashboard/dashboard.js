// The gaffer dashboard: one ES module, no framework, no build step.
//
// Data: GET /overview every second (the route `gaffer top` reads, so both show the same
// numbers). Live: the /channel WebSocket brings `state`, `load` and `unload` events (a
// refresh follows at once) and the output of the processes of a job whose Output panel
// is open. Actions: the HTTP API, JSON bodies, the key in X-Api-Key, same origin.
// The key is asked for once, when the API says one is needed, and kept in sessionStorage.

const KEY_NAME = "gaffer.api-key";
const POLL_MS = 1000; // between two reads of /overview; longer when a read is slow:
const POLL_SHARE = 20; // a dashboard keeps gafferd answering it at most 1/20 of the time
const POLL_MAX_MS = 10000;
const HISTORY = 60; // points of each chart: a minute at one refresh a second
const OUTPUT_LINES = 200;
const EVENT_TOPICS = ["EVENTS:state", "EVENTS:load", "EVENTS:unload"];

const $ = (selector, root = document) => root.querySelector(selector);

class ApiError extends Error {
  constructor(status, code, reason) {
    super(reason);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
}

let apiKey = sessionStorage.getItem(KEY_NAME);
let waitingForKey = false;
const cards = new Map(); // job id -> card (see newCard)
const sections = new Map(); // session -> its <section>

// -- the API -------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (apiKey) headers["X-Api-Key"] = apiKey;
  const init = { method, headers, cache: "no-store", credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const reason = data && data.reason ? data.reason : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, data && data.error ? data.error : "error", reason);
  }
  return data;
}

const jobPath = (job) =>
  `/jobs/${encodeURIComponent(job.session)}/${encodeURIComponent(job.job)}`;

// -- refreshing ----------------------------------------------------------------------------
let timer = null;
let inflight = false;
let again = false;
let pollMs = POLL_MS;

async function refresh() {
  clearTimeout(timer);
  if (waitingForKey) return;
  if (inflight) {
    again = true;
    return;
  }
  inflight = true;
  try {
    const started = performance.now();
    const data = await api("GET", "/overview");
    pollMs = Math.min(POLL_MAX_MS, Math.max(POLL_MS, POLL_SHARE * (performance.now() - started)));
    render(data);
    setLive(true, `live · ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      askForKey(
        err.status === 401
          ? "This gafferd requires an API key."
          : `This key cannot be used here: ${err.reason}.`,
      );
    } else {
      setLive(false, `no answer from gafferd: ${err.message}`);
    }
  } finally {
    inflight = false;
  }
  if (waitingForKey) return;
  if (again) {
    again = false;
    refresh();
  } else {
    timer = setTimeout(refresh, pollMs);
  }
}

let soon = null;
function refreshSoon() {
  if (soon === null) {
    soon = setTimeout(() => {
      soon = null;
      refresh();
    }, 150);
  }
}

function setLive(ok, text) {
  const live = $("#live");
  live.textContent = text;
  live.className = `live ${ok ? "ok" : "down"}`;
}

// -- messages and the key ------------------------------------------------------------------
function say(text, error = false) {
  const box = $("#message");
  box.textContent = text;
  box.className = error ? "error" : "";
  box.hidden = false;
}

function askForKey(reason) {
  waitingForKey = true;
  clearTimeout(timer);
  if (apiKey) {
    sessionStorage.removeItem(KEY_NAME); // refused: do not send it again
    apiKey = null;
  }
  $("#key-reason").textContent = reason;
  $("#key-form").hidden = false;
  $("#key-input").focus();
  setLive(false, "waiting for an API key");
  channel.close();
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("#key-input").value.trim();
  if (!key) return;
  apiKey = key;
  sessionStorage.setItem(KEY_NAME, key);
  $("#key-input").value = "";
  $("#key-form").hidden = true;
  $("#forget-key").hidden = false;
  waitingForKey = false;
  channel.open();
  refresh();
});

$("#forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_NAME);
  location.reload();
});

// -- the WebSocket: events and output ------------------------------------------------------
class Channel {
  constructor() {
    this.ws = null;
    this.wanted = false;
    this.topics = new Map(); // topic -> handler(data), kept across reconnections
    this.retry = 1000;
  }

  open() {
    this.wanted = true;
    if (this.ws) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/channel`);
    this.ws = ws;
    ws.onopen = () => {
      if (apiKey) ws.send(`AUTH:${apiKey}`);
      for (const topic of this.topics.keys()) this.send("SUB", topic);
      this.retry = 1000;
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      if (this.wanted) {
        setTimeout(() => this.wanted && this.open(), this.retry);
        this.retry = Math.min(this.retry * 2, 30000);
      }
    };
  }

  close() {
    this.wanted = false;
    if (this.ws) this.ws.close();
    this.ws = null;
  }

  send(event, topic) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ event, data: { topic } }));
    }
  }

  subscribe(topic, handler) {
    if (this.topics.has(topic)) return;
    this.topics.set(topic, handler);
    this.send("SUB", topic);
  }

  unsubscribe(topic) {
    if (this.topics.delete(topic)) this.send("UNSUB", topic);
  }

  receive(message) {
    const data = message.data || {};
    if (message.event === "gaffer:event") {
      const handler = this.topics.get(data.topic);
      if (handler) handler(data);
    } else if (message.event === "gaffer:subscription_error") {
      const handler = this.topics.get(data.topic);
      this.topics.delete(data.topic);
      if (handler) handler({ error: data.message || data.reason || "refused" });
    }
  }
}

const channel = new Channel();
for (const topic of EVENT_TOPICS) channel.subscribe(topic, refreshSoon);

// -- rendering -----------------------------------------------------------------------------
function render(data) {
  renderDaemon(data.daemon);
  const main = $("#sessions");
  const jobs = [...data.jobs].sort((a, b) =>
    a.session === b.session ? a.job.localeCompare(b.job) : a.session.localeCompare(b.session),
  );
  const seen = new Set();
  const placed = new Map(); // session -> how many cards placed in it so far
  for (const job of jobs) {
    seen.add(job.name);
    let card = cards.get(job.name);
    if (!card) {
      card = newCard(job);
      cards.set(job.name, card);
    }
    const list = sectionOf(job.session).querySelector(".jobs");
    const index = placed.get(job.session) || 0;
    placed.set(job.session, index + 1);
    if (list.children[index] !== card.el) list.insertBefore(card.el, list.children[index] || null);
    update(card, job);
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      stopOutput(card);
      card.el.remove();
      cards.delete(name);
    }
  }
  for (const [session, section] of sections) {
    if (!placed.has(session)) {
      section.remove();
      sections.delete(session);
    }
  }
  const empty = $(".empty", main);
  if (jobs.length && empty) empty.remove();
  if (!jobs.length && !empty) {
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = "No job (or none this key may read).";
    main.append(note);
  }
  document.title = `gaffer · ${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
}

function sectionOf(session) {
  let section = sections.get(session);
  if (!section) {
    section = document.createElement("section");
    section.className = "session";
    section.dataset.session = session;
    const title = document.createElement("h2");
    title.textContent = `session ${session}`;
    const list = document.createElement("div");
    list.className = "jobs";
    section.append(title, list);
    const after = [...sections.keys()].sort().find((other) => other > session);
    $("#sessions").insertBefore(section, after ? sections.get(after) : null);
    sections.set(session, section);
  }
  return section;
}

function renderDaemon(daemon) {
  const box = $("#daemon");
  box.hidden = !daemon;
  if (!daemon) return;
  field(box, "version").textContent = daemon.version;
  field(box, "pid").textContent = daemon.pid;
  field(box, "rss").textContent = bytes(daemon.rss);
  field(box, "fds").textContent = daemon.fds ?? "–";
  field(box, "lag").textContent =
    daemon.loop_lag_p99 == null ? "–" : `${(daemon.loop_lag_p99 * 1000).toFixed(1)} ms`;
}

const field = (root, name) => root.querySelector(`[data-field="${name}"]`);

function newCard(job) {
  const el = $("#job-template").content.firstElementChild.cloneNode(true);
  el.dataset.job = job.name;
  const card = { el, job, cpu: [], rss: [], output: [], partial: new Map(), streams: new Set() };
  for (const button of el.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(card, button.dataset.action));
  }
  const input = field(el, "target");
  input.addEventListener("input", () => (input.dataset.dirty = "1"));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") act(card, "scale");
  });
  $("details.output", el).addEventListener("toggle", () => syncOutput(card));
  return card;
}

function update(card, job) {
  card.job = job;
  const el = card.el;
  field(el, "name").textContent = job.name;
  const state = field(el, "state");
  state.textContent = job.state;
  state.className = `state state-${job.state}`;
  field(el, "running").textContent = job.kept_alive;
  field(el, "numprocesses").textContent = job.numprocesses;
  field(el, "restarts").textContent = job.restarts;
  field(el, "last-exit").textContent = exitText(job.last_exit);
  const error = field(el, "error");
  const pending = job.next_restart_at
    ? `restart in ${Math.max(0, job.next_restart_at - Date.now() / 1000).toFixed(1)} s`
    : "";
  error.textContent = [job.error, pending].filter(Boolean).join(" · ");
  error.hidden = !error.textContent;
  const input = field(el, "target");
  if (document.activeElement !== input && !input.dataset.dirty) input.value = job.numprocesses;

  push(card.cpu, job.cpu ?? 0);
  push(card.rss, job.rss ?? 0);
  field(el, "cpu").textContent = percent(job.cpu);
  field(el, "rss").textContent = bytes(job.rss);
  draw($('svg[data-chart="cpu"]', el), card.cpu, 5);
  draw($('svg[data-chart="rss"]', el), card.rss, 1024 * 1024);

  const rows = job.stats.map((proc) => {
    const row = document.createElement("tr");
    row.dataset.pid = proc.pid;
    const cells = [
      proc.pid,
      proc.os_pid ?? "–",
      proc.state + (proc.once ? " (once)" : ""),
      duration(proc.uptime),
      percent(proc.cpu),
      bytes(proc.mem_info1),
      proc.fds ?? "–",
      proc.restarts,
    ];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  });
  $("table.processes tbody", el).replaceChildren(...rows);
  syncOutput(card);
}

function push(series, value) {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

function draw(svg, values, floor) {
  const top = Math.max(floor, ...values) * 1.1;
  const step = 120 / (HISTORY - 1);
  const offset = (HISTORY - values.length) * step;
  const points = values
    .map((value, i) => `${(offset + i * step).toFixed(1)},${(31 - (value / top) * 30).toFixed(1)}`)
    .join(" ");
  svg.querySelector("polyline").setAttribute("points", points);
}

// -- output: the live stream of each process, while the panel is open -----------------------
// When GET /jobs/<sid>/<name>/logs?lines=N&follow=1 exists, syncOutput can read the job's
// last lines from it (history included) instead of one STREAM topic per process.
function syncOutput(card) {
  const open = $("details.output", card.el).open;
  const pids = new Set(open ? card.job.stats.map((proc) => proc.pid) : []);
  for (const pid of card.streams) {
    if (!pids.has(pid)) {
      channel.unsubscribe(`STREAM:${pid}`);
      card.streams.delete(pid);
    }
  }
  for (const pid of pids) {
    if (card.streams.has(pid)) continue;
    card.streams.add(pid);
    channel.subscribe(`STREAM:${pid}`, (data) => receiveOutput(card, pid, data));
  }
  if (open && !card.output.length) showOutput(card, "(waiting for output: the live stream starts now)");
}

function stopOutput(card) {
  for (const pid of card.streams) channel.unsubscribe(`STREAM:${pid}`);
  card.streams.clear();
}

function receiveOutput(card, pid, data) {
  if (data.error) {
    card.output.push(`[${pid}] no output to show: ${data.error}`);
  } else {
    const text = (card.partial.get(pid) || "") + data.data;
    const lines = text.split("\n");
    card.partial.set(pid, lines.pop());
    for (const line of lines) card.output.push(`[${pid}] ${line}`);
  }
  card.output.splice(0, Math.max(0, card.output.length - OUTPUT_LINES));
  showOutput(card);
}

function showOutput(card, note) {
  const pre = field(card.el, "output");
  const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = card.output.length ? card.output.join("\n") : note || "";
  if (follow) pre.scrollTop = pre.scrollHeight;
}

// -- actions -------------------------------------------------------------------------------
const VERBS = { start: "start", stop: "stop", restart: "restart", less: "scale", more: "scale", scale: "scale" };

async function act(card, action) {
  const job = card.job;
  const base = jobPath(job);
  try {
    if (action === "start" || action === "stop" || action === "restart") {
      await api("POST", `${base}/state`, { start: "start", stop: "stop", restart: "reload" }[action]);
      say(`${job.name}: ${action === "stop" ? "stopped" : action === "start" ? "started" : "restarted"}`);
    } else {
      let scale = action === "more" ? "+1" : "-1";
      if (action === "scale") {
        const input = field(card.el, "target");
        const wanted = Number(input.value);
        if (!Number.isInteger(wanted) || wanted < 0) {
          say(`${job.name}: the number of processes must be a whole number >= 0`, true);
          return;
        }
        scale = `=${wanted}`;
        delete input.dataset.dirty;
      }
      const answer = await api("POST", `${base}/numprocesses`, { scale });
      say(`${job.name}: scaled to ${answer.numprocesses} process${answer.numprocesses === 1 ? "" : "es"}`);
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      askForKey("This gafferd requires an API key.");
    } else if (err instanceof ApiError && err.status === 403) {
      say(
        `Not allowed: ${err.reason}. To ${VERBS[action]} ${job.name}, the key needs the ` +
          `manage permission on it (or on its session).`,
        true,
      );
    } else {
      say(`${job.name}: ${VERBS[action]} failed: ${err.message}`, true);
    }
  }
  refresh();
}

// -- formats -------------------------------------------------------------------------------
function bytes(value) {
  if (value == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${n.toFixed(unit && n < 10 ? 1 : 0)} ${units[unit]}`;
}

const percent = (value) => (value == null ? "–" : `${value.toFixed(1)}%`);

function duration(seconds) {
  if (seconds == null) return "–";
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function exitText(last) {
  if (!last) return "–";
  const how = last.term_signal ? `signal ${last.term_signal}` : `code ${last.exit_status}`;
  return last.time ? `${how}, ${duration(Date.now() / 1000 - last.time)} ago` : how;
}

// -- start ---------------------------------------------------------------------------------
if (apiKey) $("#forget-key").hidden = false;
channel.open();
refresh();
