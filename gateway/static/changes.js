// What an import may do and did, and taking it back: the import modes on the preview (their titles and
// choices read from the API document, never copied here), Cancel while a job runs, and on a finished
// import "What changed" (GET /jobs/{id}/changes, downloadable) and "Undo this import" (POST
// /jobs/{id}/revert: a confirmation with the numbers, then the revert's progress and its conflicts).

import { ApiError, download, followEvents, getJSON, sendJSON } from "./api.js";
import { $, breakable, busy, count, el, fmt, fmtBytes, showError, toast } from "./dom.js";

// -- the import modes on the preview ----------------------------------------------------------------

let optionSchemas = null; // the promise of StartOptions' properties that carry x-choices

/** The import options with choices, as the API document declares them: [[name, property], ...]. */
function modeOptions() {
  optionSchemas ??= getJSON("openapi.json")
    .then((doc) => Object.entries(doc.components.schemas.StartOptions.properties).filter(([, p]) => p["x-choices"]))
    .catch((error) => {
      optionSchemas = null; // try again with the next preview
      throw error;
    });
  return optionSchemas;
}

const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/**
 * Show the mode choices under the preview (what was chosen stays across sheet and header changes).
 * `match_on` is offered only for a file with an `id` column (an export's): the only files it fits.
 */
export async function renderModes(preview) {
  const box = $("import-modes");
  const chosen = chosenModes();
  let options;
  try {
    options = await modeOptions();
  } catch {
    box.hidden = true; // the import still runs with the defaults
    return;
  }
  const hasId = preview.columns.some((c) => String(c.header ?? "").trim().toLowerCase() === "id");
  const shown = options.filter(([name]) => name !== "match_on" || hasId);
  $("import-mode-fields").replaceChildren(
    ...shown.map(([name, property]) => {
      const id = `option-${name}`;
      const choices = property["x-choices"];
      const select = el(
        "select",
        { id, name, dataset: { option: name }, "aria-describedby": `${id}-hint` },
        Object.entries(choices).map(([value, choice]) =>
          el("option", { value, text: `${choice.label}${value === property.default ? " (default)" : ""}` }),
        ),
      );
      select.value = chosen[name] ?? property.default;
      const hint = el("p", { className: "hint", id: `${id}-hint` });
      const explain = () => (hint.textContent = `${capital(choices[select.value]?.description ?? "")}.`);
      select.addEventListener("change", explain);
      explain();
      return el("div", { className: `option mode-option ${name}` }, el("label", { for: id, text: property.title || name }), select, hint);
    }),
  );
  box.hidden = shown.length === 0;
}

/** The modes chosen on the preview: {mode, blank_cells[, match_on]} (empty before the choices load). */
export function chosenModes() {
  const out = {};
  for (const select of document.querySelectorAll("#import-mode-fields select")) out[select.name] = select.value;
  return out;
}

// -- cancel while a job runs ------------------------------------------------------------------------

const UNDER_WAY = new Set(["queued", "running"]);
let shownJob = null;

/** The Cancel button follows the job shown: there while it is queued or running. */
export function showCancel(doc) {
  shownJob = doc;
  $("job-cancel").hidden = !UNDER_WAY.has(doc.status) || Boolean(doc.cancel_requested);
}

async function cancelJob() {
  if (!shownJob) return;
  const { job_id: id } = shownJob;
  showError("cancel-error", "");
  try {
    const doc = await busy($("job-cancel"), () => sendJSON("POST", `jobs/${id}/cancel`, undefined));
    $("job-cancel").hidden = true;
    $("job-state").textContent =
      doc?.status === "cancelled" ? "Cancelled." : "Cancelling: the import stops after the batch it is writing…";
    toast("The import is being cancelled: what it already wrote stays, and can be undone.");
  } catch (error) {
    // 409: it ended meanwhile; its final state is on its way through the event stream.
    showError("cancel-error", error instanceof ApiError && error.status === 409 ? "The import had already ended." : error.message);
  }
}

// -- what a finished import changed -------------------------------------------------------------------

const CHANGES_PAGE = 20;
let outcomeJob = null; // the finished import shown
let changesCursor = null;
let outcomeRequest = 0;
let undoController = null;

const ACTION_TEXT = { inserted: "Added", updated: "Changed", deleted: "Deleted", restored: "Restored" };

/** Hide the outcome (another job is shown, or this one is still running). */
export function clearOutcome() {
  outcomeRequest++;
  undoController?.abort();
  undoController = null;
  outcomeJob = null;
  $("job-outcome").hidden = true;
}

/**
 * The outcome of a finished import: what it changed and the way to undo it. A dry run wrote nothing; a
 * failed import may have written batches, which are listed too (and it can be undone once it ended).
 */
