// Importing a file: pick or drop it, check the preview and map its columns, start, watch the
// progress, read the summary. Also the list of recent imports, each of which opens its summary.

import { ApiError, download, followEvents, getJSON, request, sendJSON, upload } from "./api.js";
import { chosenModes, clearOutcome, initChanges, renderModes, renderOutcome, showCancel } from "./changes.js";
import { $, breakable, busy, count, el, fieldError, fmt, fmtBytes, fmtDate, fmtDuration, showError, toast } from "./dom.js";
// The fields, their labels and which need a column come from the service (GET /fields).
import { FIELDS, LABEL, REQUIRED } from "./fields.js";
// Mapping targets that are no field: one column holding the whole name, split into first and last name;
// and `attributes.<name>`, any other column kept on the customer under that name.
const FULL_NAME = "full_name";
const NAME_PARTS = ["first_name", "last_name"];
const ATTRIBUTE = "attributes.";
const KEEP = "(keep)"; // the select's value for "keep as attribute": named after the column when mapped
const targetLabel = (target) => (target?.startsWith(ATTRIBUTE) ? `attribute “${target.slice(ATTRIBUTE.length)}”` : LABEL[target] ?? target);
const COUNTERS = [
  ["rows_read", "Rows read"],
  ["rows_inserted", "Inserted"],
  ["rows_updated", "Updated"],
  ["rows_unchanged", "Unchanged"],
  ["rows_skipped", "Skipped"],
  ["rows_invalid", "Invalid"],
];

// The counters of a job in Recent imports (on a phone each is labelled in its card).
const JOB_COUNTERS = [
  ["rows_inserted", "Inserted"],
  ["rows_updated", "Updated"],
  ["rows_unchanged", "Unchanged"],
  ["rows_invalid", "Invalid"],
];

// An "uploaded" job is a preview nobody started (it expires by itself).
const STATUS_TEXT = { uploaded: "not started" };

let showView = () => {};

// -- the file and its preview --------------------------------------------------------------------

let file = null; // the File picked (uploaded once: other sheets or header rows are read from the stored copy)
let uploaded = null; // the preview shown: the job (status "uploaded") and its preview, until it is started
let assignment = new Map(); // column index -> field ("" or absent: ignored)
let manual = new Map(); // column index -> field the person chose by hand (kept across header-row changes)
let uploadController = null;

/**
 * The preview shown will not be started (another file, "Choose another file", leaving the page): delete
 * it, so it leaves no job behind (it would expire by itself, later). `leaving`: the request outlives the page.
 */
function discardPreview({ leaving = false } = {}) {
  const jobId = uploaded?.job_id;
  uploaded = null;
  if (!jobId) return;
  request(`jobs/${jobId}`, { method: "DELETE", keepalive: leaving }).catch(() => {});
}

function resetImport() {
  uploadController?.abort();
  stopWatching();
  discardPreview();
  file = null;
  assignment = new Map();
  manual = new Map();
  $("file-input").value = "";
  showError("file-error", "");
  $("upload-state").hidden = true;
  $("step-pick").hidden = false;
  $("step-preview").hidden = true;
  $("step-watch").hidden = true;
}

async function pickFile(picked) {
  if (!picked) return;
  showError("file-error", "");
  if (picked.size === 0) {
    showError("file-error", `${picked.name} is empty: choose the file that holds the customers.`);
    return;
  }
  file = picked;
  manual = new Map();
  await preview("file", {});
}

/**
 * Show what the service reads in the file: the first time, upload it with preview=true; when the sheet
 * or the header row changes, ask the service to read its stored copy again (POST /jobs/{id}/preview:
 * nothing is uploaded twice, no second job). `cause` says where an error belongs.
 */
