// Customers: search with keyset pages, open one to edit it (If-Match: the version opened), create,
// delete with a confirmation, export the current search.

import { ApiError, download, getJSON, request, sendJSON } from "./api.js";
import { $, breakable, busy, el, fieldError, fmt, fmtBytes, fmtDate, showError, toast } from "./dom.js";
import { initHistory, setHistoryCustomer } from "./history.js";
import { FIELDS } from "./fields.js";
import { watch } from "./imports.js";

const PAGE_SIZE = 20;
const FIELD_TYPES = { email: "email", phone: "tel", web: "url" };

let query = ""; // the search the list shows
let cursors = [null]; // the cursor of each page seen so far: [null] is the first page
let nextCursor = null;
let listRequest = 0;
let sort = ""; // GET /customers?sort=: "" by id, "city" ascending, "-city" descending
let total = null; // how many match the search (count=true: each page carries it, cached with the page)

/** The list of customers for the current search and page. */
async function loadPage() {
  const ticket = ++listRequest;
  const page = cursors.length;
  showError("search-error", "");
  showError("customers-error", "");
  $("customers-state").textContent = "Loading…";
  try {
    // The search stays usable while a page loads (a disabled submit button would swallow Enter in the box):
    // the newest request wins (listRequest), so an earlier answer arriving late is dropped.
    const answer = await busy([$("page-prev"), $("page-next")], () =>
      getJSON("customers", {
        query: { q: query, limit: PAGE_SIZE, cursor: cursors[cursors.length - 1], sort, count: "true" },
      }),
      $("view-customers"),
    );
    if (ticket !== listRequest) return;
    nextCursor = answer.next_cursor;
    if (answer.total !== undefined) total = answer.total;
    renderList(answer.items);
    const shown = answer.items.length;
    const of = total !== null ? total : nextCursor ? null : (page - 1) * PAGE_SIZE + shown;
    $("customers-state").textContent = shown
      ? `${query ? `Matching “${query}”: ` : "Showing "}${fmt((page - 1) * PAGE_SIZE + 1)}–${fmt((page - 1) * PAGE_SIZE + shown)}${of === null ? "" : ` of ${fmt(of)}`}`
      : query
        ? `No customer matches “${query}”.`
        : "No customers yet: import a file or add one.";
    $("page-number").textContent = `Page ${page}`;
  } catch (error) {
    if (ticket !== listRequest) return;
    $("customers-state").textContent = "";
    // A bad search term belongs to the search box; anything else to the list.
    if (error.fieldErrors?.some((e) => e.field === "q")) fieldError($("search-input"), "search-error", error.message);
    else showError("customers-error", error.message);
  } finally {
    if (ticket === listRequest) {
      $("page-prev").disabled = cursors.length <= 1;
      $("page-next").disabled = !nextCursor;
    }
  }
}

function renderList(items) {
  $("customers-body").replaceChildren(
    ...items.map((c) => {
      const name = [c.first_name, c.last_name].filter(Boolean).join(" ") || "(no name)";
      return el(
        "tr",
        { dataset: { id: String(c.id) } },
        el("td", {}, el("button", { type: "button", className: "link", text: name, "aria-label": `Edit ${name}, ${c.email}`, on: { click: () => openCustomer(c.id) } })),
        el("td", { className: "email" }, breakable(c.email)),
        el("td", { className: "wide company", text: c.company_name ?? "" }),
        el("td", { className: "wide city", text: c.city ?? "" }),
        el("td", { className: "wide phone", text: c.phone ?? "" }),
      );
    }),
  );
}

/** The view is shown: (re)load the page it was on, as imports and other people change customers. */
export function showCustomers() {
  loadPage();
}

// -- one customer --------------------------------------------------------------------------------

let editing = null; // {id, etag, opened: the values as opened} or {id: null} for a new one

function buildForm() {
  $("customer-fields").replaceChildren(
    ...FIELDS.map(([name, label]) =>
      el(
        "div",
        { className: `form-field ${name}` },
        el("label", { for: `customer-${name}`, text: name === "email" ? `${label} (required)` : label }),
        el("input", {
          id: `customer-${name}`,
          name,
          type: FIELD_TYPES[name] || "text",
          autocomplete: "off",
          spellcheck: false,
          "aria-describedby": `customer-${name}-error customer-${name}-now`,
        }),
        el("p", { className: "now", id: `customer-${name}-now` }),
        el("p", { className: "field-error", id: `customer-${name}-error`, role: "alert" }),
      ),
    ),
  );
}

function formValues() {
  const values = {};
  for (const [name] of FIELDS) {
    const value = $(`customer-${name}`).value.trim();
    values[name] = value === "" ? null : value;
  }
  return values;
}

function fillForm(doc) {
  for (const [name] of FIELDS) $(`customer-${name}`).value = doc[name] ?? "";
  const attributes = Object.entries(doc.attributes ?? {});
  $("customer-attributes").replaceChildren(
    ...attributes.map(([name, value]) => el("li", {}, el("span", { className: "attribute-name", text: name }), ` ${value}`)),
  );
  $("customer-attributes-box").hidden = attributes.length === 0;
}