export function renderOutcome(doc) {
  clearOutcome();
  $("job-cancel").hidden = true;
  const ended = doc.status === "completed" || doc.status === "cancelled" || doc.status === "failed";
  if (!ended || doc.dry_run || doc.status === "uploaded") return;
  outcomeJob = doc;
  $("job-outcome").hidden = false;
  $("job-outcome").dataset.job = doc.job_id;
  const isImport = (doc.kind ?? "import") !== "revert";
  $("changes-title").textContent = isImport ? "What changed" : "What the undo changed";
  $("changes-body").replaceChildren();
  changesCursor = null;
  loadChanges(true);
  renderUndo(doc, isImport);
}

function changeList(changes) {
  const entries = Object.entries(changes || {});
  if (!entries.length) return el("span", { className: "muted", text: "no field changed" });
  return el(
    "ul",
    { className: "change-list" },
    entries.map(([field, [before, after]]) => el("li", {}, el("span", { className: "field-name", text: field }), " ", change(before, after))),
  );
}

/** A field's change: the new value alone when it was empty before, else before (struck) → after. */
export function change(before, after) {
  if (before === null || before === undefined || before === "") return el("span", { className: "after", text: shown(after) });
  return [el("span", { className: "before", text: shown(before) }), " → ", el("span", { className: "after", text: shown(after) })];
}

function shown(value) {
  if (value === null || value === undefined || value === "") return "(empty)";
  return typeof value === "string" ? value : JSON.stringify(value);
}

async function loadChanges(first = false) {
  if (!outcomeJob) return;
  const ticket = outcomeRequest;
  const id = outcomeJob.job_id;
  showError("changes-error", "");
  $("changes-state").textContent = first ? "Loading the changes…" : "";
  try {
    const page = await busy($("changes-more"), () =>
      getJSON(`jobs/${id}/changes`, { query: { limit: CHANGES_PAGE, cursor: changesCursor } }),
    );
    if (ticket !== outcomeRequest) return;
    changesCursor = page.next_cursor;
    $("changes-body").append(
      ...page.items.map((item) =>
        el(
          "tr",
          { dataset: { customer: String(item.customer_id), action: item.action } },
          el("td", { className: "who" }, el("span", { className: "cell-label", text: "Customer" }), breakable(item.email ?? `#${item.customer_id}`), el("span", { className: "muted", text: ` #${item.customer_id}` })),
          el("td", { className: "action" }, el("span", { className: `status ${item.action}`, text: ACTION_TEXT[item.action] || item.action })),
          el("td", { className: "what" }, changeList(item.changes)),
        ),
      ),
    );
    const rows = $("changes-body").children.length;
    $("changes-state").textContent = rows
      ? `${count(rows, "customer")} shown${changesCursor ? "; more below" : ""}.`
      : "Nothing changed: every row was unchanged, skipped or invalid.";
    $("changes-more").hidden = !changesCursor;
    $("changes-csv").hidden = rows === 0;
  } catch (error) {
    if (ticket !== outcomeRequest) return;
    $("changes-state").textContent = "";
    showError("changes-error", error.message);
  }
}

async function downloadChanges() {
  if (!outcomeJob) return;
  const id = outcomeJob.job_id;
  showError("changes-error", "");
  try {
    const got = await busy($("changes-csv"), () => download(`jobs/${id}/changes`, { format: "csv" }, `job-${id}-changes.csv`));
    toast(`Downloaded ${got.name} (${fmtBytes(got.size)}).`);
  } catch (error) {
    showError("changes-error", error.message);
  }
}

// -- undo ---------------------------------------------------------------------------------------------

let openJob = () => {};

function renderUndo(doc, isImport) {
  const section = $("job-undo");
  section.hidden = !isImport;
  $("undo-confirm").hidden = true;
  $("undo-progress").hidden = true;
  $("undo-force").checked = false;
  showError("undo-error", "");
  const ask = $("undo-ask");
  if (doc.reverted_by) {
    ask.hidden = true;
    $("undo-hint").replaceChildren(
      "This import was undone (or is being undone) by another job. ",
      el("button", { type: "button", className: "link", text: "Open the undo", on: { click: () => openJob(doc.reverted_by) } }),
    );
    return;
  }
  ask.hidden = doc.status === "failed";
  $("undo-hint").textContent =
    doc.status === "failed"
      ? "A failed import cannot be undone here."
      : "Deletes the customers this import added and gives the ones it changed their earlier values back. Customers changed since are left as they are, and listed.";
}