async function preview(cause, { sheet, headerRow } = {}) {
  uploadController?.abort();
  const controller = new AbortController();
  uploadController = controller;
  const options = {};
  if (sheet !== undefined && sheet !== null) options.sheet = sheet;
  if (headerRow !== undefined && headerRow !== null) options.header_row = headerRow;

  const first = cause === "file";
  const state = $("upload-state");
  const bar = $("upload-progress");
  const controls = [$("file-input"), $("sheet-select"), $("header-row"), $("start-import"), $("preview-cancel")];
  if (first) {
    state.hidden = false;
    $("upload-text").textContent = `Sending ${file.name} (${fmtBytes(file.size)})…`;
    bar.value = 0;
  } else {
    $("preview-busy").hidden = false;
  }
  clearPreviewErrors();
  try {
    const answer = await busy(
      controls,
      () => (first ? uploadForPreview(controller.signal) : readAgain(uploaded.job_id, options, controller.signal)),
      $("step-preview"),
    );
    if (controller !== uploadController) return;
    if (first) discardPreview(); // a preview of another file, replaced by this one
    uploaded = answer;
    applySuggestions(cause === "header_row");
    renderPreview();
    $("step-pick").hidden = true;
    $("step-preview").hidden = false;
    if (first) $("preview-title").focus?.();
  } catch (error) {
    if (error.name === "AbortError") return;
    placePreviewError(cause, error);
  } finally {
    if (controller === uploadController) uploadController = null;
    state.hidden = true;
    $("preview-busy").hidden = true;
    updateStart();
  }
}

function uploadForPreview(signal) {
  const form = new FormData();
  form.append("file", file, file.name);
  const bar = $("upload-progress");
  return upload("upload", form, {
    query: { preview: "true" },
    signal,
    onProgress: (sent, total) => {
      if (!total) return;
      bar.value = Math.round((sent / total) * 100);
      if (sent >= total) $("upload-text").textContent = `Reading ${file.name}…`;
    },
  });
}

async function readAgain(jobId, options, signal) {
  try {
    return await sendJSON("POST", `jobs/${jobId}/preview`, options, { signal });
  } catch (error) {
    // Started elsewhere, or expired (PREVIEW_TTL_S): the stored copy is gone or no longer a preview.
    if (error instanceof ApiError && (error.status === 404 || error.status === 409)) {
      throw new ApiError(error.status, { detail: "This file is no longer kept for a preview: choose it again." });
    }
    throw error;
  }
}

function clearPreviewErrors() {
  fieldError($("sheet-select"), "sheet-error", "");
  fieldError($("header-row"), "header-row-error", "");
  showError("start-error", "");
  for (const [name] of FIELDS) showError(`field-error-${name}`, "");
}

function placePreviewError(cause, error) {
  const problem = error instanceof ApiError ? error.problem : { detail: String(error) };
  const placed = new Set();
  for (const { field, message } of error.fieldErrors || []) {
    if (field === "header_row") fieldError($("header-row"), "header-row-error", message), placed.add(field);
    else if (field === "sheet") fieldError($("sheet-select"), "sheet-error", message), placed.add(field);
  }
  // The preview shown is still the previous one: the worksheet list says which sheet it is.
  if (uploaded) $("sheet-select").value = uploaded.preview.sheet ?? "";
  if (cause === "file") showError("file-error", problem.detail);
  else if (cause === "sheet" && !placed.has("sheet")) fieldError($("sheet-select"), "sheet-error", problem.detail);
  else if (cause === "header_row" && !placed.has("header_row")) {
    fieldError($("header-row"), "header-row-error", problem.detail);
  }
}

function columnRef(column) {
  // The mapping names a column by its header text when the file has a header row, else by letter.
  const headerRow = uploaded.preview.header_row;
  return headerRow >= 1 && column.header ? column.header : column.letter;
}

function findColumn(ref) {
  const { columns, header_row: headerRow } = uploaded.preview;
  const text = String(ref);
  return (
    (headerRow >= 1 && columns.find((c) => c.header === text)) ||
    columns.find((c) => c.letter === text.toUpperCase()) ||
    columns.find((c) => String(c.index) === text) ||
    null
  );
}

/** The service's suggested mapping, then each column's own suggestion, then what was chosen by hand. */
function applySuggestions(keepManual) {
  const { columns, mapping } = uploaded.preview;
  assignment = new Map();
  const taken = new Set();
  for (const [field, ref] of Object.entries(mapping || {})) {
    // A field may come from several columns (joined in order), or from none (null: left out).
    for (const one of ref === null ? [] : Array.isArray(ref) ? ref : [ref]) {
      const column = findColumn(one);
      if (column && !assignment.has(column.index)) {
        assignment.set(column.index, field);
        taken.add(field);
      }
    }
    if (ref === null) taken.add(field);
  }
  for (const column of columns) {
    const field = column.suggested_field;
    if (field && !assignment.has(column.index) && !taken.has(field)) {
      assignment.set(column.index, field);
      taken.add(field);
    }
  }
  if (!keepManual) {
    manual = new Map();
    return;
  }
  for (const [index, field] of manual) {
    if (!columns.some((c) => c.index === index)) continue;
    if (field) for (const [other, f] of assignment) if (f === field) assignment.delete(other);
    assignment.set(index, field);
  }
}