function clearFormErrors() {
  for (const [name] of FIELDS) {
    fieldError($(`customer-${name}`), `customer-${name}-error`, "");
    $(`customer-${name}-now`).textContent = "";
  }
  showError("customer-error", "");
  $("customer-conflict").hidden = true;
  $("delete-confirm").hidden = true;
  $("customer-save").disabled = false;
}

function showMeta(doc) {
  $("customer-meta").textContent = doc
    ? `Customer ${doc.id} · version ${doc.version} · changed ${fmtDate(doc.updated_at)}`
    : "A new customer: the email must not be in use yet.";
}

async function fetchCustomer(id) {
  const response = await request(`customers/${id}`);
  const doc = await response.json();
  return { doc, etag: response.headers.get("ETag") || `"v${doc.version}"` };
}

async function openCustomer(id) {
  const row = document.querySelector(`#customers-body tr[data-id="${id}"] button`);
  showError("customers-error", "");
  try {
    const { doc, etag } = await busy(row, () => fetchCustomer(id));
    editing = { id, etag, opened: doc };
    setHistoryCustomer(id);
    clearFormErrors();
    fillForm(doc);
    showMeta(doc);
    $("customer-title").textContent = `Edit ${[doc.first_name, doc.last_name].filter(Boolean).join(" ") || doc.email}`;
    $("customer-save").textContent = "Save";
    $("customer-delete").hidden = false;
    openDialog();
  } catch (error) {
    showError("customers-error", error.message);
  }
}

function newCustomer() {
  editing = { id: null };
  setHistoryCustomer(null);
  clearFormErrors();
  fillForm({});
  showMeta(null);
  $("customer-title").textContent = "New customer";
  $("customer-save").textContent = "Create";
  $("customer-delete").hidden = true;
  openDialog();
}

function openDialog() {
  const dialog = $("customer-dialog");
  $("toast").hidden = true; // it would sit behind the dialog's backdrop
  if (!dialog.open) dialog.showModal();
  $("customer-first_name").focus();
}

function closeDialog() {
  $("customer-dialog").close();
  editing = null;
}

function dialogButtons() {
  return [$("customer-save"), $("customer-delete"), $("delete-yes"), $("delete-no")];
}

/** Each field error next to its input, the problem's detail under the form. */
function placeErrors(error) {
  for (const { field, message } of error.fieldErrors) {
    const input = $(`customer-${field}`);
    if (input) fieldError(input, `customer-${field}-error`, message);
  }
  showError("customer-error", error.message);
  error.fieldErrors.map((e) => $(`customer-${e.field}`)).find(Boolean)?.focus();
}

async function save(event) {
  event.preventDefault();
  if (!editing) return;
  clearFormErrors();
  const values = formValues();
  try {
    if (editing.id === null) {
      const doc = await busy(dialogButtons(), () => sendJSON("POST", "customers", values));
      toast(`Created ${doc.email} (customer ${doc.id}).`);
      closeDialog();
      query = doc.email;
      $("search-input").value = query;
      cursors = [null];
    } else {
      const { id, etag } = editing;
      // PUT replaces the whole customer: its attributes (what an import kept from columns with no field)
      // go back as they were opened, or they would be erased.
      const whole = { ...values, attributes: editing.opened?.attributes ?? {} };
      const doc = await busy(dialogButtons(), () =>
        sendJSON("PUT", `customers/${id}`, whole, { headers: { "If-Match": etag } }),
      );
      toast(`Saved ${doc.email} (version ${doc.version}).`);
      closeDialog();
    }
    await loadPage();
  } catch (error) {
    if (error instanceof ApiError && error.status === 412) await conflict(values);
    else if (error instanceof ApiError && error.status === 404) gone(error);
    else placeErrors(error);
  }
}

/**
 * Someone changed the customer since it was opened. Fields the person did not touch take the new
 * values; fields both changed keep the person's value with the current one shown beside it. The
 * current version becomes the one to overwrite, so that saving again is a deliberate choice.
 */
async function conflict(mine) {
  const { id, opened } = editing;
  let latest;
  try {
    latest = await busy(dialogButtons(), () => fetchCustomer(id));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) gone(error);
    else showError("customer-error", error.message);
    return;
  }
  const theirs = latest.doc;
  editing = { id, etag: latest.etag, opened: theirs };
  const changed = [];
  const clashes = [];
  for (const [name, label] of FIELDS) {
    const base = opened[name] ?? null;
    const now = theirs[name] ?? null;
    if (now === base) continue;
    changed.push(label);
    if ((mine[name] ?? null) === base) {
      $(`customer-${name}`).value = now ?? "";
    } else if ((mine[name] ?? null) !== now) {
      clashes.push(label);
      $(`customer-${name}-now`).textContent = `Now: ${now ?? "(empty)"}`;
    }
  }
  const box = $("customer-conflict");
  const what = changed.length ? ` (${changed.join(", ")})` : "";
  box.replaceChildren(
    el("p", { className: "strong", text: "This customer was changed since you opened it." }),
    el("p", {
      text:
        `Someone else saved version ${theirs.version}${what}. ` +
        (clashes.length
          ? `You both changed ${clashes.join(", ")}: the form keeps yours, with theirs shown beside it. `
          : "Their changes are now in the form too. ") +
        "Save again to keep what the form shows.",
    }),
    el(
      "dl",
      { className: "current-values", "aria-label": "What they changed, as it is now" },
      FIELDS.filter(([name]) => (theirs[name] ?? null) !== (opened[name] ?? null)).flatMap(([name, label]) => [
        el("dt", { text: `${label} now` }),
        el("dd", { dataset: { field: name }, text: theirs[name] ?? "(empty)" }),
      ]),
    ),
    el(
      "div",
      { className: "actions wrap" },
      el("button", { type: "button", className: "secondary", text: "Discard my changes", on: { click: () => useLatest(theirs) } }),
    ),
  );
  box.hidden = false;
  showMeta(theirs);
  $("customer-save").textContent = "Save again";
  showError("customer-error", "");
  box.focus();
}

