// tasktrail dashboard: live updates over Server-Sent Events. No build step, no framework.
(function () {
  "use strict";
  var FINISHED = { SUCCESSFUL: 1, FAILED: 1, CANCELLED: 1 };

  function setStatus(el, status) {
    if (!el || !status) return;
    el.textContent = status;
    el.className = "status status-" + status.toLowerCase();
  }

  // Runs and failures screens: update the rows shown from the firehose.
  function followFirehose(live) {
    var state = live.querySelector("[data-live-state]");
    var fresh = live.querySelector("[data-new-runs]");
    var onFirstPage = !/[?&]cursor=/.test(window.location.search);
    var source = new EventSource(live.dataset.firehose);
    source.onopen = function () { state.textContent = "Live updates: on"; };
    source.onerror = function () { state.textContent = "Live updates: reconnecting…"; };
    function row(runId) { return document.querySelector('tr[data-run-id="' + runId + '"]'); }
    source.addEventListener("state", function (event) {
      var data = JSON.parse(event.data);
      var tr = row(data.run);
      if (!tr) {
        if (onFirstPage && data.status === "READY") fresh.hidden = false;
        return;
      }
      setStatus(tr.querySelector("[data-status]"), data.status);
      if (data.attempts !== undefined) tr.querySelector("[data-attempts]").textContent = data.attempts;
      if (data.status === "SUCCESSFUL") tr.querySelector("[data-progress]").textContent = "100%";
      tr.classList.remove("changed"); void tr.offsetWidth; tr.classList.add("changed");
    });
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      var tr = row(data.run);
      if (tr && data.percent !== null && data.percent !== undefined) {
        tr.querySelector("[data-progress]").textContent = Math.round(data.percent) + "%";
      }
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  // Run detail: progress bar, feed and timeline from the run's own stream.
  function followRun(box) {
    if (box.dataset.finished === "1") return;
    var url = box.dataset.events;
    if (box.dataset.lastEvent) url += "?last_event_id=" + encodeURIComponent(box.dataset.lastEvent);
    var source = new EventSource(url);
    var bar = box.querySelector("[data-progress-bar]");
    var text = box.querySelector("[data-progress-text]");
    var feed = box.querySelector("[data-feed]");
    var timeline = box.querySelector("[data-timeline]");
    function stamp() { return new Date().toISOString().substring(11, 19); }
    function append(list, className, message) {
      var empty = list.querySelector(".empty");
      if (empty) empty.remove();
      var li = document.createElement("li");
      if (className) li.className = className;
      var time = document.createElement("time");
      time.textContent = stamp();
      li.appendChild(time);
      li.appendChild(document.createTextNode(" " + message));
      list.appendChild(li);
      list.scrollTop = list.scrollHeight;
    }
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      var percent = data.percent === null || data.percent === undefined ? null : data.percent;
      if (percent !== null) { bar.value = percent; bar.textContent = percent + "%"; }
      text.textContent = (percent !== null ? percent + "% " : "") + (data.message || "");
    });
    source.addEventListener("feed", function (event) {
      var data = JSON.parse(event.data);
      append(feed, "level-" + data.level, data.message);
    });
    source.addEventListener("state", function (event) {
      var data = JSON.parse(event.data);
      setStatus(box.querySelector("[data-status]"), data.status);
      if (data.attempts !== undefined) box.querySelector("[data-attempts]").textContent = data.attempts;
      append(timeline, "", "state " + data.status + (data.reason ? " — " + data.reason : ""));
      if (FINISHED[data.status]) {
        source.close();
        if (data.status === "SUCCESSFUL") { bar.value = 100; }
        // The record (result, error, traceback) is rendered by the server: show it.
        window.setTimeout(function () { window.location.reload(); }, 1500);
      }
    });
    source.addEventListener("result", function () { append(timeline, "", "result"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelector("[data-firehose]");
    if (live && window.EventSource) followFirehose(live);
    var box = document.querySelector("[data-run][data-events]");
    if (box && window.EventSource) followRun(box);
  });
})();