function renderPreview() {
  const { preview: p, filename } = uploaded;
  const kind = p.kind === "csv" ? `CSV${p.encoding ? `, ${p.encoding}` : ""}` : "Excel workbook";
  const rows = p.rows_total_estimate === null || p.rows_total_estimate === undefined ? "" : ` · about ${count(p.rows_total_estimate, "row")}`;
  $("preview-file").textContent = `${filename} · ${kind} · ${fmtBytes(file.size)}${rows}`;

  const sheetSelect = $("sheet-select");
  $("sheet-option").hidden = p.sheets.length === 0;
  sheetSelect.replaceChildren(
    ...p.sheets.map((s) =>
      el("option", { value: s.name, text: s.hidden ? `${s.name} (hidden)` : s.name, selected: s.name === p.sheet }),
    ),
  );
  $("header-row").value = String(p.header_row);

  const container = $("columns");
  container.replaceChildren(...p.columns.map(columnCard));
  if (p.columns.length === 0) {
    container.replaceChildren(
      el("p", {
        className: "notice warn",
        text:
          p.header_row > 0
            ? `Nothing was found in row ${p.header_row} or below it. Enter the row that holds the column titles.`
            : "The file's first rows are empty.",
      }),
    );
  }
  renderRows();
  renderFieldStatus();
  renderModes(p);
}

function columnCard(column) {
  const id = `map-${column.letter}`;
  const select = el(
    "select",
    { id, dataset: { column: String(column.index) }, "aria-describedby": `${id}-samples ${id}-hint` },
    el("option", { value: "", text: "Ignore this column" }),
    FIELDS.map(([name, label]) => el("option", { value: name, text: label })),
    el("option", { value: FULL_NAME, text: "Full name (split into first and last)" }),
    el("option", { value: KEEP, text: `Keep as attribute “${attributeName(column)}”` }),
  );
  const assigned = assignment.get(column.index) || "";
  select.value = assigned.startsWith(ATTRIBUTE) ? KEEP : assigned;
  select.addEventListener("change", () =>
    choose(column.index, select.value === KEEP ? ATTRIBUTE + attributeName(column) : select.value),
  );
  const title = uploaded.preview.header_row >= 1 ? (column.header ? `“${column.header}”` : "(no title)") : "";
  const remembered = uploaded.preview.remembered;
  const hint = !column.suggested_field
    ? "No suggestion"
    : column.reason === "remembered" && remembered
      ? `${targetLabel(column.suggested_field)}: remembered from ${remembered.filename}, ${fmtDate(remembered.last_used)}`
      : `Suggested: ${targetLabel(column.suggested_field)} (${Math.round(column.confidence * 100)}% sure)`;
  return el(
    "div",
    { className: "column-card", dataset: { column: String(column.index) } },
    el("label", { for: id, className: "column-title" }, el("span", { className: "letter", text: column.letter }), " ", title || "Column " + column.letter),
    el(
      "ul",
      { className: "samples", id: `${id}-samples`, "aria-label": `Sample values of column ${column.letter}` },
      column.samples.length ? column.samples.slice(0, 4).map((v) => el("li", { text: v })) : el("li", { className: "muted", text: "(empty)" }),
    ),
    el("p", { className: "hint", id: `${id}-hint`, text: hint, title: hint }),
    select,
  );
}

/** The name a column is kept under as an attribute: its header text, else its letter. */
function attributeName(column) {
  const header = uploaded.preview.header_row >= 1 && column.header ? column.header : column.letter;
  return header.startsWith(ATTRIBUTE) ? header.slice(ATTRIBUTE.length) : header;
}

