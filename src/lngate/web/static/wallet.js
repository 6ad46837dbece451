// The wallet's and the console's live parts, for any page that asks in its markup:
//  - copy buttons: <button data-copy-target="ID"> copies the value of #ID (shown only when the
//    clipboard is there);
//  - a countdown: <main data-now-s data-expires-at-s> counts down into #countdown, on the
//    server's clock;
//  - live state: <main data-events="URL" data-status="URL"> follows Server-Sent Events ("state":
//    {"fields": {name: text}, "titles": {name: text}, "final": bool}) into [data-field=name],
//    polling the status URL every 3 s when events fail; once the state is final on a page that
//    was not (data-final="false"), the page the server renders now replaces <main>.
// Without JavaScript every page works; the waiting ones refresh themselves.
"use strict";

(function () {
  var main = document.getElementById("main");
  if (!main) return;

  function setupCopyButtons(scope) {
    if (!navigator.clipboard) return;
    var buttons = scope.querySelectorAll("[data-copy-target]");
    Array.prototype.forEach.call(buttons, function (button) {
      var target = document.getElementById(button.dataset.copyTarget);
      if (!target) return;
      var label = button.textContent;
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(target.value || target.textContent).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = label; }, 2000);
        }, function () {
          target.focus();
          if (target.select) target.select();
        });
      });
      if (target.select) target.addEventListener("focus", function () { target.select(); });
    });
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function startCountdown() {
    var countdown = document.getElementById("countdown");
    if (!countdown || !main.dataset.expiresAtS) return;
    // The server's clock, not the device's: a phone set five minutes off still counts right.
    var skewS = Number(main.dataset.nowS) - Date.now() / 1000;
    var expiresAtS = Number(main.dataset.expiresAtS);
    function tick() {
      if (!countdown.isConnected) return;
      var left = Math.max(0, Math.floor(expiresAtS - (Date.now() / 1000 + skewS)));
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      countdown.textContent = h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
      countdown.setAttribute("datetime", "PT" + left + "S");
      if (left === 0) {
        setTimeout(refresh, 1000); // past its expiry the server shows what became of it
        return;
      }
      setTimeout(tick, 1000 - (Date.now() % 1000));
    }
    tick();
  }

  var refreshing = false;
  // The page as the server renders it now replaces this one in place (no reload: scroll
  // position and focus are kept).
  function refresh() {
    if (refreshing) return;
    refreshing = true;
    fetch(window.location.pathname, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        var fresh = next.getElementById("main");
        if (!fresh) throw new Error("no page in the answer");
        main.innerHTML = fresh.innerHTML;
        document.title = next.title;
        setupCopyButtons(main);
        var heading = document.getElementById("outcome-title");
        if (heading) {
          heading.setAttribute("tabindex", "-1");
          heading.focus();
        }
      })
      .catch(function () { window.location.reload(); });
  }

  function apply(state) {
    if (!state || !state.fields) return;
    if (state.session === "ended") { window.location.reload(); return; } // to the sign-in page
    Object.keys(state.fields).forEach(function (name) {
      var nodes = main.querySelectorAll('[data-field="' + name + '"]');
      Array.prototype.forEach.call(nodes, function (node) {
        node.textContent = state.fields[name];
        if (state.titles && state.titles[name]) node.title = state.titles[name];
      });
    });
    if (state.final && main.dataset.final === "false") refresh();
  }

  function follow() {
    var eventsUrl = main.dataset.events, statusUrl = main.dataset.status;
    if (!eventsUrl || main.dataset.final === "true") return;
    var polling = false;
    function poll() {
      if (refreshing) return;
      polling = true;
      fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(apply)
        .catch(function () {})
        .then(function () { if (!refreshing) setTimeout(poll, 3000); });
    }
    if (!window.EventSource) { poll(); return; }
    var failures = 0;
    var source = new EventSource(eventsUrl);
    source.addEventListener("state", function (e) {
      failures = 0;
      var state;
      try { state = JSON.parse(e.data); } catch (err) { return; } // a torn event: the next one counts
      apply(state);
      if (state.final) source.close();
    });
    source.onerror = function () {
      failures += 1;
      if (failures >= 3 && !polling) { source.close(); poll(); }
    };
  }

  setupCopyButtons(document);
  startCountdown();
  follow();
})();
