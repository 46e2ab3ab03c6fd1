/* The findings table of report.html: filter, sort and search over the embedded findings,
   drawing only the rows in view. Text from the data is only ever set with textContent. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var findings = data.findings, columns = findings.columns, count = findings.count;
  var ROW_HEIGHT = 30, OVERSCAN = 12, PRINT_ROWS = 500;
  var severityRank = {};
  // Higher is more severe: data.severities lists the most severe first.
  data.severities.forEach(function (severity, i) { severityRank[severity] = data.severities.length - i; });

  // Control, bidi and separator characters shown as escapes, as the other reports do.
  var CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufffe\uffff]/g;
  function shown(value) {
    if (value === null || value === undefined) return "";
    return String(value).replace(CONTROL, function (c) {
      var code = c.charCodeAt(0).toString(16);
      return code.length <= 2 ? "\\x" + ("0" + code).slice(-2) : "\\u" + ("000" + code).slice(-4);
    });
  }

  function value(name, i) {
    if (name === "resource_id") {
      var parent = value("resource_parent", i), leaf = columns.resource_leaf[i];
      return leaf === null ? null : (parent || "") + leaf;
    }
    var column = columns[name];
    if (!column) return null;
    if (column.codes) {
      var code = column.codes[i];
      return code < 0 ? null : column.values[code];
    }
    return column[i];
  }
  function exempted(i) { return columns.exempted[i] === 1; }
  function state(i) {
    var status = value("status", i);
    return (exempted(i) ? "exempted" : "open") + (status ? ", " + status : "");
  }
  function money(amount) {
    return amount === null || amount === undefined ? "" :
      amount.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  }

  // Sort keys: coded columns by the rank of their value, severity most severe first.
  function codeRanks(name) {
    var column = columns[name], order = column.values.map(function (v, i) { return i; });
    order.sort(function (a, b) {
      if (name === "severity") return severityRank[column.values[a]] - severityRank[column.values[b]];
      return column.values[a] < column.values[b] ? -1 : column.values[a] > column.values[b] ? 1 : 0;
    });
    var ranks = new Int32Array(column.values.length);
    order.forEach(function (code, rank) { ranks[code] = rank; });
    return ranks;
  }
  function sortKey(name) {
    if (name === "state") {
      return function (i) { return (exempted(i) ? 2 : 0) + (value("status", i) === "new" ? 0 : 1); };
    }
    var column = columns[name];
    if (!column) return function () { return 0; };
    if (column.codes) {
      var ranks = codeRanks(name);
      return function (i) { return column.codes[i] < 0 ? -1 : ranks[column.codes[i]]; };
    }
    return function (i) { return column[i] === null ? "" : column[i]; };
  }

  var viewport = document.getElementById("viewport");
  var body = document.getElementById("rows");
  var countLabel = document.getElementById("shown-count");
  var detail = document.getElementById("detail");
  var filters = {
    severity: document.getElementById("filter-severity"),
    rule: document.getElementById("filter-rule"),
    exempted: document.getElementById("filter-exempted"),
    status: document.getElementById("filter-status"),
    text: document.getElementById("filter-text")
  };
  var sortColumn = "severity", sortDescending = true;
  var view = new Int32Array(0), haystack = null, selected = -1, printing = false;

  function searchable() {
    if (!haystack) {
      haystack = new Array(count);
      for (var i = 0; i < count; i++) {
        haystack[i] = [value("resource_name", i), value("message", i), value("resource_id", i),
                       value("rule_id", i), value("resource_group", i)].join("\n").toLowerCase();
      }
    }
    return haystack;
  }

  function codeOf(name, wanted) {
    return wanted ? columns[name].values.indexOf(wanted) : null;
  }

  function applyFilters() {
    var severity = codeOf("severity", filters.severity.value);
    var rule = codeOf("rule_id", filters.rule.value);
    var which = filters.exempted.value;
    var status = filters.status && columns.status ? codeOf("status", filters.status.value) : null;
    var text = filters.text.value.trim().toLowerCase();
    var texts = text ? searchable() : null;
    var kept = new Int32Array(count), n = 0;
    for (var i = 0; i < count; i++) {
      if (severity !== null && columns.severity.codes[i] !== severity) continue;
      if (rule !== null && columns.rule_id.codes[i] !== rule) continue;
      if (which === "open" && exempted(i)) continue;
      if (which === "exempted" && !exempted(i)) continue;
      if (status !== null && columns.status.codes[i] !== status) continue;
      if (texts && texts[i].indexOf(text) < 0) continue;
      kept[n++] = i;
    }
    view = kept.slice(0, n);
    applySort();
  }

  function applySort() {
    var key = sortKey(sortColumn), keys = new Array(count);
    for (var j = 0; j < view.length; j++) keys[view[j]] = key(view[j]);
    var direction = sortDescending ? -1 : 1;
    var severityKey = sortKey("severity");
    var ordered = Array.prototype.slice.call(view);
    ordered.sort(function (a, b) {
      var x = keys[a], y = keys[b];
      if (x < y) return -direction;
      if (x > y) return direction;
      var s = severityKey(b) - severityKey(a);  // ties: most severe first, then as written
      return s !== 0 ? s : a - b;
    });
    view = Int32Array.from(ordered);
    document.querySelectorAll("#findings-table th").forEach(function (th) {
      if (th.dataset.column === sortColumn) th.setAttribute("aria-sort", sortDescending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
    var total = count.toLocaleString("en-US");
    countLabel.textContent = view.length === count ? total + " findings" :
      view.length.toLocaleString("en-US") + " of " + total + " findings";
    viewport.scrollTop = 0;
    render(true);
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    td.title = text;
    row.appendChild(td);
    return td;
  }

  function findingRow(i) {
    var row = document.createElement("tr");
    row.className = "row" + (exempted(i) ? " exempted" : "") + (i === selected ? " selected" : "");
    row.dataset.index = String(i);
    row.tabIndex = 0;
    var severity = value("severity", i) || "";
    var first = document.createElement("td");
    var badge = document.createElement("span");
    badge.className = "sev-badge " + (severityRank[severity] === undefined ? "" : severity);
    badge.textContent = severity;
    first.appendChild(badge);
    row.appendChild(first);
    cell(row, value("rule_id", i) || "", "mono id");
    cell(row, shown(value("resource_name", i)));
    cell(row, shown(value("message", i)));
    cell(row, shown(value("resource_group", i)));
    cell(row, money(value("monthly_cost", i)), "num");
    var last = document.createElement("td");
    var tag = document.createElement("span");
    var status = value("status", i);
    tag.className = "tag" + (status === "new" && !exempted(i) ? " new" : "");
    tag.textContent = state(i);
    last.appendChild(tag);
    row.appendChild(last);
    return row;
  }

  function spacer(height) {
    var row = document.createElement("tr"), td = document.createElement("td");
    row.className = "spacer";
    td.colSpan = 7;
    td.style.height = height + "px";
    row.appendChild(td);
    return row;
  }

  var drawn = "";
  function render(force) {
    var first = 0, last = view.length;
    if (!printing) {
      // The viewport grows with its rows up to 62% of the window: draw a window's worth.
      var height = Math.max(viewport.clientHeight, window.innerHeight);
      first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
      last = Math.min(view.length, Math.ceil((viewport.scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
    } else {
      last = Math.min(view.length, PRINT_ROWS);
    }
    var range = first + ":" + last + ":" + printing;
    if (!force && range === drawn) return;  // a scroll within the margin: nothing to draw
    drawn = range;
    var focused = document.activeElement && document.activeElement.closest ?
      document.activeElement.closest("#rows tr.row") : null;
    var fragment = document.createDocumentFragment();
    if (!printing) fragment.appendChild(spacer(first * ROW_HEIGHT));
    for (var j = first; j < last; j++) fragment.appendChild(findingRow(view[j]));
    if (!printing) fragment.appendChild(spacer((view.length - last) * ROW_HEIGHT));
    body.replaceChildren(fragment);
    if (focused) {  // keep the keyboard's place when the rows are drawn again
      var again = body.querySelector('tr.row[data-index="' + focused.dataset.index + '"]');
      if (again) again.focus({preventScroll: true});
    }
  }

  function showDetail(i) {
    selected = i;
    var list = document.createElement("dl");
    function item(label, text, className) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = label;
      if (className) dd.className = className;
      dd.textContent = text;
      list.appendChild(dt);
      list.appendChild(dd);
      return dd;
    }
    item("Rule", (value("rule_id", i) || "") + ": " + (value("title", i) || ""));
    item("Severity", value("severity", i) || "");
    item("State", state(i));
    if (exempted(i)) item("Exemption reason", shown(value("exemption_reason", i)));
    item("Resource", shown(value("resource_name", i)));
    item("Message", shown(value("message", i)));
    item("Remediation", value("remediation", i) || "");
    item("Resource id", shown(value("resource_id", i)), "mono");
    item("Resource type", shown(value("resource_type", i)));
    item("Subscription", shown(value("subscription_id", i)), "mono");
    item("Resource group", shown(value("resource_group", i)));
    item("Location", shown(value("location", i)));
    if (value("monthly_cost", i) !== null) item("Monthly cost", money(value("monthly_cost", i)));
    var pre = document.createElement("pre");
    pre.id = "detail-evidence";
    pre.textContent = "(unpacking)";
    item("Evidence", "").appendChild(pre);
    loadEvidence().then(function (all) {
      var pretty = all[i];
      try { pretty = JSON.stringify(JSON.parse(all[i]), null, 2); } catch (e) { /* as it is */ }
      if (selected === i) pre.textContent = String(pretty || "").split("\n").map(shown).join("\n");
    }, function (error) {
      pre.textContent = "Evidence cannot be unpacked in this browser (" + error + "); it is in findings.json.";
    });
    detail.replaceChildren(list);
    detail.hidden = false;
    body.querySelectorAll("tr.row").forEach(function (row) {
      row.classList.toggle("selected", Number(row.dataset.index) === i);
    });
  }

  // Evidence: gzipped JSON in base64, unpacked with the browser's DecompressionStream the
  // first time a finding is opened (no network: a Blob read through a Response).
  var evidence = null;
  function loadEvidence() {
    if (!evidence) {
      var packed = atob(document.getElementById("evidence-data").textContent.trim());
      var bytes = new Uint8Array(packed.length);
      for (var k = 0; k < packed.length; k++) bytes[k] = packed.charCodeAt(k);
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      evidence = new Response(stream).text().then(JSON.parse);
    }
    return evidence;
  }

  var pending = null;
  function later(fn) {
    clearTimeout(pending);
    pending = setTimeout(fn, 150);
  }
  ["severity", "rule", "exempted", "status"].forEach(function (name) {
    if (filters[name]) filters[name].addEventListener("change", applyFilters);
  });
  filters.text.addEventListener("input", function () { later(applyFilters); });
  function redraw() { window.requestAnimationFrame(function () { render(false); }); }
  viewport.addEventListener("scroll", redraw);
  window.addEventListener("resize", redraw);
  body.addEventListener("click", function (event) {
    var row = event.target.closest("tr.row");
    if (row) showDetail(Number(row.dataset.index));
  });
  body.addEventListener("keydown", function (event) {
    var row = event.target.closest("tr.row");
    if (row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      showDetail(Number(row.dataset.index));
    }
  });
  document.querySelectorAll("#findings-table th button").forEach(function (button) {
    button.addEventListener("click", function () {
      var name = button.parentElement.dataset.column;
      sortDescending = name === sortColumn ? !sortDescending :
        (name === "severity" || name === "monthly_cost");
      sortColumn = name;
      applySort();
    });
  });
  // Printing: the first rows of the current view, drawn in full, and a note of how many.
  window.addEventListener("beforeprint", function () {
    printing = true;
    render(true);
    document.getElementById("print-note").textContent = view.length > PRINT_ROWS ?
      "The first " + PRINT_ROWS + " of " + view.length + " findings in this view are printed; " +
      "every finding is in findings.csv, findings.json and image-audit.xlsx." : "";
  });
  window.addEventListener("afterprint", function () { printing = false; render(true); });
  applyFilters();
})();
