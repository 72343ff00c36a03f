/* The example's pages: a form with data-api posts to the JSON API, then the run
 * widget follows the answer's events URL with tasktrail.js (the library's client). */
(function () {
  "use strict";

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function lookup(value, path) {
    return path.split(".").reduce(function (v, k) { return v == null ? v : v[k]; }, value);
  }

  function reset(widget) {
    ["[data-tasktrail-feed]", "[data-tasktrail-runs]"].forEach(function (s) {
      var el = widget.querySelector(s);
      if (el) el.innerHTML = "";
    });
    widget.querySelectorAll("[data-tasktrail-result],[data-tasktrail-message]").forEach(function (el) { el.textContent = ""; });
    var bar = widget.querySelector("[data-tasktrail-bar]");
    if (bar) bar.value = 0;
    widget.querySelectorAll("[data-tasktrail-percent]").forEach(function (el) { el.textContent = "0%"; });
    delete widget.dataset.tasktrailEnded;
    delete widget.dataset.tasktrailState;
  }

  function showMode(widget) {
    return function (mode) {
      var el = widget.querySelector("[data-mode]");
      if (el) el.textContent = mode;
    };
  }

  var current = null;

  function follow(widget, url, subject, extra) {
    if (current) current.close();
    current = window.TaskTrail.attach(widget, url, Object.assign({
      subject: subject,
      replay: !subject,  // a run's whole history (subject streams replay their tail anyway)
      onModeChange: showMode(widget),
    }, extra || {}));
    window.tasktrailFollower = current;  // for the browser tests
    return current;
  }

  async function submit(form, event) {
    event.preventDefault();
    var widget = document.querySelector("[data-run-widget]");
    var follows = form.dataset.follow || "events_url";
    if (follows !== "none") reset(widget);
    widget.hidden = false;
    var response = await fetch(form.dataset.api, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(form), Accept: "application/json" },
    });
    var body = await response.json().catch(function () { return {}; });
    widget.querySelector("[data-api-response]").textContent =
      response.status + " " + JSON.stringify(body, null, 2);
    if (response.status !== 202) {
      widget.querySelector("[data-tasktrail-message]").textContent = body.error || "Request failed";
      widget.dataset.tasktrailState = "REJECTED";
      return;
    }
    if (form.dataset.thenDelete) {
      var id = lookup(body, form.dataset.thenDelete);
      await fetch("/api/documents/" + id + "/", {
        method: "DELETE",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(form) },
      });
    }
    var extra = {};
    if (form.dataset.members) {
      // A group on its subject stream: the bar counts finished members; replay the
      // subject from its start (it is the batch's own), poll the batch's status if need be.
      extra = { members: lookup(body, form.dataset.members), replay: true, statusUrl: body.status_url };
    }
    if (follows !== "none") follow(widget, lookup(body, follows), "subject" in form.dataset, extra);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-api]").forEach(function (form) {
      form.addEventListener("submit", function (event) { submit(form, event); });
    });
    var widget = document.querySelector("[data-run-widget][data-attach-url]");
    if (widget) follow(widget, widget.dataset.attachUrl, "subject" in widget.dataset);
  });
})();