function choose(index, field) {
  const note = [];
  manual.set(index, field);
  if (field) {
    for (const [other, f] of assignment) {
      if (other !== index && f === field) {
        assignment.delete(other);
        manual.set(other, "");
        const previous = uploaded.preview.columns.find((c) => c.index === other);
        const select = document.querySelector(`select[data-column="${other}"]`);
        if (select) select.value = "";
        note.push(`${targetLabel(field)} now comes from column ${letterOf(index)} instead of ${previous ? previous.letter : other}.`);
      }
    }
    assignment.set(index, field);
  } else {
    assignment.delete(index);
  }
  $("mapping-note").textContent = note.join(" ");
  showError(`field-error-${field}`, "");
  showError("start-error", "");
  renderFieldStatus();
}

function letterOf(index) {
  return uploaded.preview.columns.find((c) => c.index === index)?.letter ?? String(index);
}

function mappedFields() {
  const out = new Map(); // field -> column
  for (const [index, field] of assignment) {
    if (field) out.set(field, uploaded.preview.columns.find((c) => c.index === index));
  }
  return out;
}

function renderFieldStatus() {
  const mapped = mappedFields();
  const errors = new Map([...document.querySelectorAll("#field-status .field-error")].map((n) => [n.id, n.textContent]));
  $("field-status").replaceChildren(
    ...FIELDS.map(([name, label]) => {
      const column = mapped.get(name);
      const errorId = `field-error-${name}`;
      return el(
        "li",
        { className: column ? "mapped" : REQUIRED.includes(name) ? "missing" : "optional", dataset: { field: name } },
        el("span", { className: "mark", "aria-hidden": "true", text: column ? "✓" : REQUIRED.includes(name) ? "!" : "–" }),
        el("span", { className: "field-name", text: label }),
        el(
          "span",
          {
            className: "field-source",
            text: column
              ? `column ${column.letter}`
              : NAME_PARTS.includes(name) && mapped.has(FULL_NAME)
                ? `from the full name (column ${mapped.get(FULL_NAME).letter})`
                : REQUIRED.includes(name)
                  ? "not mapped (required)"
                  : "not mapped (optional)",
          },
          column?.header && uploaded.preview.header_row >= 1 ? el("span", { className: "source-header", text: ` “${column.header}”` }) : null,
        ),
        el("span", { className: "field-error", id: errorId, role: "alert", text: errors.get(errorId) || "" }),
      );
    }),
  );
  for (const node of document.querySelectorAll("#field-status .field-error")) node.classList.toggle("shown", Boolean(node.textContent));
  updateStart();
}

function updateStart() {
  const button = $("start-import");
  if (!uploaded) {
    button.disabled = true;
    return;
  }
  const mapped = mappedFields();
  const missing = REQUIRED.filter((name) => !mapped.has(name));
  // A header row typed but not read yet (or refused): the columns shown are not that row's.
  const stale = $("header-row").value.trim() !== String(uploaded.preview.header_row);
  button.disabled = missing.length > 0 || stale || uploadController !== null;
  const fields = FIELDS.filter(([name]) => mapped.has(name)).length;
  $("start-help").textContent = stale
    ? `The columns shown are read with header row ${uploaded.preview.header_row}.`
    : missing.length
      ? `Map the ${missing.map((name) => LABEL[name]).join(", ")} column to start: every customer needs one.`
      : `${fields} of ${FIELDS.length} fields have a column; the others stay empty.`;
}

function renderRows() {
  const { columns, rows } = uploaded.preview;
  const head = el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Row" }), columns.map((c) => el("th", { scope: "col", text: c.letter }))));
  const body = el(
    "tbody",
    {},
    rows.map((r) => el("tr", {}, el("th", { scope: "row", text: String(r.row) }), r.values.map((v) => el("td", { text: v ?? "" })))),
  );
  $("preview-rows").replaceChildren(head, body);
}

async function start() {
  // Every field the person left without a column is sent as null: the service would otherwise fill it
  // from its own suggestions (a mapping is merged with them).
  const mapping = Object.fromEntries([...FIELDS.map(([name]) => [name, null]), [FULL_NAME, null]]);
  for (const [field, column] of mappedFields()) mapping[field] = columnRef(column);
  const { preview: p, job_id: jobId, filename } = uploaded;
  const body = { mapping, header_row: p.header_row, ...chosenModes() };
  if (p.sheet) body.sheet = p.sheet;
  clearPreviewErrors();
  renderFieldStatus();
  try {
    await busy([$("start-import"), $("preview-cancel"), $("sheet-select"), $("header-row")], () =>
      sendJSON("POST", `jobs/${jobId}/start`, body),
    );
  } catch (error) {
    placeStartError(error);
    updateStart();
    return;
  }
  uploaded = null; // started: no longer a preview to discard
  watch(jobId, filename);
}