/** How many customers the undo would delete and restore: from the changes (every page, or the first ones). */
async function undoNumbers(id) {
  let cursor = null;
  let added = 0;
  let changed = 0;
  for (let pages = 0; pages < 20; pages++) {
    const page = await getJSON(`jobs/${id}/changes`, { query: { limit: 1000, cursor } });
    for (const item of page.items) {
      if (item.action === "inserted") added++;
      else if (item.action === "updated") changed++;
    }
    cursor = page.next_cursor;
    if (!cursor) return { added, changed, exact: true };
  }
  return { added, changed, exact: false };
}

async function askUndo() {
  if (!outcomeJob) return;
  showError("undo-error", "");
  try {
    const { added, changed, exact } = await busy($("undo-ask"), () => undoNumbers(outcomeJob.job_id));
    const about = exact ? "" : "at least ";
    $("undo-question").textContent =
      `Undo this import? ${about}${count(added, "customer")} it added will be deleted and ` +
      `${about}${count(changed, "customer")} it changed will get their earlier values back.`;
    $("undo-confirm").hidden = false;
    $("undo-no").focus();
  } catch (error) {
    showError("undo-error", error.message);
  }
}

const UNDO_COUNTERS = [
  ["rows_deleted", "Deleted"],
  ["rows_restored", "Restored"],
  ["rows_invalid", "Left as they are"],
];

function renderUndoProgress(doc) {
  const counters = $("undo-counters");
  counters.replaceChildren(
    ...UNDO_COUNTERS.map(([name, label]) =>
      el("div", { className: `counter ${name}` }, el("dt", { text: label }), el("dd", { dataset: { counter: name }, text: fmt(doc[name] ?? 0) })),
    ),
  );
  const bar = $("undo-bar");
  const percent = doc.progress?.percent;
  if (percent === null || percent === undefined) bar.removeAttribute("value");
  else bar.value = percent;
  const state = $("undo-state");
  state.dataset.status = doc.status;
  state.textContent =
    doc.status === "queued"
      ? "Waiting for a worker…"
      : doc.status === "running"
        ? "Undoing…"
        : doc.status === "completed"
          ? "Undone."
          : doc.status === "cancelled"
            ? "The undo was cancelled: what it did stays."
            : `The undo failed: ${doc.error || "see the job"}`;
}

async function confirmUndo() {
  if (!outcomeJob) return;
  const id = outcomeJob.job_id;
  const force = $("undo-force").checked;
  showError("undo-error", "");
  let revert;
  try {
    revert = await busy([$("undo-yes"), $("undo-no")], () => sendJSON("POST", `jobs/${id}/revert`, force ? { force: true } : {}));
  } catch (error) {
    showError("undo-error", error.message);
    return;
  }
  $("undo-confirm").hidden = true;
  $("undo-ask").hidden = true;
  $("undo-progress").hidden = false;
  $("undo-progress").dataset.job = revert.job_id;
  renderUndoProgress(revert);
  const ticket = outcomeRequest;
  const controller = new AbortController();
  undoController = controller;
  try {
    let doc = revert;
    if (UNDER_WAY.has(doc.status)) {
      await followEvents(`jobs/${revert.job_id}/events`, (_type, event) => renderUndoProgress(event), { signal: controller.signal });
    }
    doc = await getJSON(`jobs/${revert.job_id}`, { signal: controller.signal });
    if (ticket !== outcomeRequest) return;
    renderUndoProgress(doc);
    await renderConflicts(doc);
  } catch (error) {
    if (error.name === "AbortError") return;
    showError("undo-error", error.message);
  }
}

async function renderConflicts(doc) {
  if (!(doc.rows_invalid > 0)) return;
  const page = await getJSON(`jobs/${doc.job_id}/errors`, { query: { limit: 100 } });
  $("undo-conflicts-body").replaceChildren(
    ...page.items.map((e) =>
      el("tr", {}, el("td", { className: "num", text: String(e.row) }), el("td", { className: "problem", text: e.message })),
    ),
  );
  $("undo-conflicts-title").textContent = `Left as they are: ${count(doc.rows_invalid, "customer")} changed since the import`;
  $("undo-conflicts").hidden = false;
}

// -- wiring ---------------------------------------------------------------------------------------------

export function initChanges({ open }) {
  openJob = open;
  $("job-cancel").addEventListener("click", cancelJob);
  $("changes-more").addEventListener("click", () => loadChanges(false));
  $("changes-csv").addEventListener("click", downloadChanges);
  $("undo-ask").addEventListener("click", askUndo);
  $("undo-no").addEventListener("click", () => {
    $("undo-confirm").hidden = true;
    $("undo-ask").focus();
  });
  $("undo-yes").addEventListener("click", confirmUndo);
}

