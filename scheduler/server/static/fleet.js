// fleetsync dashboard: fetch this page again every few seconds and swap its live part
// (<main id="live">) in place; nothing else moves. Paused while the tab is hidden or a
// field of the live part has focus.
(function () {
  "use strict";
  const live = document.getElementById("live");
  if (!live) return;
  const every = parseInt(live.dataset.refreshMs || "5000", 10);
  let busy = false;

  async function refresh() {
    if (busy || document.hidden || live.contains(document.activeElement) &&
        document.activeElement.matches("input, select, textarea")) return;
    if (live.querySelector("[data-refresh=stop]")) return;    // a finished preview
    busy = true;
    try {
      const resp = await fetch(window.location.href, {headers: {"X-Fleetsync-Refresh": "1"},
                                                      credentials: "same-origin"});
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.getElementById("live");
      if (!fresh) return;
      const open = [...live.querySelectorAll("details[open]")].map(d => d.id).filter(Boolean);
      const scroller = live.querySelector(".matrix-wrap");
      const pos = scroller ? [scroller.scrollLeft, scroller.scrollTop] : null;
      live.innerHTML = fresh.innerHTML;
      open.forEach(id => { const d = document.getElementById(id); if (d) d.open = true; });
      const again = live.querySelector(".matrix-wrap");
      if (again && pos) { again.scrollLeft = pos[0]; again.scrollTop = pos[1]; }
      const stamp = doc.getElementById("updated");
      if (stamp) document.getElementById("updated").textContent = stamp.textContent;
      live.dispatchEvent(new CustomEvent("fleetsync:refreshed"));
    } catch (err) {
      // the server restarting: the next round tries again
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, every);

  // The action buttons: a POST to the JSON API with the page's CSRF token; the answer is
  // said in #action-result and the page refreshed at once.
  document.addEventListener("submit", async function (ev) {
    const form = ev.target.closest("form.action");
    if (!form) return;
    ev.preventDefault();
    const out = document.getElementById("action-result");
    const button = form.querySelector("button");
    const label = button ? button.textContent : "action";
    const body = {app: form.dataset.app, cluster: form.dataset.cluster || null};
    const reason = form.querySelector("input[name=reason]");
    if (reason) {
      if (!reason.value.trim()) { out.textContent = label + ": give a reason"; return; }
      body.reason = reason.value.trim();
    }
    const meta = document.querySelector('meta[name="fleetsync-csrf"]');
    out.dataset.status = "";
    try {
      const resp = await fetch(form.dataset.url, {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json",
                  "X-Fleetsync-CSRF": meta ? meta.content : ""}});
      const answer = await resp.json().catch(() => ({}));
      out.textContent = label + (resp.ok ? ": done" : ": " + (answer.error || resp.status));
      out.dataset.status = String(resp.status);
    } catch (err) {
      out.textContent = label + ": the server did not answer";
      out.dataset.status = "0";
    }
    refresh();
  });
})();