function useLatest(doc) {
  clearFormErrors();
  fillForm(doc);
  $("customer-save").textContent = "Save";
  $("customer-first_name").focus();
}

function gone(error) {
  showError("customer-error", `${error.message} It was deleted since you opened it.`);
  $("customer-save").disabled = true;
  $("customer-delete").hidden = true;
  loadPage();
}

function askDelete() {
  const doc = editing?.opened;
  if (!doc) return;
  const name = [doc.first_name, doc.last_name].filter(Boolean).join(" ");
  $("delete-question").textContent = `Delete ${name ? `${name} (${doc.email})` : doc.email}? This cannot be undone.`;
  $("delete-confirm").hidden = false;
  $("delete-no").focus();
}

async function confirmDelete() {
  const { id, etag, opened } = editing;
  try {
    await busy(dialogButtons(), () => request(`customers/${id}`, { method: "DELETE", headers: { "If-Match": etag } }));
    toast(`Deleted ${opened.email}.`);
    closeDialog();
    await loadPage();
  } catch (error) {
    $("delete-confirm").hidden = true;
    if (error instanceof ApiError && error.status === 412) await conflict(formValues());
    else if (error instanceof ApiError && error.status === 404) gone(error);
    else showError("customer-error", error.message);
  }
}

// -- wiring --------------------------------------------------------------------------------------

/** Each sortable column's title becomes a button: a first click sorts ascending, the next descending. */
function buildSortButtons() {
  for (const th of document.querySelectorAll(".customers-table th[data-sort]")) {
    const key = th.dataset.sort;
    const label = th.textContent.trim();
    const button = el("button", { type: "button", className: "sort", dataset: { sort: key } }, el("span", { text: label }), el("span", { className: "sort-mark", "aria-hidden": "true" }));
    button.addEventListener("click", () => {
      sort = sort === key ? `-${key}` : key;
      cursors = [null];
      total = null;
      showSort();
      loadPage();
    });
    th.replaceChildren(button);
  }
  showSort();
}

function showSort() {
  for (const th of document.querySelectorAll(".customers-table th[data-sort]")) {
    const key = th.dataset.sort;
    const state = sort === key ? "ascending" : sort === `-${key}` ? "descending" : null;
    if (state) th.setAttribute("aria-sort", state);
    else th.removeAttribute("aria-sort");
    const button = th.querySelector("button");
    button.querySelector(".sort-mark").textContent = state === "ascending" ? "▲" : state === "descending" ? "▼" : "↕";
    button.setAttribute("aria-label", `${th.dataset.label || button.firstChild.textContent}: sort ${state === "ascending" ? "descending" : "ascending"}`);
  }
}

export function initCustomers() {
  buildForm();
  buildSortButtons();
  initHistory({
    open: (jobId) => {
      closeDialog();
      watch(jobId);
    },
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    fieldError($("search-input"), "search-error", "");
    query = $("search-input").value.trim();
    cursors = [null];
    total = null;
    loadPage();
  });
  $("page-next").addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    loadPage();
  });
  $("page-prev").addEventListener("click", () => {
    if (cursors.length <= 1) return;
    cursors.pop();
    loadPage();
  });
  $("customer-new").addEventListener("click", newCustomer);
  $("customer-form").addEventListener("submit", save);
  $("customer-close").addEventListener("click", closeDialog);
  $("customer-dialog").addEventListener("close", () => (editing = null));
  $("customer-delete").addEventListener("click", askDelete);
  $("delete-no").addEventListener("click", () => {
    $("delete-confirm").hidden = true;
    $("customer-delete").focus();
  });
  $("delete-yes").addEventListener("click", confirmDelete);
  $("customers-export").addEventListener("click", async (e) => {
    showError("customers-export-error", "");
    try {
      const got = await busy(e.currentTarget, () => download("customers/export", { format: "xlsx", q: query }, "customers.xlsx"));
      toast(`Downloaded ${got.name} (${fmtBytes(got.size)}).`);
    } catch (error) {
      showError("customers-export-error", error.message);
    }
  });
}
