// The checkout page's live parts: the countdown, the copy button, and the status, followed
// over Server-Sent Events (GET /pay/{id}/events) or, failing that, by polling
// GET /pay/{id}/status. Once the order is no longer open, the view the server renders for it
// (paid, expired, cancelled) replaces this one. Without JavaScript the page refreshes itself.
"use strict";

(function () {
  var root = document.getElementById("checkout");
  if (!root || root.dataset.view !== "open") return;
  var orderId = root.dataset.orderId;
  var base = "/pay/" + encodeURIComponent(orderId);
  // The server's clock, not the device's: a phone set five minutes off still counts right.
  var skewS = Number(root.dataset.nowS) - Date.now() / 1000;
  var expiresAtS = Number(root.dataset.expiresAtS);
  var countdown = document.getElementById("countdown");
  var done = false;

  // The server renders the paid, expired or cancelled view; it replaces this one in place
  // (no reload: the payer's scroll position and focus are not thrown away).
  function finish() {
    if (done) return;
    done = true;
    fetch(window.location.pathname, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        var main = next.getElementById("checkout");
        if (!main) throw new Error("no checkout in the answer");
        root.replaceWith(document.importNode(main, true));
        document.title = next.title;
        var heading = document.getElementById("outcome-title");
        if (heading) {
          heading.setAttribute("tabindex", "-1");
          heading.focus();
        }
      })
      .catch(function () { window.location.reload(); });
  }

  function onStatus(body) {
    if (body && body.status && body.status !== "open") finish();
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tick() {
    var left = Math.max(0, Math.floor(expiresAtS - (Date.now() / 1000 + skewS)));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    countdown.textContent = h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
    countdown.setAttribute("datetime", "PT" + left + "S");
    if (left === 0) {
      // Past its expiry the server shows the order as expired (it can no longer be paid).
      setTimeout(finish, 1000);
      return;
    }
    setTimeout(tick, 1000 - (Date.now() % 1000));
  }

  var polling = false;
  function poll() {
    if (done) return;
    polling = true;
    fetch(base + "/status", { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(onStatus)
      .catch(function () {})
      .then(function () { if (!done) setTimeout(poll, 3000); });
  }

  function follow() {
    if (!window.EventSource) { poll(); return; }
    var failures = 0;
    var source = new EventSource(base + "/events");
    source.addEventListener("status", function (e) {
      failures = 0;
      try { onStatus(JSON.parse(e.data)); } catch (err) { /* a torn event: the next one counts */ }
    });
    source.onerror = function () {
      failures += 1;
      if (failures >= 3 && !polling) { source.close(); poll(); }
    };
  }

  var copy = document.getElementById("copy");
  var invoice = document.getElementById("bolt11");
  if (copy && invoice && navigator.clipboard) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(invoice.value).then(function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy invoice"; }, 2000);
      }, function () {
        invoice.focus();
        invoice.select();
      });
    });
  }
  if (invoice) {
    invoice.addEventListener("focus", function () { invoice.select(); });
  }

  tick();
  follow();
})();
