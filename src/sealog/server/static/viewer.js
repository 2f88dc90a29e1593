// sealog viewer: follow mode, keyboard moves, and selecting a span of the activity chart.
// Every page works without it; it is served from the viewer's own origin (CSP script-src 'self').
"use strict";

(() => {
  const FOLLOW_MS = 2000;

  // -- follow mode: re-read the first page of the current filter, swap in the rows, mark the new ones
  function follow() {
    const table = document.getElementById("events");
    const button = document.getElementById("follow");
    const status = document.getElementById("follow-status");
    if (!table || !button) return;
    button.hidden = false;
    let running = true;
    let timer = null;
    const seen = () => new Set([...table.tBodies[0].rows].map((r) => r.dataset.eventId).filter(Boolean));

    async function poll() {
      timer = null;
      try {
        const response = await fetch("/follow" + location.search, {
          credentials: "same-origin", headers: { accept: "text/html" }, cache: "no-store",
        });
        if (response.status === 401) { setStatus("Signed out: live updates stopped."); running = false; }
        else if (response.ok) {
          const before = seen();
          const doc = new DOMParser().parseFromString(
            "<table><tbody>" + (await response.text()) + "</tbody></table>", "text/html");
          const body = doc.querySelector("tbody");
          let added = 0;
          for (const row of body.rows) {
            if (row.dataset.eventId && !before.has(row.dataset.eventId)) { row.classList.add("new"); added += 1; }
          }
          if (added) {
            table.replaceChild(document.adoptNode(body), table.tBodies[0]);
            setStatus(added === 1 ? "1 new event" : added + " new events");
          }
        }
      } catch (error) {
        setStatus("Live updates: the server did not answer; retrying.");
      }
      if (running) timer = setTimeout(poll, FOLLOW_MS);
    }

    function setStatus(text) { if (status) status.textContent = text; }

    button.addEventListener("click", () => {
      running = !running;
      button.setAttribute("aria-pressed", String(running));
      button.textContent = running ? "Pause live updates" : "Resume live updates";
      setStatus(running ? "Live updates on." : "Live updates paused.");
      if (running && timer === null) poll();
      if (!running && timer !== null) { clearTimeout(timer); timer = null; }
    });
    setStatus("Live updates on.");
    timer = setTimeout(poll, FOLLOW_MS);
  }

  // -- keyboard: j / k move between events, Enter opens (a link), / goes to the filter
  function keys() {
    document.addEventListener("keydown", (event) => {
      const target = event.target;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement ||
          target instanceof HTMLTextAreaElement) return;
      if (event.key === "/") {
        const input = document.querySelector("form.filters input");
        if (input) { event.preventDefault(); input.focus(); }
        return;
      }
      if (event.key !== "j" && event.key !== "k") return;
      const links = [...document.querySelectorAll("#events a.row-link")];
      if (!links.length) return;
      const at = links.indexOf(document.activeElement);
      const next = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
      document.querySelectorAll("#events tr.current").forEach((r) => r.classList.remove("current"));
      links[next].focus();
      links[next].closest("tr").classList.add("current");
      event.preventDefault();
    });
  }

  // -- chart: press on one bar, release on another: the list narrows to the span between them
  function select() {
    const svg = document.getElementById("activity-chart");
    if (!svg) return;
    let first = null;
    const barOf = (node) => node instanceof Element ? node.closest("a.bar") : null;
    svg.addEventListener("pointerdown", (event) => { first = barOf(event.target); });
    svg.addEventListener("pointerup", (event) => {
      const last = barOf(event.target);
      if (!first || !last || first === last) { first = null; return; }
      const bars = [...svg.querySelectorAll("a.bar")];
      const [a, b] = [bars.indexOf(first), bars.indexOf(last)].sort((x, y) => x - y);
      const url = new URL(bars[a].getAttribute("href"), location.href);
      url.searchParams.set("until", new URL(bars[b].getAttribute("href"), location.href).searchParams.get("until"));
      first = null;
      event.preventDefault();
      location.assign(url.toString());
    });
  }

  document.addEventListener("DOMContentLoaded", () => { follow(); keys(); select(); });
})();