function placeStartError(error) {
  const problem = error instanceof ApiError ? error.problem : { detail: String(error) };
  for (const { field, message } of error.fieldErrors || []) {
    const name = field?.startsWith("mapping.") ? field.slice("mapping.".length) : null;
    if (name && LABEL[name]) showError(`field-error-${name}`, message);
    else if (field === "header_row") fieldError($("header-row"), "header-row-error", message);
    else if (field === "sheet") fieldError($("sheet-select"), "sheet-error", message);
  }
  for (const name of problem.missing_columns || []) {
    if (LABEL[name] && !$(`field-error-${name}`).textContent) showError(`field-error-${name}`, "Not found in the file.");
  }
  showError("start-error", problem.detail);
}

// -- watching a job ------------------------------------------------------------------------------

let watchController = null;
let current = null; // the job shown
let samples = []; // [time ms, rows read] of the last events, for the rate

function stopWatching() {
  watchController?.abort();
  watchController = null;
}

/** Show a job: follow its events while it runs, then its summary. */
export async function watch(jobId, filename = "") {
  uploadController?.abort();
  stopWatching();
  discardPreview(); // another job opened over a preview: the preview is abandoned
  const controller = new AbortController();
  watchController = controller;
  current = null;
  samples = [];
  showView("import");
  $("step-pick").hidden = true;
  $("step-preview").hidden = true;
  $("step-watch").hidden = false;
  $("step-watch").dataset.job = jobId;
  $("job-state").dataset.status = "";
  delete $("job-state").dataset.outcome;
  $("watch-title").textContent = "Importing";
  $("watch-file").textContent = filename;
  for (const id of ["job-errors", "job-downloads", "job-warnings", "job-error"]) $(id).hidden = true;
  showError("download-error", "");
  $("download-state").textContent = "";
  $("job-state").textContent = "Waiting for a worker…";
  $("job-rate").textContent = "";
  $("job-where").textContent = "";
  $("job-counters").replaceChildren();
  $("job-progress").removeAttribute("value");
  $("job-cancel").hidden = true;
  showError("cancel-error", "");
  clearOutcome();
  $("watch-title").focus?.();
  try {
    let doc = await getJSON(`jobs/${jobId}`, { signal: controller.signal });
    renderProgress(doc);
    if (doc.status === "uploaded") {
      renderFinal(doc);
      return;
    }
    if (doc.status !== "completed" && doc.status !== "failed" && doc.status !== "cancelled") {
      await followEvents(`jobs/${jobId}/events`, (_type, event) => renderProgress(event), { signal: controller.signal });
      // The final event has the counters; the job's own document also has its first row errors.
      doc = await getJSON(`jobs/${jobId}`, { signal: controller.signal });
    }
    renderFinal(doc);
  } catch (error) {
    if (error.name === "AbortError") return;
    $("job-state").textContent = "";
    $("job-error").textContent = error.message;
    $("job-error").hidden = false;
  } finally {
    if (watchController === controller) watchController = null;
  }
}

function renderCounters(doc) {
  const box = $("job-counters");
  if (!box.children.length) {
    box.replaceChildren(
      ...COUNTERS.map(([name, label]) =>
        el("div", { className: `counter ${name}` }, el("dt", { text: label }), el("dd", { dataset: { counter: name } })),
      ),
    );
  }
  for (const [name] of COUNTERS) {
    const value = box.querySelector(`[data-counter="${name}"]`);
    value.textContent = fmt(doc[name]);
    value.parentElement.classList.toggle("zero", !doc[name]);
  }
}

