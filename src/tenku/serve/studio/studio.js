// tenku studio: one page over the same /v1 API any client uses. No framework, no network asset.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  videos: new Map(), selected: null, blobs: new Map(), stream: null,
  watching: null, // the id of the last video this page asked for: the status line follows it
  heard: 0, // Date.now() of the last event from the stream
};
const POLL_MS = 2000; // while the stream is silent, the watched video is polled this often

function headers(json = true) {
  const h = {};
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = `Bearer ${key}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.body !== undefined) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

// The status line under the form. kind: "" | "error" | "hint" | "done"; progress: 0-100 shows
// a bar.
function say(text, kind = "", progress = null) {
  $("message-text").textContent = text;
  $("message").className = kind;
  const bar = $("message").querySelector(".bar");
  bar.hidden = progress === null;
  if (progress !== null) bar.firstElementChild.style.width = `${progress}%`;
}

// The status line follows the watched video: queued -> in progress (%) -> completed or failed.
function follow(video) {
  if (video.id !== state.watching) return;
  if (video.status === "queued") {
    say("Queued: waiting for a worker…", "", 0);
  } else if (video.status === "in_progress") {
    say(`Generating: ${video.progress}%`, "", video.progress);
  } else if (video.status === "completed") {
    const took = video.completed_at ? ` in ${Math.round(video.completed_at - video.created_at)} s` : "";
    say(`Done${took}: ${video.size}, ${video.seconds} s, playing on the right.`, "done", 100);
  } else if (video.status === "failed") {
    say(`Failed: ${video.error ? video.error.message : "no reason given"}`, "error");
  }
}

async function blobUrl(id, variant) {
  const name = `${id}:${variant}`;
  if (!state.blobs.has(name)) {
    const response = await api(`/v1/videos/${id}/content?variant=${variant}`);
    state.blobs.set(name, URL.createObjectURL(await response.blob()));
  }
  return state.blobs.get(name);
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// ---------------------------------------------------------------- library

function tile(video) {
  let el = document.querySelector(`.tile[data-id="${video.id}"]`);
  if (!el) {
    el = document.createElement("div");
    el.className = "tile";
    el.dataset.id = video.id;
    el.innerHTML = '<div class="thumb"></div><div class="meta"><div class="prompt"></div>' +
      '<div class="muted status"></div><div class="bar"><div></div></div></div>';
    el.addEventListener("click", () => select(video.id));
    $("library").prepend(el);
  }
  el.classList.remove("status-queued", "status-in_progress", "status-completed", "status-failed");
  el.classList.add(`status-${video.status}`);
  el.classList.toggle("selected", state.selected === video.id);
  el.querySelector(".prompt").textContent = video.prompt;
  el.querySelector(".prompt").title = video.prompt;
  const detail = video.status === "failed" && video.error ? `: ${video.error.message}` : "";
  el.querySelector(".status").textContent =
    `${video.status.replace("_", " ")} ${video.progress}% · ${video.size} · ${video.seconds}s${detail}`;
  el.querySelector(".bar > div").style.width = `${video.progress}%`;
  const thumb = el.querySelector(".thumb");
  if (video.status === "completed" && !thumb.querySelector("img")) {
    blobUrl(video.id, "thumbnail").then((url) => {
      thumb.innerHTML = "";
      const img = document.createElement("img");
      img.alt = video.prompt;
      img.src = url;
      thumb.append(img);
    }).catch((e) => say(e.message, "error"));
  }
  return el;
}

function update(video) {
  state.videos.set(video.id, video);
  tile(video);
  follow(video);
  if (state.selected === video.id) show(video);
}

// A fallback for a stream that is down or reconnecting: poll the watched video until it ends.
async function poll() {
  const video = state.videos.get(state.watching);
  const live = video && (video.status === "queued" || video.status === "in_progress");
  if (live && Date.now() - state.heard > POLL_MS) {
    try { update(await (await api(`/v1/videos/${video.id}`)).json()); } catch (_) { /* next time */ }
  }
  setTimeout(poll, POLL_MS);
}

async function loadLibrary() {
  const list = await (await api("/v1/videos?limit=100&order=asc")).json();
  $("library").innerHTML = "";
  state.videos.clear();
  for (const video of list.data) update(video);
}

async function listen() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await fetch("/v1/events", { headers: headers(false), signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        state.heard = Date.now(); // comments (": ping") count: the stream is alive
        const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
        if (data.length) update(JSON.parse(data.join("\n")));
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  setTimeout(listen, 2000); // the server went away: reconnect
}

// ---------------------------------------------------------------- viewer

async function show(video) {
  const ready = video.status === "completed";
  for (const id of ["remix", "extend", "make-loop", "download"]) $(id).disabled = !ready;
  $("delete").disabled = false;
  $("details").textContent = `${video.id} · ${video.task} · ${video.size} · ${video.seconds}s · ` +
    `${video.status}${video.remixed_from_video_id ? ` · from ${video.remixed_from_video_id}` : ""}`;
  const player = $("player");
  if (ready && player.dataset.id !== video.id) {
    player.dataset.id = video.id;
    player.src = await blobUrl(video.id, "video");
    player.play().catch(() => { /* autoplay refused: the controls remain */ });
  }
}

function select(id) {
  state.selected = id;
  document.querySelectorAll(".tile").forEach((t) => t.classList.toggle("selected", t.dataset.id === id));
  show(state.videos.get(id));
}

// ---------------------------------------------------------------- creating

async function submit(path, body) {
  try {
    const video = await (await api(path, { method: "POST", body: JSON.stringify(body) })).json();
    state.watching = video.id;
    update(video);
    select(video.id);
  } catch (e) {
    say(e.message, "error");
  }
}

async function create(event) {
  event.preventDefault();
  const body = {
    prompt: $("prompt").value,
    aspect: $("aspect").value,
    resolution: Number($("resolution").value),
    seconds: Number($("seconds").value),
    variations: Number($("variations").value),
    loop: $("loop").checked,
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("steps").value !== "") body.steps = Number($("steps").value);
  const file = $("image").files[0];
  if (file) body.input_reference = { image_url: await readAsDataUrl(file) };
  if (!$("storyboard").hidden) {
    body.cards = [...document.querySelectorAll("#cards li")]
      .map((li) => ({ at: Number(li.querySelector(".card-at").value),
        prompt: li.querySelector(".card-prompt").value }))
      .filter((c) => c.prompt.trim());
  }
  await submit("/v1/videos", body);
}

function addCard() {
  const row = $("card-row").content.firstElementChild.cloneNode(true);
  row.querySelector(".card-at").value = document.querySelectorAll("#cards li").length;
  row.querySelector(".card-remove").addEventListener("click", () => row.remove());
  $("cards").append(row);
}

function selectedVideo() { return state.videos.get(state.selected); }

$("remix").addEventListener("click", () => {
  const video = selectedVideo();
  const prompt = window.prompt("Remix with the prompt:", video.prompt);
  if (prompt) submit(`/v1/videos/${video.id}/remix`, { prompt });
});
$("extend").addEventListener("click", () => {
  const video = selectedVideo();
  submit("/v1/videos/extensions", { prompt: video.prompt, seconds: 2, video: { id: video.id } });
});
$("make-loop").addEventListener("click", () => {
  const video = selectedVideo();
  const [width, height] = video.size.split("x").map(Number);
  submit("/v1/videos", { prompt: video.prompt, seconds: Number(video.seconds), size: `${width}x${height}`,
    loop: true, keyframes: [{ video_id: video.id, at: 0, start: 0, end: 0 }] });
});
$("download").addEventListener("click", async () => {
  const a = document.createElement("a");
  a.href = await blobUrl(state.selected, "video");
  a.download = `${state.selected}.mp4`;
  a.click();
});
$("delete").addEventListener("click", async () => {
  const id = state.selected;
  try {
    await api(`/v1/videos/${id}`, { method: "DELETE" });
    document.querySelector(`.tile[data-id="${id}"]`)?.remove();
    state.videos.delete(id);
    state.selected = null;
    $("player").removeAttribute("src");
    $("player").dataset.id = "";
    say(`deleted ${id}`);
  } catch (e) { say(e.message, "error"); }
});
$("create").addEventListener("submit", create);
$("add-card").addEventListener("click", addCard);
$("toggle-board").addEventListener("click", () => {
  $("storyboard").hidden = !$("storyboard").hidden;
  $("toggle-board").setAttribute("aria-expanded", String(!$("storyboard").hidden));
  if (!$("storyboard").hidden && !$("cards").children.length) { addCard(); addCard(); }
});
$("api-key").value = localStorage.getItem("tenku-key") || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem("tenku-key", $("api-key").value.trim());
  start();
});

async function start() {
  const keyBox = $("api-key").closest("label");
  try {
    const me = await (await api("/v1/me")).json();
    keyBox.classList.remove("attention");
    say("");
    $("model").textContent = `model ${me.model} · plan ${me.plan.name}`;
    if (me.open_access) keyBox.hidden = true;
    await loadLibrary();
    listen();
  } catch (e) {
    if (e.status !== 401) { say(e.message, "error"); return; }
    keyBox.classList.add("attention");
    if ($("api-key").value.trim()) {
      say("This API key was refused: paste a current one in the API key box (top right).", "error");
    } else {  // the first visit: nothing went wrong yet
      say("Welcome! Paste your API key (tk-…) in the API key box at the top right to start. " +
        "`tenku keys create` makes one; the studio remembers it in this browser.", "hint");
      $("api-key").focus();
    }
  }
}
start();
poll();
