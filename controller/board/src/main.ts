// The board's entry: ask for a token once (kept in sessionStorage), follow the release stream, and
// route between the overview (#/) and a release page (#/release/NAME[?stage=S]).
import { Unauthorized, stream, token, type Release } from "./api";
import { h } from "./dom";
import { renderOverview } from "./overview";
import { ReleasePage } from "./release";
import "./style.css";

const app = document.getElementById("app")!;
const live = document.getElementById("live")!;
const logout = document.getElementById("logout") as HTMLButtonElement;
let items: Release[] | null = null;
let page: ReleasePage | null = null;
let streaming: AbortController | null = null;

function loginForm(message = ""): void {
  streaming?.abort();
  streaming = null;
  logout.hidden = true;
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", required: "", placeholder: "API token" });
  const form = h("form", { id: "login", class: "login" },
    h("h1", {}, "pipectl board"),
    h("p", {}, "Paste your API token (pipectl token create --user YOU). It stays in this tab's session storage."),
    message ? h("p", { class: "error" }, message) : null,
    input, h("button", { type: "submit" }, "Open the board"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    token.set(input.value);
    start();
  });
  app.replaceChildren(form);
}

function fail(e: unknown): void {
  if (e instanceof Unauthorized) { token.clear(); loginForm("The controller refused that token."); return; }
  app.append(h("p", { class: "error" }, String(e instanceof Error ? e.message : e)));
}

function route(): void {
  if (!token.get()) return;
  const m = /^#\/release\/([^?]+)(?:\?stage=(.+))?$/.exec(location.hash);
  if (m) {
    page = new ReleasePage(app, decodeURIComponent(m[1]!), m[2] ? decodeURIComponent(m[2]) : null, fail);
    if (items) page.update(items.find((r) => r.name === page!.name));
  } else {
    page = null;
    if (items) renderOverview(app, items);
    else app.replaceChildren(h("p", { class: "hint" }, "Connecting to the controller…"));
  }
}

function start(): void {
  logout.hidden = false;
  streaming?.abort();
  streaming = new AbortController();
  route();
  void stream(
    (next) => {
      items = next;
      if (page) page.update(next.find((r) => r.name === page!.name));
      else renderOverview(app, next);
    },
    (on) => { live.textContent = on ? "live" : "reconnecting"; live.className = on ? "live on" : "live off"; },
    () => { token.clear(); loginForm("The controller refused that token."); },
    streaming.signal,
  );
}

window.addEventListener("hashchange", route);
// ages ("3m") move on between events: redraw the overview from the last list every 10 s
setInterval(() => { if (!page && items && token.get()) renderOverview(app, items); }, 10_000);
logout.addEventListener("click", () => { token.clear(); loginForm(); });
if (token.get()) start();
else loginForm();