function renderProgress(doc) {
  current = doc;
  showCancel(doc);
  if (!$("watch-file").textContent) $("watch-file").textContent = doc.filename;
  renderCounters(doc);
  const done = doc.rows_read ?? 0;
  const total = doc.progress?.rows_total_estimate ?? null;
  const bar = $("job-progress");
  let percent = doc.progress?.percent;
  if ((percent === null || percent === undefined) && total) percent = Math.min(100, (done / total) * 100);
  if (doc.status === "completed") percent = 100;
  if (percent === null || percent === undefined) bar.removeAttribute("value");
  else bar.value = percent;
  bar.setAttribute("aria-valuetext", total ? `${fmt(done)} of about ${count(total, "row")}` : count(done, "row"));

  if (doc.status === "queued") $("job-state").textContent = "Waiting for a worker…";
  else if (doc.status === "running") $("job-state").textContent = "Importing…";
  const now = performance.now();
  samples.push([now, done]);
  samples = samples.filter(([t]) => now - t <= 10_000);
  const [t0, rows0] = samples[0];
  const rate = now - t0 >= 500 ? ((done - rows0) / (now - t0)) * 1000 : null;
  const finished = doc.status === "completed" || doc.status === "failed" || doc.status === "cancelled";
  const parts = [
    total && !finished ? `${fmt(done)} of about ${count(total, "row")} (${Math.floor(percent ?? 0)}%)` : count(done, "row"),
  ];
  if (rate && doc.status === "running") {
    parts.push(`${fmt(Math.round(rate))} rows/s`);
    if (total && total > done) parts.push(`about ${fmtDuration((total - done) / rate)} left`);
  }
  $("job-rate").textContent = parts.join(" · ");
}

function renderFinal(doc) {
  current = doc;
  renderProgress(doc);
  const title = $("watch-title");
  const bar = $("job-progress");
  if (doc.status === "uploaded") {
    title.textContent = "Not started";
    $("job-state").dataset.status = doc.status;
    $("job-state").textContent = "This file was checked but the import was never started. Choose the file again to import it.";
    bar.value = 0;
    $("job-rate").textContent = "";
    return;
  }
  const failed = doc.status === "failed";
  // Rows were rejected: the import is done, but not all of the file is in; that is a warning, not a success.
  const toFix = failed ? 0 : doc.rows_invalid || 0;
  const cancelled = doc.status === "cancelled";
  title.textContent = failed
    ? "Import failed"
    : cancelled
      ? "Import cancelled"
      : doc.dry_run
      ? "Checked (dry run): nothing was written"
      : toFix
        ? `Import completed: ${count(toFix, "row needs", "rows need")} fixing`
        : "Import completed";
  const rate = doc.duration_s ? ` (${fmt(Math.round(doc.rows_read / Math.max(doc.duration_s, 0.001)))} rows/s)` : "";
  const where = [
    doc.sheet ? `Sheet “${doc.sheet}”` : null,
    doc.header_row === 0 ? "no header row" : doc.header_row ? `header in row ${doc.header_row}` : null,
    doc.encoding ? `read as ${doc.encoding}` : null,
  ].filter(Boolean);
  const took = doc.duration_s !== null && doc.duration_s !== undefined ? ` in ${fmtDuration(doc.duration_s)}${rate}` : "";
  $("job-state").textContent = toFix
    ? `${count(toFix, "row was", "rows were")} not imported and ${toFix === 1 ? "needs" : "need"} fixing: ` +
      `download ${toFix === 1 ? "it" : "them"} below, correct the cells and import the file again. ` +
      `${count(doc.rows_read - toFix, "other row was", "other rows were")} ${doc.dry_run ? "checked" : "done"}${took}.`
    : cancelled
      ? `Cancelled after ${count(doc.rows_read, "row")}: what those rows changed stays (undo it below).`
      : `${failed ? "Stopped" : "Done"}${took}.`;
  $("job-state").dataset.outcome = failed ? "failed" : toFix ? "rows-to-fix" : "done";
  if (doc.kind === "revert") {
    // An undo: what it deleted and restored, and the customers it left (changed since: its "errors").
    title.textContent = failed ? "Undo failed" : cancelled ? "Undo cancelled" : "Undo completed";
    $("job-state").textContent =
      `${count(doc.rows_deleted ?? 0, "customer")} deleted, ${fmt(doc.rows_restored ?? 0)} restored` +
      (doc.rows_invalid ? `, ${fmt(doc.rows_invalid)} left as they are (changed since the import).` : ".");
  }
  $("job-where").textContent = where.length ? `${where.join(", ")}.`.replace(/^./, (c) => c.toUpperCase()) : "";
  $("job-state").dataset.status = doc.status;
  if (failed) {
    $("job-error").textContent = doc.error || "The import failed.";
    $("job-error").hidden = false;
  }
  const warnings = doc.warnings || [];
  $("job-warnings").replaceChildren(...warnings.map((w) => el("li", { text: w })));
  $("job-warnings").hidden = warnings.length === 0;
  $("job-downloads").hidden = !(doc.rows_invalid > 0);
  const errors = doc.errors || [];
  $("job-errors-body").replaceChildren(
    ...errors.map((e) =>
      el(
        "tr",
        {},
        el("td", { className: "num row-col", text: String(e.row) }),
        // The column as the file shows it (its header text, or its letter), never the field's own name.
        el("td", { className: "column-col" }, breakable(e.column ?? "(the row)")),
        el("td", { className: "value-col" }, e.value === null || e.value === undefined ? "" : breakable(e.value)),
        el("td", { className: "problem", text: e.message }),
      ),
    ),
  );
  $("job-errors").hidden = errors.length === 0;
  $("job-errors-title").textContent = `Errors (${count(doc.rows_invalid, "invalid row")})`;
  const stored = doc.errors_stored ?? errors.length;
  $("job-errors-more").textContent =
    stored > errors.length ? `The first ${fmt(errors.length)} of ${fmt(stored)} errors; “All errors (.csv)” has every one.` : "";
  renderOutcome(doc);
}

