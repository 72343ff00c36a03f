// tasktrail workflow timeline: a run's family as a Gantt chart (SVG), polled every
// second while any member is unfinished. No build step, no framework.
(function () {
  "use strict";
  var FINAL = { SUCCESSFUL: 1, FAILED: 1, CANCELLED: 1 };
  var GUTTER = 240;     // px left of the bars, for labels
  var PERIOD = 1000;    // ms between polls while the family runs
  // Polls after every member is final: a chord's callback is published by the header
  // member that finished last, and reaches the page a moment after it.
  var GRACE = 5;
  var STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

  function esc(value) {
    return String(value === null || value === undefined ? "" : value)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }
  function clock(epoch) {
    if (epoch === null || epoch === undefined) return "—";
    var d = new Date(epoch * 1000);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    var ms = String(d.getMilliseconds()); while (ms.length < 3) ms = "0" + ms;
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) + "." + ms;
  }
  function span(seconds) {
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return (Math.round(seconds * 10) / 10) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min" + (Math.round(seconds % 60) ? " " + Math.round(seconds % 60) + " s" : "");
    return Math.floor(seconds / 3600) + " h" + (Math.round((seconds % 3600) / 60) ? " " + Math.round((seconds % 3600) / 60) + " min" : "");
  }
  function shortTask(task) {
    var parts = String(task).split(".");
    return parts[parts.length - 1] || task;
  }

  function title(bar, now) {
    var lines = [bar.task, "run " + bar.id, "status " + bar.status + (bar.attempts > 1 ? " after " + bar.attempts + " attempts" : ""),
      "enqueued " + clock(bar.enqueued), "started " + clock(bar.started)];
    if (bar.attempts > 1) lines.push("last attempt " + clock(bar.attempted));
    lines.push("finished " + clock(bar.finished));
    if (bar.next_attempt && !bar.finished) lines.push("next attempt " + clock(bar.next_attempt));
    if (bar.enqueued && bar.started) lines.push("waited " + span(Math.max(0, bar.started - bar.enqueued)));
    if (bar.started) lines.push("ran " + span(Math.max(0, (bar.finished || now) - bar.started)));
    if (bar.worker) lines.push("worker " + bar.worker);
    if (bar.retry_of) lines.push("retry of " + bar.retry_of);
    return lines.join("\n");
  }

  function bounds(bars, now) {
    var start = Infinity, end = -Infinity;
    bars.forEach(function (bar) {
      var first = bar.enqueued || bar.started || bar.finished;
      if (first) start = Math.min(start, first);
      end = Math.max(end, FINAL[bar.status] ? (bar.finished || bar.attempted || bar.started || first || -Infinity) : now);
    });
    if (!isFinite(start)) start = now - 1;
    if (!isFinite(end) || end <= start) end = start + 1;
    return [start, end + (end - start) * 0.01];
  }

  function rowHeight(count) {
    if (count <= 30) return 20;
    if (count <= 80) return 10;
    if (count <= 200) return 6;
    if (count <= 600) return 4;
    return 3;
  }

  function rect(x1, x2, y, height, cls) {
    var width = Math.max(1, x2 - x1);
    return '<rect class="' + cls + '" x="' + x1.toFixed(1) + '" y="' + y.toFixed(1) +
      '" width="' + width.toFixed(1) + '" height="' + height + '"/>';
  }

  function barMarkup(bar, y, h, x, now, current, label) {
    var barH = Math.max(2, h >= 10 ? h - 6 : h - 1);
    var top = y + (h - barH) / 2;
    var parts = ['<a href="' + esc(bar.url) + '" data-bar-id="' + esc(bar.id) + '" data-status="' + esc(bar.status) +
      '" class="gantt-row' + (bar.id === current ? " current" : "") + '" role="listitem" aria-label="' +
      esc(bar.task + " " + bar.status + " " + bar.id) + '"><title>' + esc(title(bar, now)) + "</title>",
      rect(GUTTER, x(Infinity), y, h, "gantt-hit")];
    var final = FINAL[bar.status];
    var end = bar.finished || (final ? (bar.attempted || bar.started || bar.enqueued) : now);
    if (bar.enqueued) {
      var waitEnd = bar.started || end;
      parts.push(rect(x(bar.enqueued), x(waitEnd), top, barH, "gantt-wait"));
    }
    if (bar.started) {
      var attempt = bar.attempted && bar.attempted > bar.started ? bar.attempted : bar.started;
      if (attempt > bar.started) parts.push(rect(x(bar.started), x(attempt), top, barH, "gantt-retry"));
      parts.push(rect(x(attempt), x(end), top, barH, "gantt-run status-bar-" + esc(bar.status.toLowerCase())));
      if (bar.attempts > 1 && h >= 6) {
        parts.push('<line class="gantt-attempt" x1="' + x(attempt).toFixed(1) + '" x2="' + x(attempt).toFixed(1) +
          '" y1="' + y + '" y2="' + (y + h) + '"/>');
      }
    }
    if (label) {
      parts.push('<text class="gantt-label" x="4" y="' + (y + h / 2).toFixed(1) + '" dominant-baseline="middle">' +
        esc(label) + "</text>");
    }
    parts.push("</a>");
    return parts.join("");
  }

  // Labels: one per row when rows are tall enough, else one per streak of a task,
  // skipping a streak that starts too close below the last label to be read.
  function labels(bars, h) {
    var out = [];
    var i = 0;
    var lastY = -Infinity;
    while (i < bars.length) {
      if (h >= 20) { out[i] = shortTask(bars[i].task) + " " + bars[i].id.substring(0, 8); i += 1; continue; }
      var j = i;
      while (j < bars.length && bars[j].task === bars[i].task) j += 1;
      if (i * h - lastY >= 13) {
        out[i] = shortTask(bars[i].task) + " ×" + (j - i);
        lastY = i * h;
      }
      i = j;
    }
    return out;
  }

  function ticks(start, end, width) {
    var wanted = Math.max(2, Math.floor(width / 110));
    var step = STEPS[STEPS.length - 1];
    for (var k = 0; k < STEPS.length; k += 1) {
      if ((end - start) / STEPS[k] <= wanted) { step = STEPS[k]; break; }
    }
    var out = [];
    for (var t = 0; t <= end - start + 1e-9; t += step) out.push(t);
    return out;
  }

  function draw(box, data) {
    var now = data.now + (Date.now() / 1000 - data.received);
    var bars = data.bars;
    var width = Math.max(320, box.querySelector("[data-gantt-body]").clientWidth - GUTTER - 12);
    var range = bounds(bars, now);
    function x(t) {
      if (t === Infinity) return GUTTER + width;
      return GUTTER + (Math.min(Math.max(t, range[0]), range[1]) - range[0]) / (range[1] - range[0]) * width;
    }
    var h = rowHeight(bars.length);
    var height = bars.length * h + 4;
    var marks = ticks(range[0], range[1], width);
    var axis = ['<svg class="gantt-svg" width="' + (GUTTER + width + 12) + '" height="28" aria-hidden="true">',
      '<text x="4" y="18" class="gantt-start">start ' + esc(clock(range[0])) + "</text>"];
    var grid = [];
    marks.forEach(function (t) {
      var px = x(range[0] + t).toFixed(1);
      axis.push('<line class="gantt-tick" x1="' + px + '" x2="' + px + '" y1="20" y2="28"/>' +
        '<text class="gantt-tick-label" x="' + px + '" y="14" text-anchor="' +
        (px > GUTTER + width - 40 ? "end" : "middle") + '">+' + esc(span(t)) + "</text>");
      grid.push('<line class="gantt-grid" x1="' + px + '" x2="' + px + '" y1="0" y2="' + height + '"/>');
    });
    axis.push("</svg>");
    var names = labels(bars, h);
    var rows = bars.map(function (bar, i) {
      return barMarkup(bar, i * h + 2, h, x, now, box.dataset.current, names[i]);
    });
    var live = data.finished ? "" : '<line class="gantt-now" x1="' + x(now).toFixed(1) + '" x2="' + x(now).toFixed(1) +
      '" y1="0" y2="' + height + '"/>';
    box.querySelector("[data-gantt-axis]").innerHTML = axis.join("");
    box.querySelector("[data-gantt-body]").innerHTML = '<svg class="gantt-svg" width="' + (GUTTER + width + 12) +
      '" height="' + height + '" role="presentation">' + grid.join("") + rows.join("") + live + "</svg>";
    summarize(box, data);
  }

  function summarize(box, data) {
    var counts = {};
    data.bars.forEach(function (bar) {
      var key = bar.status === "READY" ? "waiting" : bar.status.toLowerCase();
      counts[key] = (counts[key] || 0) + 1;
    });
    var order = ["waiting", "running", "retrying", "successful", "failed", "cancelled"];
    var parts = order.filter(function (k) { return counts[k]; }).map(function (k) { return counts[k] + " " + k; });
    var shown = data.shown < data.total ? "showing " + data.shown + " of " + data.total + " runs" : data.total + " runs";
    box.querySelector("[data-gantt-summary]").textContent = shown + ": " + parts.join(", ");
    var note = box.querySelector("[data-gantt-note]");
    note.hidden = !data.note;
    note.textContent = data.note || "";
  }

  function follow(box) {
    var state = box.querySelector("[data-gantt-state]");
    var settled = 0;
    var last = null;
    function poll() {
      fetch(box.dataset.gantt, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          data.received = Date.now() / 1000;
          last = data;
          draw(box, data);
          settled = data.finished ? settled + 1 : 0;
          if (settled > GRACE) {
            state.textContent = "All finished: live updates stopped";
            box.dataset.settled = "1";
            return;
          }
          state.textContent = "Live updates: on";
          window.setTimeout(poll, PERIOD);
        })
        .catch(function (error) {
          state.textContent = "Live updates: retrying (" + error.message + ")";
          window.setTimeout(poll, PERIOD * 3);
        });
    }
    window.addEventListener("resize", function () { if (last) draw(box, last); });
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-gantt]");
    if (box && window.fetch) follow(box);
  });
})();
