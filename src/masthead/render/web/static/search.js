// Search of the archive with Pagefind's static index (pagefind/ beside the site).
// Loaded as a file (the Content-Security-Policy allows no inline script). Results are
// built with DOM methods: no HTML from the index is inserted as HTML.
(function () {
  "use strict";
  var form = document.getElementById("mh-search");
  if (!form) return;
  var input = document.getElementById("mh-search-q");
  var status = document.getElementById("mh-search-status");
  var list = document.getElementById("mh-search-results");
  var root = new URL(form.getAttribute("data-root") || "./", document.baseURI);
  var pagefind = null;

  function say(text) { status.textContent = text; }

  // Keep only the text of an excerpt and its <mark> highlights.
  function excerpt(html) {
    var out = document.createElement("p");
    var doc = new DOMParser().parseFromString("<body>" + html, "text/html");
    (function walk(node) {
      node.childNodes.forEach(function (child) {
        if (child.nodeType === Node.TEXT_NODE) {
          out.appendChild(document.createTextNode(child.textContent));
        } else if (child.nodeType === Node.ELEMENT_NODE) {
          if (child.tagName === "MARK") {
            var mark = document.createElement("mark");
            mark.textContent = child.textContent;
            out.appendChild(mark);
          } else if (child.tagName !== "SCRIPT" && child.tagName !== "STYLE") {
            walk(child);
          }
        }
      });
    })(doc.body);
    return out;
  }

  function resultItem(data) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    var url = new URL(data.url, root);
    if (url.origin !== root.origin) return null;
    if (url.pathname.endsWith("/")) url.pathname += "index.html";
    a.href = url.href;
    a.textContent = (data.meta && data.meta.title) || data.url;
    li.appendChild(a);
    var bits = [];
    if (data.meta && data.meta.issue) bits.push(data.meta.issue);
    if (data.meta && data.meta.pages) bits.push(data.meta.pages);
    if (bits.length) {
      var meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = bits.join(" · ");
      li.appendChild(meta);
    }
    li.appendChild(excerpt(data.excerpt || ""));
    return li;
  }

  // Results load a page at a time: each one fetches its own small fragment of the index.
  var PAGE = 10;
  var pending = [];
  var more = document.getElementById("mh-search-more");

  async function showMore() {
    var batch = pending.slice(0, PAGE);
    pending = pending.slice(PAGE);
    var results = await Promise.all(batch.map(function (r) { return r.data(); }));
    results.forEach(function (data) {
      var li = resultItem(data);
      if (li) list.appendChild(li);
    });
    more.hidden = pending.length === 0;
  }

  more.addEventListener("click", function () { showMore(); });

  async function run(query) {
    list.replaceChildren();
    pending = [];
    more.hidden = true;
    if (!query.trim()) { say(""); return; }
    if (location.protocol === "file:") { say(form.getAttribute("data-label-file")); return; }
    try {
      if (!pagefind) {
        // The archive is indexed in parts, newest first; the first loads, the rest merge in.
        var parts = (form.getAttribute("data-parts") || "").split(" ").filter(Boolean);
        if (!parts.length) throw new Error("no search index");
        var bundle = function (name) { return new URL("pagefind/" + name + "/", root); };
        pagefind = await import(new URL("pagefind.js", bundle(parts[0])).href);
        await pagefind.options({ baseUrl: root.pathname, bundlePath: bundle(parts[0]).pathname });
        for (var i = 1; i < parts.length; i++) {
          await pagefind.mergeIndex(bundle(parts[i]).pathname, { baseUrl: root.pathname });
        }
      }
      var search = await pagefind.search(query);
      pending = search.results;
      await showMore();
      say(search.results.length
        ? form.getAttribute("data-label-count").replace("{count}", search.results.length.toLocaleString(document.documentElement.lang || undefined))
        : form.getAttribute("data-label-none").replace("{query}", query));
    } catch (err) {
      say(form.getAttribute("data-label-error"));
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var query = input.value;
    var url = new URL(location.href);
    url.searchParams.set("q", query);
    history.replaceState(null, "", url.href);
    run(query);
  });

  var initial = new URL(location.href).searchParams.get("q");
  if (initial) {
    input.value = initial;
    run(initial);
  }
})();
