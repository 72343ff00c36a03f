/*!
 * tasktrail.js: follow a tasktrail run (or subject) live in the browser.
 *
 *   const follower = TaskTrail.follow(run.events_url, {
 *     onProgress(p) { bar.value = p.percent; },
 *     onFeed(line) { log(line.level, line.message); },
 *     onEnd(run) { ... },
 *   });
 *
 * Server-Sent Events through EventSource; every event carries an id, and a
 * dropped connection resumes after the last id received (Last-Event-ID), so no
 * event is missed or shown twice. When the stream cannot be opened it falls
 * back to polling the run's status URL and keeps trying the stream; the next
 * stream that opens, at the latest when the run ends, replays what polling could
 * not show (feed lines). No build
 * step, no dependencies; documented in docs/js-client.md.
 */
(function (global) {
  "use strict";

  var KINDS = ["state", "progress", "feed", "result"];
  var FINISHED = { SUCCESSFUL: true, FAILED: true, CANCELLED: true };

  function parseId(id) {
    if (typeof id !== "string" || !/^\d+-\d+$/.test(id)) return null;
    var parts = id.split("-");
    return [Number(parts[0]), Number(parts[1])];
  }

  /** -1, 0 or 1, comparing two event ids ("1700000000000-0"); null sorts first. */
  function compareIds(a, b) {
    var x = parseId(a), y = parseId(b);
    if (!x && !y) return 0;
    if (!x) return -1;
    if (!y) return 1;
    if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
    if (x[1] !== y[1]) return x[1] < y[1] ? -1 : 1;
    return 0;
  }

  function withParam(url, name, value) {
    var u = new URL(url, global.location ? global.location.href : undefined);
    u.searchParams.set(name, value);
    return u.toString();
  }

  /** The status URL of a run's events URL: ".../<id>/events/" -> ".../<id>/". */
  function statusUrlFor(eventsUrl) {
    var u = new URL(eventsUrl, global.location ? global.location.href : undefined);
    if (!/\/events\/?$/.test(u.pathname) || /\/subjects\//.test(u.pathname)) return null;
    u.pathname = u.pathname.replace(/events\/?$/, "");
    u.searchParams.delete("last_event_id");
    return u.toString();
  }

  function Follower(url, options) {
    this.url = url;
    this.options = options || {};
    this.subject = !!this.options.subject || /\/subjects\//.test(url);
    this.statusUrl = this.options.statusUrl === undefined ? statusUrlFor(url) : this.options.statusUrl;
    this.pollInterval = this.options.pollInterval || 2000;
    this.maxFailures = this.options.maxFailures || 3;
    this.lastEventId = this.options.lastEventId || (this.options.replay ? "0-0" : null);
    this.mode = "idle";
    this.failures = 0;
    this.finished = false;
    this._source = null;
    this._timer = null;
    this._connect();
  }

  Follower.prototype._emit = function (name) {
    var handler = this.options[name];
    if (typeof handler === "function") {
      try {
        handler.apply(this, Array.prototype.slice.call(arguments, 1));
      } catch (error) {
        if (global.console) global.console.error("tasktrail:", name, error);
      }
    }
  };

  Follower.prototype._setMode = function (mode) {
    if (this.mode !== mode) {
      this.mode = mode;
      this._emit("onModeChange", mode);
    }
  };

  Follower.prototype._connect = function () {
    if (this.finished) return;
    if (typeof global.EventSource !== "function") {
      this._poll();
      return;
    }
    var self = this;
    var url = this.lastEventId ? withParam(this.url, "last_event_id", this.lastEventId) : this.url;
    var source = new global.EventSource(url, { withCredentials: !!this.options.withCredentials });
    this._source = source;
    this._setMode("connecting");
    source.onopen = function () {
      self.failures = 0;
      self._setMode("stream");
    };
    KINDS.forEach(function (kind) {
      source.addEventListener(kind, function (event) {
        self._receive(kind, event.data, event.lastEventId);
      });
    });
    source.onerror = function () {
      if (self.finished || source !== self._source) return;
      if (source.readyState === global.EventSource.CONNECTING) {
        // The browser reconnects by itself, sending Last-Event-ID.
        self._setMode("reconnecting");
        return;
      }
      source.close();
      self._source = null;
      self.failures += 1;
      if (self.failures >= self.maxFailures && self.statusUrl) {
        self._poll();
      } else {
        var delay = Math.min(30000, 500 * Math.pow(2, self.failures));
        self._setMode("reconnecting");
        self._timer = setTimeout(function () { self._connect(); }, delay);
      }
    };
  };

  Follower.prototype._receive = function (kind, raw, id) {
    if (this.finished) return;
    if (id && this.lastEventId && compareIds(id, this.lastEventId) <= 0) {
      return; // already delivered before a reconnect
    }
    var data;
    try {
      data = JSON.parse(raw);
    } catch (error) {
      return;
    }
    if (id && compareIds(id, this.lastEventId) > 0) this.lastEventId = id;
    this._emit("onEvent", kind, data, id);
    if (kind === "state") this._emit("onState", data);
    else if (kind === "progress") this._emit("onProgress", data);
    else if (kind === "feed") this._emit("onFeed", data);
    else if (kind === "result") this._emit("onResult", data);
    if (kind === "state" && !this.subject && FINISHED[data.status]) this._end(data);
  };

  Follower.prototype._end = function (run) {
    this.finished = true;
    this._stop();
    this._setMode("closed");
    this._emit("onEnd", run);
  };

  Follower.prototype._stop = function () {
    if (this._source) this._source.close();
    this._source = null;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
  };

  /** Fallback: poll the status URL; every few polls, try the stream again. */
  Follower.prototype._poll = function () {
    var self = this;
    if (!this.statusUrl || typeof global.fetch !== "function") {
      this._setMode("closed");
      this._emit("onError", new Error("tasktrail: the stream is unavailable and there is no status URL"));
      return;
    }
    this._setMode("polling");
    var polls = 0;
    var tick = function () {
      if (self.finished) return;
      global.fetch(self.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 404) throw new Error("tasktrail: no such run (404)");
          if (!response.ok) return null;
          return response.json();
        })
        .then(function (run) {
          if (self.finished) return;
          var lastTry = !self._caughtUp && !self.options.subject && typeof global.EventSource === "function";
          if (run && FINISHED[run.status] && lastTry) {
            // The run ended while we polled: one last try of its stream, which replays
            // the missed events and the final state, then ends. If it fails, the next
            // poll ends with the polled state. (A subject stream never ends by itself.)
            self._caughtUp = true;
            self.failures = Math.max(0, self.maxFailures - 1);
            self._connect();
            return;
          }
          if (run) {
            var state = Object.assign({ kind: "state", polled: true }, run);
            self._emit("onEvent", "state", state, null);
            self._emit("onState", state);
            if (run.progress) {
              self._emit("onProgress", Object.assign({ run: run.id, polled: true }, run.progress));
            }
            if (FINISHED[run.status]) {
              if (run.status === "SUCCESSFUL") self._emit("onResult", { run: run.id, result: run.result, polled: true });
              self._end(state);
              return;
            }
          }
          polls += 1;
          if (polls % 5 === 0 && typeof global.EventSource === "function") {
            self.failures = 0;
            self._connect();  // the stream may be back
            return;
          }
          self._timer = setTimeout(tick, self.pollInterval);
        })
        .catch(function (error) {
          self._stop();
          self._setMode("closed");
          self._emit("onError", error);
        });
    };
    tick();
  };

  /** Stop following (the page is leaving, or the user lost interest). */
  Follower.prototype.close = function () {
    this.finished = true;
    this._stop();
    this._setMode("closed");
  };

  /** Drop the connection and open a new one that resumes after the last event id. */
  Follower.prototype.reconnect = function () {
    if (this.finished) return;
    this._stop();
    this._connect();
  };

  function follow(url, options) {
    return new Follower(url, options);
  }

  function setText(root, selector, text) {
    root.querySelectorAll(selector).forEach(function (el) { el.textContent = text; });
  }

  function setPercent(root, percent) {
    if (percent === null || percent === undefined || isNaN(percent)) return;
    var value = Math.max(0, Math.min(100, Number(percent)));
    root.querySelectorAll("[data-tasktrail-bar]").forEach(function (el) {
      if ("value" in el && el.tagName === "PROGRESS") {
        el.max = 100;
        el.value = value;
      } else {
        el.style.width = value + "%";
      }
      el.setAttribute("aria-valuenow", String(value));
    });
    setText(root, "[data-tasktrail-percent]", Math.round(value) + "%");
    root.dataset.tasktrailValue = String(value);
  }

  function formatTime(ts) {
    var date = ts ? new Date(ts * 1000) : new Date();
    return date.toLocaleTimeString();
  }

  /**
   * Follow ``url`` and render into ``root``: [data-tasktrail-status],
   * [data-tasktrail-bar] (a <progress> or any element whose width is set),
   * [data-tasktrail-percent], [data-tasktrail-message], [data-tasktrail-feed]
   * (a list), [data-tasktrail-result], [data-tasktrail-runs] (a list, one item
   * per run: useful on subject streams). Extra handlers in ``options`` run too.
   *
   * ``options.members`` (a list of run ids, e.g. a group's ``run_ids``) follows a
   * group on a subject stream: the bar shows finished members / members, a
   * member's own progress does not move it, and the follower ends once every
   * member has finished (status SUCCESSFUL, or FAILED if any member did not succeed).
   */
  function attach(root, url, options) {
    options = options || {};
    var runs = {};
    var members = null;
    if (options.members && options.members.length) {
      members = {};
      options.members.forEach(function (id) { members[String(id)] = "READY"; });
    }
    var renderGroup = function (follower) {
      var ids = Object.keys(members), done = 0, failed = 0, started = false;
      ids.forEach(function (id) {
        var status = members[id];
        if (FINISHED[status]) {
          done += 1;
          if (status !== "SUCCESSFUL") failed += 1;
        }
        if (status !== "READY") started = true;
      });
      var status = done === ids.length ? (failed ? "FAILED" : "SUCCESSFUL") : (started ? "RUNNING" : "READY");
      root.dataset.tasktrailState = status;
      setText(root, "[data-tasktrail-status]", status);
      setPercent(root, (100 * done) / ids.length);
      setText(root, "[data-tasktrail-message]", done + " of " + ids.length + " done" + (failed ? ", " + failed + " failed" : ""));
      if (done === ids.length && !follower.finished) {
        follower._end({ status: status, members: Object.assign({}, members), polled: false });
      }
    };
    var renderRun = function (data) {
      var list = root.querySelector("[data-tasktrail-runs]");
      var id = data.run || data.id;
      if (!list || !id) return;
      var item = runs[id];
      if (!item) {
        item = runs[id] = global.document.createElement("li");
        item.dataset.run = id;
        list.appendChild(item);
      }
      if (data.task) item.dataset.task = data.task;
      item.dataset.status = data.status || item.dataset.status || "";
      item.textContent = (item.dataset.task || id.slice(0, 8)) + ": " + item.dataset.status;
    };
    var handlers = {
      subject: options.subject,
      replay: options.replay,
      statusUrl: options.statusUrl,
      pollInterval: options.pollInterval,
      lastEventId: options.lastEventId,
      onModeChange: function (mode) {
        root.dataset.tasktrailMode = mode;
        if (options.onModeChange) options.onModeChange.call(this, mode);
      },
      onState: function (data) {
        if (members && !data.polled) {  // a group member's state (polling shows the group's own)
          var member = data.run || data.id;
          if (member in members) {
            if (data.status) members[member] = data.status;
            renderRun(data);
            renderGroup(this);
          }
          if (options.onState) options.onState.call(this, data);
          return;
        }
        root.dataset.tasktrailState = data.status;
        setText(root, "[data-tasktrail-status]", data.status);
        if (data.progress) {
          setPercent(root, data.progress.percent);
          if (data.progress.message) setText(root, "[data-tasktrail-message]", data.progress.message);
        }
        if (data.status === "SUCCESSFUL" && !this.subject) setPercent(root, 100);
        if (data.error && data.error.message) setText(root, "[data-tasktrail-message]", data.error.type.split(".").pop() + ": " + data.error.message);
        renderRun(data);
        if (options.onState) options.onState.call(this, data);
      },
      onProgress: function (data) {
        if (!members || data.polled) {
          setPercent(root, data.percent);
          if (data.message) setText(root, "[data-tasktrail-message]", data.message);
        }
        if (options.onProgress) options.onProgress.call(this, data);
      },
      onFeed: function (data) {
        var list = root.querySelector("[data-tasktrail-feed]");
        if (list) {
          var item = global.document.createElement("li");
          item.className = "tasktrail-feed tasktrail-feed-" + data.level;
          item.dataset.level = data.level;
          var time = global.document.createElement("time");
          time.textContent = formatTime(data.ts);
          item.appendChild(time);
          item.appendChild(global.document.createTextNode(" " + data.message));
          list.appendChild(item);
          list.scrollTop = list.scrollHeight;
        }
        if (options.onFeed) options.onFeed.call(this, data);
      },
      onResult: function (data) {
        var target = members && !data.polled ? null : root.querySelector("[data-tasktrail-result]");
        if (target) {
          target.textContent = JSON.stringify(data.result, null, 2);
          var result = data.result;
          if (result && typeof result === "object" && typeof result.file_url === "string") {
            var link = global.document.createElement("a");
            link.href = result.file_url;
            link.textContent = "Download";
            link.setAttribute("data-tasktrail-download", "");
            target.appendChild(global.document.createElement("br"));
            target.appendChild(link);
          }
        }
        if (options.onResult) options.onResult.call(this, data);
      },
      onEnd: function (run) {
        root.dataset.tasktrailEnded = "true";
        if (options.onEnd) options.onEnd.call(this, run);
      },
      onError: function (error) {
        setText(root, "[data-tasktrail-message]", String(error.message || error));
        if (options.onError) options.onError.call(this, error);
      },
      onEvent: options.onEvent,
    };
    root.hidden = false;
    return follow(url, handlers);
  }

  global.TaskTrail = { follow: follow, attach: attach, compareIds: compareIds, version: "0.1.0" };
})(typeof window !== "undefined" ? window : this);