const DOWNLOADS = {
  "rejected-xlsx": (id) => [`jobs/${id}/rejected`, { format: "xlsx" }, `job-${id}-rejected.xlsx`],
  "rejected-csv": (id) => [`jobs/${id}/rejected`, { format: "csv" }, `job-${id}-rejected.csv`],
  "errors-csv": (id) => [`jobs/${id}/errors`, { format: "csv" }, `job-${id}-errors.csv`],
};

async function downloadFor(button) {
  if (!current) return;
  const [path, query, name] = DOWNLOADS[button.dataset.download](current.job_id);
  showError("download-error", "");
  $("download-state").textContent = "Preparing the file…";
  try {
    const got = await busy(button, () => download(path, query, name));
    $("download-state").textContent = `Downloaded ${got.name} (${fmtBytes(got.size)}).`;
  } catch (error) {
    $("download-state").textContent = "";
    showError("download-error", error.message);
  }
}

// -- recent imports ------------------------------------------------------------------------------

// Jobs still under way: Recent imports shows their progress and keeps it current while it is shown.
const UNDER_WAY = new Set(["queued", "running"]);
const LIST_REFRESH_MS = 1500;
let listTimer = null;
let listRequest = 0;

function jobProgress(job) {
  const total = job.progress?.rows_total_estimate ?? null;
  const percent = job.progress?.percent;
  const bar = el("progress", { max: 100, "aria-label": `Progress of ${job.filename}` });
  if (percent !== null && percent !== undefined) bar.value = percent;
  const done = job.rows_read ?? 0;
  const text =
    job.status === "queued"
      ? "waiting for a worker"
      : total
        ? `${fmt(done)} of about ${count(total, "row")}${percent !== null && percent !== undefined ? ` (${Math.floor(percent)}%)` : ""}`
        : count(done, "row");
  return el("span", { className: "job-progress" }, bar, el("span", { className: "hint", text }));
}

function jobRow(job) {
  const underWay = UNDER_WAY.has(job.status);
  const verb = underWay ? "Follow" : "Open";
  return el(
    "tr",
    { dataset: { job: job.job_id, status: job.status } },
    el("td", { className: "file" }, el("button", { type: "button", className: "link", "aria-label": `${verb} the import of ${job.filename}, ${fmtDate(job.created_at)}`, on: { click: () => watch(job.job_id, job.filename) } }, breakable(job.filename))),
    el(
      "td",
      { className: "state" },
      el("span", { className: `status ${job.status}`, text: STATUS_TEXT[job.status] || job.status }),
      underWay ? jobProgress(job) : null,
    ),
    el("td", { className: "when", text: fmtDate(job.created_at) }),
    JOB_COUNTERS.map(([name, label]) =>
      el("td", { className: "num", dataset: { counter: name } }, el("span", { className: "cell-label", text: label }), fmt(job[name])),
    ),
  );
}

