// Gatehouse reviewer pages: keyboard review (j/k select, a approve, d deny, c comment),
// confirmations on dangerous forms, and the terminal replay player. Everything works without it.
(function () {
  "use strict";

  var selectedId = null;

  function reviewRows() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-review-row]"));
  }

  function keyboardEnabled() {
    return document.querySelector("[data-keyboard-reviews]") !== null;
  }

  function select(row) {
    reviewRows().forEach(function (each) {
      each.classList.toggle("selected", each === row);
      each.setAttribute("aria-selected", each === row ? "true" : "false");
    });
    selectedId = row ? row.getAttribute("data-review-row") : null;
    if (row) {
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function selectedRow() {
    var rows = reviewRows();
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-review-row") === selectedId) {
        return rows[i];
      }
    }
    return null;
  }

  function move(step) {
    var rows = reviewRows();
    if (!rows.length) {
      return;
    }
    var index = rows.indexOf(selectedRow());
    var next = index < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, index + step));
    select(rows[next]);
  }

  // A row's decision is sent with htmx.ajax rather than a click on its button: the live feed may replace
  // the row (and its button) at any moment, and htmx drops a request whose element has left the page.
  function decide(decision) {
    var scope = selectedRow() || document.querySelector("[data-review-form]");
    var button = scope && scope.querySelector('[data-decision="' + decision + '"]');
    if (!button || button.disabled) {
      return;
    }
    var url = button.getAttribute("hx-post");
    if (!url || !window.htmx) {
      button.click(); // the review page's own form
      return;
    }
    var comment = document.querySelector("[data-review-comment]");
    window.htmx.ajax("POST", url, {
      target: "#pending-reviews",
      swap: "outerHTML",
      values: { decision: decision, comment: comment ? comment.value : "" },
    }).then(function () {
      if (comment) {
        comment.value = "";
      }
    });
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (!keyboardEnabled() || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") {
        event.target.blur();
      }
      return;
    }
    var actions = {
      j: function () { move(1); },
      k: function () { move(-1); },
      a: function () { decide("approve"); },
      d: function () { decide("deny"); },
      c: function () {
        var comment = document.querySelector("[data-review-comment]");
        if (comment) {
          comment.focus();
        }
      },
    };
    var action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // Clicking a row selects it, so the mouse and the keyboard agree.
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("[data-review-row]");
    if (row && keyboardEnabled()) {
      select(row);
    }
  });

  // A form that ends something asks first.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // The live fragments are replaced on every feed event: keep the selection on the same review.
  function reselect() {
    var row = selectedRow();
    if (row) {
      row.classList.add("selected");
      row.setAttribute("aria-selected", "true");
    }
  }
  document.addEventListener("htmx:afterSettle", reselect);

  // A comment goes with one decision only.
  document.addEventListener("htmx:afterRequest", function (event) {
    var comment = document.querySelector("[data-review-comment]");
    if (comment && event.detail.successful && event.detail.elt.hasAttribute("data-decision")) {
      comment.value = "";
    }
  });
  document.addEventListener("htmx:oobAfterSwap", reselect);

  // Live watch keeps the newest rows only: a busy session must not grow the page (and its layout) without bound.
  var LIVE_ROWS_KEPT = 200;
  document.addEventListener("htmx:oobAfterSwap", function () {
    var body = document.getElementById("live-events");
    while (body && body.rows.length > LIVE_ROWS_KEPT) {
      body.deleteRow(0);
    }
  });

  function startPlayers() {
    if (!window.AsciinemaPlayer) {
      return;
    }
    document.querySelectorAll("[data-cast-src]").forEach(function (element) {
      window.AsciinemaPlayer.create(element.getAttribute("data-cast-src"), element, { fit: "width", idleTimeLimit: 2 });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startPlayers);
  } else {
    startPlayers();
  }
})();
