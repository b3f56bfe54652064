// A no-build single-page app with History API routes under <base href>.
// Routes: ""  (home), "items", "items/<id>", "about"; anything else is a
// client-side 404.  Data comes from the Django API on the same origin.
"use strict";

const BASE = new URL(document.baseURI).pathname; // "/app/"

function routeOf(pathname) {
  return pathname.startsWith(BASE) ? pathname.slice(BASE.length).replace(/\/+$/, "") : null;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const servedBy = response.headers.get("X-Served-By") || "?";
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} (served by ${servedBy})`);
  return { data: await response.json(), servedBy };
}

const views = {
  "": async () => [
    el("h1", {}, "wsgistack SPA"),
    el("p", {}, "Static files from the edge; data from Django through the appserver."),
    el("p", { class: "muted" }, `Loaded at ${location.pathname}`),
  ],

  items: async () => {
    const { data, servedBy } = await getJSON("/api/items");
    const list = el("ul");
    for (const item of data.items) {
      list.append(el("li", {}, el("a", { href: `items/${item.id}`, "data-route": "" }, item.name)));
    }
    const name = el("input", { name: "name", placeholder: "New item", required: "" });
    const form = el("form", {}, name, el("button", { type: "submit" }, "Add"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await getJSON("/api/items", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: name.value }),
      });
      render();
    });
    return [el("h1", {}, `Items (${data.count})`), list, form,
            el("p", { class: "muted" }, `API served by ${servedBy}`)];
  },

  about: async () => [
    el("h1", {}, "About"),
    el("p", {}, "Reload this page: the edge's try_files fallback serves index.html " +
                "for client-side routes, and the router picks the view."),
  ],
};

async function viewFor(route) {
  if (route in views) return views[route]();
  const match = /^items\/(\d+)$/.exec(route);
  if (match) {
    const response = await fetch(`/api/items/${match[1]}`);
    if (response.ok) {
      const item = await response.json();
      return [el("h1", {}, item.name), el("p", {}, item.description || "(no description)"),
              el("p", {}, `$${(item.price_cents / 100).toFixed(2)}`),
              el("a", { href: "items", "data-route": "" }, "Back to items")];
    }
  }
  return [el("h1", {}, "Not found"), el("p", {}, `No client-side route for /${route}`)];
}

async function render() {
  const route = routeOf(location.pathname) ?? "";
  for (const link of document.querySelectorAll("nav a")) {
    const current = routeOf(new URL(link.href).pathname) === route;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = document.getElementById("view");
  try {
    view.replaceChildren(...(await viewFor(route)));
  } catch (error) {
    view.replaceChildren(el("h1", {}, "Error"), el("p", {}, String(error)));
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-route]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  history.pushState(null, "", link.href);
  render();
});
window.addEventListener("popstate", render);
render();
