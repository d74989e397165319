/* Masthead editor: small enhancements over pages that work without script.
   Drag and drop + keyboard reordering, live Markdown preview, print preview refresh,
   send progress. Every POST carries the session's CSRF token in X-CSRF-Token. */
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function post(url, data) {
    var body = new URLSearchParams();
    Object.keys(data).forEach(function (k) {
      [].concat(data[k]).forEach(function (v) { body.append(k, v); });
    });
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf }
    });
  }

  /* ---- print order: drag and drop, and Up/Down buttons ------------------------------ */
  var list = document.getElementById("items");
  if (list) {
    var status = document.getElementById("order-status");
    var names = function () {
      return [].map.call(list.children, function (li) { return li.dataset.name; });
    };
    var refreshButtons = function () {
      var items = list.children;
      [].forEach.call(items, function (li, i) {
        li.querySelector('button[value="up"]').disabled = i === 0;
        li.querySelector('button[value="down"]').disabled = i === items.length - 1;
      });
    };
    var save = function (moved) {
      refreshButtons();
      list.setAttribute("aria-busy", "true");
      return post(list.dataset.orderUrl, { items: names() }).then(function (r) {
        list.removeAttribute("aria-busy");
        if (!r.ok) { status.textContent = "The order could not be saved; reload the page."; return; }
        if (moved) {
          var pos = [].indexOf.call(list.children, moved) + 1;
          status.textContent = moved.querySelector(".title").textContent + " is now number " + pos + " of " + list.children.length + ".";
        }
        list.dispatchEvent(new CustomEvent("ordersaved"));
      });
    };
    var dragged = null;
    list.addEventListener("dragstart", function (e) {
      dragged = e.target.closest("li");
      if (!dragged) return;
      dragged.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", dragged.dataset.name);
    });
    list.addEventListener("dragover", function (e) {
      if (!dragged) return;
      e.preventDefault();
      var over = e.target.closest("li");
      if (!over || over === dragged) return;
      var box = over.getBoundingClientRect();
      var after = e.clientY > box.top + box.height / 2;
      list.insertBefore(dragged, after ? over.nextSibling : over);
    });
    list.addEventListener("drop", function (e) { e.preventDefault(); });
    list.addEventListener("dragend", function () {
      if (!dragged) return;
      dragged.classList.remove("dragging");
      var moved = dragged;
      dragged = null;
      save(moved);
    });
    list.addEventListener("submit", function (e) {
      var form = e.target;
      if (!form.classList.contains("move")) return;
      e.preventDefault();
      var button = e.submitter;
      var li = form.closest("li");
      if (!button || !li) return;
      if (button.value === "up" && li.previousElementSibling) {
        list.insertBefore(li, li.previousElementSibling);
      } else if (button.value === "down" && li.nextElementSibling) {
        list.insertBefore(li.nextElementSibling, li);
      }
      save(li).then(function () {
        var target = button.disabled ? li.querySelector("button:not([disabled])") : button;
        if (target) target.focus();
      });
    });
  }

  /* ---- live preview of an item's Markdown ------------------------------------------------ */
  var form = document.getElementById("item-form");
  var preview = document.getElementById("body-preview");
  if (form && preview) {
    var body = form.querySelector("textarea[name=body]");
    var timer = null;
    body.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        post("/admin/markdown-preview", { body: body.value, slug: form.dataset.slug })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html !== null) preview.innerHTML = html; });
      }, 250);
    });
  }

  /* ---- print preview: poll, and show new pages when the files change -------------------- */
  var print = document.getElementById("print");
  if (print) {
    var fingerprint = print.dataset.fingerprint;
    var poll = function () {
      fetch(print.dataset.json, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          var error = document.getElementById("print-error");
          error.hidden = !data.error;
          error.textContent = data.error || "";
          if (data.fingerprint === fingerprint || data.error) return;
          fingerprint = data.fingerprint;
          print.dataset.fingerprint = fingerprint;
          var contents = document.getElementById("contents");
          contents.textContent = "";
          data.items.forEach(function (item) {
            var li = document.createElement("li");
            li.dataset.slug = item.slug;
            var t = document.createElement("span"); t.className = "t"; t.textContent = item.title;
            var p = document.createElement("span"); p.className = "p";
            p.textContent = "p. " + item.first + (item.last !== item.first ? "–" + item.last : "");
            li.append(t, " ", p);
            contents.appendChild(li);
          });
          var pages = document.getElementById("pages");
          pages.textContent = "";
          for (var n = 1; n <= data.page_count; n++) {
            var img = document.createElement("img");
            img.src = print.dataset.base + fingerprint + "/" + n + ".png";
            img.alt = "Page " + n + " of " + data.page_count;
            img.width = 397; img.height = 561;
            var link = document.createElement("a");
            link.href = img.src;
            link.appendChild(img);
            pages.appendChild(link);
          }
        })
        .catch(function () {})
        .then(function () { setTimeout(poll, 1000); });
    };
    setTimeout(poll, 1000);
  }

  /* ---- send progress --------------------------------------------------------------------- */
  var send = document.getElementById("send-status");
  if (send) {
    var wasRunning = null;
    var tick = function () {
      fetch(send.dataset.json, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          send.querySelectorAll("dd[data-key]").forEach(function (dd) { dd.textContent = s[dd.dataset.key]; });
          var bar = document.getElementById("send-progress");
          bar.max = s.total || 1;
          bar.value = s.exists ? s.total - s.waiting : 0;
          if (wasRunning === true && !s.running) { window.location.reload(); return; }
          if (s.running) document.getElementById("send-state").textContent = "Sending… " + (s.total - s.waiting) + " of " + s.total + " done.";
          wasRunning = s.running;
          setTimeout(tick, 1000);
        })
        .catch(function () { setTimeout(tick, 3000); });
    };
    tick();
  }
})();