export async function loadJobs() {
  clearTimeout(listTimer);
  const ticket = ++listRequest;
  showError("jobs-error", "");
  const body = $("jobs-body");
  try {
    // The 20 newest, and every import still under way even when older than those (a long one).
    const [page, underWay] = await busy(
      $("jobs-refresh"),
      () => Promise.all([getJSON("jobs", { query: { limit: 20 } }), getJSON("jobs", { query: { status: "queued,running", limit: 200 } })]),
      $("view-jobs"),
    );
    if (ticket !== listRequest) return;
    const listed = new Set(page.items.map((job) => job.job_id));
    const items = [...page.items, ...underWay.items.filter((job) => !listed.has(job.job_id))];
    items.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    body.replaceChildren(...items.map(jobRow));
    $("jobs-empty").hidden = items.length > 0;
  } catch (error) {
    showError("jobs-error", error.message);
  }
  followList();
}

/** While Recent imports is shown and lists jobs under way, read theirs again every moment or so. */
function followList() {
  clearTimeout(listTimer);
  if ($("view-jobs").hidden || !document.querySelector("#jobs-body tr[data-status='queued'], #jobs-body tr[data-status='running']")) return;
  listTimer = setTimeout(refreshUnderWay, LIST_REFRESH_MS);
}

async function refreshUnderWay() {
  if ($("view-jobs").hidden) return;
  const ticket = listRequest;
  let live;
  try {
    const page = await getJSON("jobs", { query: { status: "queued,running", limit: 200 } });
    live = new Map(page.items.map((job) => [job.job_id, job]));
  } catch {
    followList(); // try again at the next tick; the list shown stays
    return;
  }
  if (ticket !== listRequest) return;
  const rows = [...document.querySelectorAll("#jobs-body tr[data-status='queued'], #jobs-body tr[data-status='running']")];
  if (rows.some((row) => !live.has(row.dataset.job))) {
    loadJobs(); // one has ended: the whole list, with its final counters
    return;
  }
  for (const row of rows) {
    // Every cell but the first (its button may have the focus) takes the new values.
    const fresh = [...jobRow(live.get(row.dataset.job)).cells];
    row.dataset.status = live.get(row.dataset.job).status;
    [...row.cells].slice(1).forEach((cell, i) => cell.replaceWith(fresh[i + 1]));
  }
  followList();
}

// -- wiring --------------------------------------------------------------------------------------

export function initImports(options) {
  showView = options.showView;
  initChanges({ open: (jobId) => watch(jobId) });
  const input = $("file-input");
  input.addEventListener("change", () => pickFile(input.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (!input.disabled) pickFile(e.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  // Leaving (or reloading) the page abandons the preview shown: the request outlives the page.
  window.addEventListener("pagehide", () => discardPreview({ leaving: true }));
  window.addEventListener("drop", (e) => e.preventDefault());

  $("sheet-select").addEventListener("change", (e) => {
    manual = new Map();
    preview("sheet", { sheet: e.target.value });
  });
  // A new header row reads the file again: wait a moment, as the arrows of the field step one by one.
  let pending = null;
  $("header-row").addEventListener("change", (e) => {
    clearTimeout(pending);
    const value = e.target.value.trim();
    if (!/^\d+$/.test(value)) {
      fieldError(e.target, "header-row-error", "Enter a whole number: the row of the column titles, or 0 for none.");
      updateStart();
      return;
    }
    fieldError(e.target, "header-row-error", "");
    updateStart();
    pending = setTimeout(() => {
      if (!uploaded || Number(value) === uploaded.preview.header_row) return;
      preview("header_row", { sheet: uploaded.preview.sheet ?? undefined, headerRow: Number(value) });
    }, 300);
  });
  $("start-import").addEventListener("click", start);
  $("preview-cancel").addEventListener("click", () => {
    resetImport();
    $("file-input").focus();
  });
  $("watch-new").addEventListener("click", () => {
    resetImport();
    $("file-input").focus();
  });
  for (const button of document.querySelectorAll("[data-download]")) button.addEventListener("click", () => downloadFor(button));
  $("template-xlsx").addEventListener("click", async (e) => {
    showError("template-error", "");
    try {
      const got = await busy(e.currentTarget, () => download("template", { format: "xlsx" }, "customers-template.xlsx"));
      toast(`Downloaded ${got.name}.`);
    } catch (error) {
      showError("template-error", error.message);
    }
  });
  $("jobs-refresh").addEventListener("click", loadJobs);
}

export { resetImport };
