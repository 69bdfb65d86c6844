// emotion bridge monitor: a WebSocket client of the bridge like TouchDesigner's WebSocket DAT.
// It gets `hello` first, then `state` (per tick), `event` (label changes), `health` (once a second).
// Everything it needs to know (WebSocket port, labels and their circumplex anchors) comes from
// /config.json, which the bridge generates from its own tables. No external resources.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const el = {
    conn: $("conn"), fps: $("fps"), lat: $("lat"), label: $("label"), confidence: $("confidence"),
    confBar: $("confidence-bar"), valence: $("valence"), arousal: $("arousal"), face: $("face"),
    voice: $("voice"), probs: $("probs"), latNow: $("lat-now"), latP50: $("lat-p50"), latP95: $("lat-p95"),
    delayNow: $("delay-now"), delayP50: $("delay-p50"), delayP95: $("delay-p95"), health: $("health"),
    healthAge: $("health-age"), seq: $("seq"), version: $("version"), wsUrl: $("ws-url"),
    canvas: $("circumplex"), people: $("people"), crowd: $("crowd"),
  };
  // one colour per slot (several visitors), the same on the list and on the circumplex
  const SLOT_COLORS = ["#4cc9f0", "#f72585", "#ffd166", "#06d6a0", "#b388ff", "#ff9f1c", "#8ecae6", "#e76f51"];
  const slotColor = (slot) => SLOT_COLORS[((slot | 0) % SLOT_COLORS.length + SLOT_COLORS.length) % SLOT_COLORS.length];

  const N_STATS = 100;
  const STALE_MS = 1500;
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

  let cfg = { labels: [], va: {}, trail_seconds: 3, ws_port: 9980, token_required: false };
  let ws = null;
  let attempt = 0;
  let retryTimer = null;
  let retryAt = 0;
  let connected = false;
  let downReason = "";        // why we are not connected (shown with the retry countdown)
  let last = null;            // last state message
  let lastStateAt = 0;        // performance.now() of the last state
  let lastHealthAt = 0;
  const trail = [];           // {t, v, a}
  const latencies = [];
  const delays = [];
  const probRows = {};        // label -> {name, bar, val}

  // ------------------------------------------------------------------ helpers
  function fmt(x, digits) {
    return (typeof x === "number" && isFinite(x)) ? x.toFixed(digits) : "–";
  }
  function signed(x) {
    return (typeof x === "number" && isFinite(x)) ? (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(2) : "–";
  }
  function pushStat(arr, x) {
    if (typeof x !== "number" || !isFinite(x)) return;
    arr.push(x);
    if (arr.length > N_STATS) arr.shift();
  }
  function percentile(arr, p) {
    if (!arr.length) return NaN;
    const s = arr.slice().sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  }
  // valence -1 (red) .. 0 (amber) .. +1 (green)
  function valenceColor(v, alpha) {
    const x = Math.max(-1, Math.min(1, v || 0));
    const hue = 70 + 70 * x;
    return `hsla(${hue.toFixed(0)}, 85%, 58%, ${alpha === undefined ? 1 : alpha})`;
  }
  function setConn(state, text) {
    el.conn.dataset.state = state;
    el.conn.textContent = text;
  }

  // ------------------------------------------------------------------ probability bars
  function buildProbs(labels) {
    el.probs.textContent = "";
    for (const k of Object.keys(probRows)) delete probRows[k];
    for (const name of labels) {
      const n = document.createElement("div");
      n.className = "name";
      n.textContent = name;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      bar.appendChild(fill);
      const val = document.createElement("div");
      val.className = "val";
      val.textContent = "–";
      el.probs.append(n, bar, val);
      probRows[name] = { name: n, bar: fill, val: val };
    }
  }

  // ------------------------------------------------------------------ messages
  function onState(m) {
    last = m;
    const now = performance.now();
    lastStateAt = now;
    trail.push({ t: now, v: m.valence, a: m.arousal });

    el.label.textContent = m.label || "–";
    el.label.dataset.stale = "0";
    el.label.style.color = valenceColor(m.valence);
    el.confidence.textContent = fmt(m.confidence, 2);
    el.confBar.style.width = (100 * Math.max(0, Math.min(1, m.confidence || 0))).toFixed(1) + "%";
    el.valence.textContent = signed(m.valence);
    el.arousal.textContent = signed(m.arousal);
    el.fps.textContent = fmt(m.fps, 1);
    el.seq.textContent = String(m.seq);
    el.face.dataset.on = m.face && m.face.present ? "1" : "0";
    el.voice.dataset.on = m.voice && m.voice.active ? "1" : "0";

    const probs = m.probs || {};
    for (const name of Object.keys(probs)) {
      if (!probRows[name]) buildProbs(Object.keys(probs));
      const row = probRows[name];
      const p = Math.max(0, Math.min(1, probs[name] || 0));
      row.bar.style.width = (100 * p).toFixed(1) + "%";
      row.val.textContent = p.toFixed(2);
      const cur = name === m.label;
      row.name.classList.toggle("current", cur);
      row.bar.classList.toggle("current", cur);
    }

    renderPeople(Array.isArray(m.people) ? m.people : [], m.crowd);

    pushStat(latencies, m.latency_ms);
    if (typeof m.t_emit === "number") pushStat(delays, Date.now() - m.t_emit * 1000);
    el.lat.textContent = fmt(m.latency_ms, 0) + " ms";
    el.latNow.textContent = fmt(m.latency_ms, 1);
    el.latP50.textContent = fmt(percentile(latencies, 0.5), 1);
    el.latP95.textContent = fmt(percentile(latencies, 0.95), 1);
    el.delayNow.textContent = fmt(delays[delays.length - 1], 1);
    el.delayP50.textContent = fmt(percentile(delays, 0.5), 1);
    el.delayP95.textContent = fmt(percentile(delays, 0.95), 1);
  }

  // ------------------------------------------------------------------ people
  let peopleKey = "";
  function renderPeople(people, crowd) {
    if (crowd && typeof crowd === "object") {
      const spk = crowd.speaking >= 0 ? ` · slot ${crowd.speaking} speaking` : "";
      el.crowd.textContent = `${crowd.count} in view · crowd ${crowd.label} ${signed(crowd.valence)}/${signed(crowd.arousal)}${spk}`;
    } else {
      el.crowd.textContent = "";
    }
    const key = JSON.stringify(people.map((p) => [p.slot, p.id, p.label, p.speaking, crowd && crowd.primary === p.slot,
                                                  fmt(p.valence, 2), fmt(p.arousal, 2)]));
    if (key === peopleKey) return;
    peopleKey = key;
    el.people.textContent = "";
    if (!people.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "nobody in view";
      el.people.appendChild(li);
      return;
    }
    for (const p of people.slice().sort((a, b) => a.slot - b.slot)) {
      const li = document.createElement("li");
      li.dataset.slot = String(p.slot);
      li.dataset.id = String(p.id);
      li.dataset.speaking = p.speaking ? "1" : "0";
      if (crowd && crowd.primary === p.slot) li.classList.add("primary");
      const sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = slotColor(p.slot);
      const pid = document.createElement("span");
      pid.className = "pid";
      pid.textContent = `#${p.id}`;
      const lab = document.createElement("span");
      lab.className = "plabel";
      lab.textContent = String(p.label || "–");
      const va = document.createElement("span");
      va.className = "pva";
      va.textContent = `${signed(p.valence)} / ${signed(p.arousal)}`;
      const spk = document.createElement("span");
      spk.className = "spk";
      spk.textContent = "speaking";
      li.append(sw, pid, lab, va, spk);
      el.people.appendChild(li);
    }
  }

  function onEvent(m) {
    if (m.event !== "label_changed" || m.person !== undefined) return;
    el.label.classList.remove("flash");
    void el.label.offsetWidth;  // restart the animation
    el.label.classList.add("flash");
  }

  function onHealth(m) {
    lastHealthAt = performance.now();
    el.health.textContent = "";
    const sources = m.sources || {};
    const names = Object.keys(sources);
    if (!names.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "no sources reported";
      el.health.appendChild(li);
    }
    for (const name of names) {
      const s = sources[name] || {};
      const li = document.createElement("li");
      const src = document.createElement("span");
      src.className = "src";
      src.textContent = name;
      const st = document.createElement("span");
      st.className = "status";
      st.dataset.status = String(s.status || "unknown");
      st.textContent = String(s.status || "unknown");
      li.append(src, st);
      if (s.detail) {
        const d = document.createElement("span");
        d.className = "detail";
        d.textContent = String(s.detail);
        li.appendChild(d);
      }
      el.health.appendChild(li);
    }
    const mq = (m.outputs || {}).mqtt;
    if (mq) {  // MQTT output (docs/SCALING.md): status, broker, the last problem
      const li = document.createElement("li");
      const src = document.createElement("span");
      src.className = "src";
      src.textContent = "mqtt";
      const st = document.createElement("span");
      st.className = "status";
      st.dataset.status = String(mq.status || "unknown");
      st.textContent = String(mq.status || "unknown");
      const d = document.createElement("span");
      d.className = "detail";
      d.textContent = `${mq.broker || ""} · sent ${mq.published || 0} · dropped ${(mq.dropped_offline || 0) + (mq.dropped_full || 0)}`
        + (mq.status !== "ok" && mq.last_error ? ` · ${mq.last_error}` : "");
      li.append(src, st, d);
      el.health.appendChild(li);
    }
    const counters = m.counters || {};
    const keys = Object.keys(counters);
    if (keys.length) {
      const li = document.createElement("li");
      li.className = "counters";
      li.textContent = keys.map((k) => `${k} ${counters[k]}`).join(" · ");
      el.health.appendChild(li);
    }
  }

  function onHello(m) {
    if (Array.isArray(m.labels) && m.labels.length) buildProbs(m.labels);
    el.version.textContent = `bridge ${m.version || "?"} · schema v${m.v}`;
  }

  function onMessage(ev) {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch (e) {
      return;  // not JSON: ignore
    }
    if (!m || typeof m !== "object") return;
    switch (m.type) {
      case "state": onState(m); break;
      case "event": onEvent(m); break;
      case "health": onHealth(m); break;
      case "hello": onHello(m); break;
      default: break;  // ack and anything newer
    }
  }

  // ------------------------------------------------------------------ connection
  function wsUrl() {
    let host = location.hostname || "127.0.0.1";
    if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
    const token = new URLSearchParams(location.search).get("token");
    const q = token ? `/?token=${encodeURIComponent(token)}` : "/";
    return `ws://${host}:${cfg.ws_port}${q}`;
  }

  function scheduleReconnect(reason) {
    connected = false;
    downReason = reason || "disconnected";
    const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt += 1;
    retryAt = performance.now() + delay;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  async function loadConfig() {
    const r = await fetch("/config.json", { cache: "no-store" });
    if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
    cfg = Object.assign(cfg, await r.json());
    if (!Object.keys(probRows).length && cfg.labels.length) buildProbs(cfg.labels);
  }

  async function connect() {
    setConn("connecting", attempt ? "reconnecting…" : "connecting…");
    try {
      await loadConfig();  // the monitor page may have been restarted with the bridge on another port
    } catch (e) {
      scheduleReconnect("monitor server not reachable");
      return;
    }
    if (cfg.token_required && !new URLSearchParams(location.search).get("token")) {
      scheduleReconnect("token required: open this page with ?token=…");
      return;
    }
    const url = wsUrl();
    el.wsUrl.textContent = url.replace(/token=[^&]*/, "token=…");
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      scheduleReconnect("cannot open the WebSocket");
      return;
    }
    ws = sock;
    sock.onopen = () => {
      attempt = 0;
      connected = true;
      setConn("connected", "connected");
    };
    sock.onmessage = onMessage;
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      scheduleReconnect(connected ? "connection lost" : "bridge not reachable");
    };
    sock.onerror = () => { /* onclose follows */ };
  }

  // ------------------------------------------------------------------ circumplex
  const ctx = el.canvas.getContext("2d");
  let dpr = 1;
  function resize() {
    dpr = window.devicePixelRatio || 1;
    const r = el.canvas.getBoundingClientRect();
    const w = Math.max(200, Math.round(r.width * dpr));
    const h = Math.max(200, Math.round(r.height * dpr));
    if (el.canvas.width !== w || el.canvas.height !== h) {
      el.canvas.width = w;
      el.canvas.height = h;
    }
  }

  function draw() {
    resize();
    const W = el.canvas.width, H = el.canvas.height;
    const cx = W / 2, cy = H / 2;
    const f = (s) => `${Math.round(s * dpr)}px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif`;
    const R = Math.min(W, H) * 0.41;
    const px = (v) => cx + v * R;
    const py = (a) => cy - a * R;
    ctx.clearRect(0, 0, W, H);

    // disc, rings and axes
    ctx.fillStyle = "#0e151d";
    ctx.beginPath(); ctx.arc(cx, cy, R, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = "#2b3a4d";
    ctx.lineWidth = 1.5 * dpr;
    for (const k of [0.5, 1]) { ctx.beginPath(); ctx.arc(cx, cy, R * k, 0, 2 * Math.PI); ctx.stroke(); }
    ctx.beginPath();
    ctx.moveTo(cx - R, cy); ctx.lineTo(cx + R, cy);
    ctx.moveTo(cx, cy - R * 1.08); ctx.lineTo(cx, cy + R * 1.08);
    ctx.stroke();

    // axis names: pleasant/unpleasant inside the disc at the ends of the horizontal axis, excited/calm outside
    ctx.fillStyle = "#9fb0c4";
    ctx.font = f(18);
    ctx.textBaseline = "top";
    ctx.textAlign = "right"; ctx.fillText("pleasant", cx + R - 8 * dpr, cy + 6 * dpr);
    ctx.textAlign = "left"; ctx.fillText("unpleasant", cx - R + 8 * dpr, cy + 6 * dpr);
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom"; ctx.fillText("excited", cx, cy - R * 1.1);
    ctx.textBaseline = "top"; ctx.fillText("calm", cx, cy + R * 1.1);

    // label anchors, names placed where they don't collide (angry and fearful sit close together)
    const current = last && performance.now() - lastStateAt < STALE_MS ? last.label : null;
    ctx.font = f(15);
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    const lineH = 16 * dpr;
    const placed = cfg.labels.filter((n) => cfg.va[n]).map((n) => {
      const x = px(cfg.va[n][0]), y = py(cfg.va[n][1]);
      return [x - 6 * dpr, y - 6 * dpr, x + 6 * dpr, y + 6 * dpr];
    });
    for (const name of cfg.labels) {
      const va = cfg.va[name];
      if (!va) continue;
      const x = px(va[0]), y = py(va[1]);
      const on = name === current;
      ctx.fillStyle = on ? "#e8eef5" : "#5d6f85";
      ctx.beginPath(); ctx.arc(x, y, (on ? 6 : 4) * dpr, 0, 2 * Math.PI); ctx.fill();
      const w = ctx.measureText(name).width;
      const spots = [[x, y + lineH], [x, y - lineH], [x - w / 2 - 10 * dpr, y], [x + w / 2 + 10 * dpr, y],
                     [x, y + 2 * lineH], [x, y - 2 * lineH]];
      let spot = spots[0];
      for (const s of spots) {
        const box = [s[0] - w / 2 - 2, s[1] - lineH / 2, s[0] + w / 2 + 2, s[1] + lineH / 2];
        const hit = placed.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1]);
        if (!hit) { spot = s; break; }
      }
      placed.push([spot[0] - w / 2 - 2, spot[1] - lineH / 2, spot[0] + w / 2 + 2, spot[1] + lineH / 2]);
      ctx.fillStyle = on ? "#e8eef5" : "#7f90a5";
      ctx.fillText(name, spot[0], spot[1]);
    }

    // trail of the last few seconds, fading with age
    const now = performance.now();
    const span = (cfg.trail_seconds || 3) * 1000;
    while (trail.length && now - trail[0].t > span) trail.shift();
    ctx.lineCap = "round";
    for (let i = 1; i < trail.length; i++) {
      const p0 = trail[i - 1], p1 = trail[i];
      const age = (now - p1.t) / span;
      ctx.strokeStyle = valenceColor(p1.v, Math.max(0, 0.85 * (1 - age)));
      ctx.lineWidth = (2 + 5 * (1 - age)) * dpr;
      ctx.beginPath(); ctx.moveTo(px(p0.v), py(p0.a)); ctx.lineTo(px(p1.v), py(p1.a)); ctx.stroke();
    }

    // several visitors: each person's point in its slot colour, with its id
    if (last && Array.isArray(last.people) && now - lastStateAt <= STALE_MS) {
      ctx.font = f(13);
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      for (const p of last.people) {
        if (typeof p.valence !== "number" || typeof p.arousal !== "number") continue;
        const x = px(p.valence), y = py(p.arousal);
        ctx.fillStyle = slotColor(p.slot);
        ctx.beginPath(); ctx.arc(x, y, (p.speaking ? 8 : 6) * dpr, 0, 2 * Math.PI); ctx.fill();
        ctx.fillText(`#${p.id}`, x + 10 * dpr, y);
      }
    }

    // the current point
    if (last && typeof last.valence === "number" && typeof last.arousal === "number") {
      const stale = now - lastStateAt > STALE_MS;
      const x = px(last.valence), y = py(last.arousal);
      const r = (9 + 9 * Math.max(0, Math.min(1, last.confidence || 0))) * dpr;
      ctx.save();
      ctx.shadowColor = valenceColor(last.valence, 0.9);
      ctx.shadowBlur = stale ? 0 : 24 * dpr;
      ctx.fillStyle = stale ? "#56657a" : valenceColor(last.valence);
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
      ctx.restore();
      ctx.strokeStyle = "#0b0f14";
      ctx.lineWidth = 2 * dpr;
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  // ------------------------------------------------------------------ per-frame status
  function tick() {
    const now = performance.now();
    const stale = !lastStateAt || now - lastStateAt > STALE_MS;
    if (stale && el.label.dataset.stale !== "1") {
      el.label.dataset.stale = "1";
      el.fps.textContent = "–";
      el.lat.textContent = "–";
      el.face.dataset.on = "0";
      el.voice.dataset.on = "0";
    }
    if (connected) {
      if (stale) {
        setConn("stale", lastStateAt ? "connected · no data" : "connected · waiting for data");
      } else if (el.conn.dataset.state !== "connected") {
        setConn("connected", "connected");
      }
    } else if (retryAt > now) {
      setConn("disconnected", `${downReason} · retry in ${Math.ceil((retryAt - now) / 1000)} s`);
    }
    el.healthAge.textContent = lastHealthAt ? `${((now - lastHealthAt) / 1000).toFixed(0)} s ago` : "";
    draw();
    requestAnimationFrame(tick);
  }

  window.addEventListener("resize", resize);
  requestAnimationFrame(tick);
  connect();
})();
