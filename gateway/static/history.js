// The customer editor's History tab: every change of the customer, newest first (GET
// /customers/{id}/history): when, what, who (the API key's name), from where (an import, the API, an
// undo, a bulk delete) and each field's value before and after.

import { getJSON } from "./api.js";
import { change } from "./changes.js";
import { $, busy, el, fmtDate, showError } from "./dom.js";

const PAGE = 20;
const ACTION_TEXT = { created: "Created", updated: "Changed", deleted: "Deleted", restored: "Restored" };
const SOURCE_TEXT = { import: "an import", api: "an edit", revert: "an undo", delete: "a bulk delete" };

let customerId = null;
let cursor = null;
let ticket = 0;
let openJob = () => {};

function entry(item) {
  const source = item.source || {};
  const via = SOURCE_TEXT[source.kind] || source.kind || "";
  const origin = source.job_id
    ? el("button", { type: "button", className: "link", text: `job ${source.job_id.slice(0, 8)}`, "aria-label": `Open job ${source.job_id}`, on: { click: () => openJob(source.job_id) } })
    : null;
  const changes = Object.entries(item.changes || {});
  return el(
    "li",
    { className: `history-entry ${item.action}`, dataset: { action: item.action } },
    el(
      "p",
      { className: "history-head" },
      el("span", { className: `status ${item.action}`, text: ACTION_TEXT[item.action] || item.action }),
      " ",
      el("time", { dateTime: item.at, text: fmtDate(item.at) }),
      el("span", { className: "muted", text: ` by ${item.by || "(no key)"} through ${via}` }),
      origin ? " " : null,
      origin,
    ),
    changes.length
      ? el(
          "ul",
          { className: "change-list" },
          changes.map(([field, [before, after]]) =>
            el("li", {}, el("span", { className: "field-name", text: field }), " ", change(before, after)),
          ),
        )
      : null,
  );
}

async function loadMore(first) {
  if (customerId === null) return;
  const mine = ++ticket;
  showError("history-error", "");
  if (first) $("history-state").textContent = "Loading the history…";
  try {
    const page = await busy($("history-more"), () =>
      getJSON(`customers/${customerId}/history`, { query: { limit: PAGE, cursor } }),
    );
    if (mine !== ticket) return;
    cursor = page.next_cursor;
    $("history-list").append(...page.items.map(entry));
    const shownCount = $("history-list").children.length;
    $("history-state").textContent = shownCount ? "" : "No change recorded for this customer.";
    $("history-more").hidden = !cursor;
  } catch (error) {
    if (mine !== ticket) return;
    $("history-state").textContent = "";
    showError("history-error", error.message);
  }
}

/** The tab shown: "details" or "history" (which loads the customer's history afresh). */
export function selectTab(name) {
  const history = name === "history";
  $("tab-details").setAttribute("aria-selected", String(!history));
  $("tab-history").setAttribute("aria-selected", String(history));
  $("tab-details").tabIndex = history ? -1 : 0;
  $("tab-history").tabIndex = history ? 0 : -1;
  $("customer-details").hidden = history;
  $("customer-history").hidden = !history;
  if (history) {
    cursor = null;
    $("history-list").replaceChildren();
    loadMore(true);
  }
}

/** The customer the dialog shows (null: a new one, which has no history yet). */
export function setHistoryCustomer(id) {
  customerId = id;
  ticket++;
  $("customer-tabs").hidden = id === null;
  selectTab("details");
}

export function initHistory({ open }) {
  openJob = open;
  $("tab-details").addEventListener("click", () => selectTab("details"));
  $("tab-history").addEventListener("click", () => selectTab("history"));
  // Arrow keys move between the two tabs (the tablist pattern).
  $("customer-tabs").addEventListener("keydown", (e) => {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const next = $("tab-history").getAttribute("aria-selected") === "true" ? "details" : "history";
    selectTab(next);
    $(`tab-${next}`).focus();
    e.preventDefault();
  });
  $("history-more").addEventListener("click", () => loadMore(false));
}
