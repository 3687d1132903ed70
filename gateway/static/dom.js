// Small DOM helpers shared by the page's modules.

export const $ = (id) => document.getElementById(id);

/** el("td", {className: "num", text: "3"}, child, ...): an element with properties and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (name.startsWith("aria-") || name === "role" || name === "for" || name === "scope") node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const numbers = new Intl.NumberFormat();
export const fmt = (n) => (n === null || n === undefined ? "–" : numbers.format(n));

export function fmtDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 1) return "less than a second";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Show a message in an error slot (an element with role=alert); empty text hides it. */
export function showError(target, text) {
  const node = typeof target === "string" ? $(target) : target;
  if (!node) return;
  node.textContent = text || "";
  node.classList.toggle("shown", Boolean(text));
}

/** Mark an input invalid with a message in its error slot (aria-describedby names it). */
export function fieldError(input, slot, text) {
  if (input) {
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  showError(slot, text);
}

/**
 * Run `work` with the buttons (or other controls) disabled and aria-busy set on `region`, so a
 * second click cannot start it twice. Resolves to what `work` resolves to.
 */
export async function busy(controls, work, region = null) {
  const list = (Array.isArray(controls) ? controls : [controls]).filter(Boolean);
  const before = list.map((c) => c.disabled);
  list.forEach((c) => (c.disabled = true));
  region?.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    list.forEach((c, i) => (c.disabled = before[i]));
    region?.removeAttribute("aria-busy");
  }
}

let toastTimer = null;
/** A short message at the bottom of the screen (also read out: role=status). */
export function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (node.hidden = true), 5000);
}

/**
 * Text as nodes with a line-break opportunity (<wbr>) after "@", "_" and "-" and before ".": an
 * email or a file name too long for its box wraps between its parts, never in the middle of a word.
 */
export function breakable(text) {
  const parts = String(text ?? "").split(/(?<=[@_-])|(?=\.)/);
  return parts.flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

const pluralRules = new Intl.PluralRules("en");
/** "1 row", "2 rows", "about 1 row": a number and its noun, in the form English gives that number. */
export function count(n, singular, plural = `${singular}s`) {
  return `${fmt(n)} ${pluralRules.select(n) === "one" ? singular : plural}`;
}

/**
 * Tables laid out as cards on a phone (class "cards": their rows become grids) lose their table
 * semantics in some browsers once their display changes; explicit ARIA roles keep a screen reader
 * reading them as tables. Rows rendered later get theirs as they are added.
 */
export function keepTableSemantics(root = document) {
  const mark = (table) => {
    table.setAttribute("role", "table");
    for (const group of table.querySelectorAll(":scope > thead, :scope > tbody")) group.setAttribute("role", "rowgroup");
    for (const row of table.querySelectorAll(":scope > * > tr")) {
      row.setAttribute("role", "row");
      for (const cell of row.children) {
        if (cell.getAttribute("role")) continue;
        cell.setAttribute("role", cell.tagName === "TH" ? (cell.scope === "row" ? "rowheader" : "columnheader") : "cell");
      }
    }
  };
  const tables = [...root.querySelectorAll("table.cards")];
  tables.forEach(mark);
  const observer = new MutationObserver((changes) => {
    for (const change of changes) {
      const table = change.target.closest?.("table.cards");
      if (table) mark(table);
    }
  });
  for (const table of tables) observer.observe(table, { childList: true, subtree: true });
}
