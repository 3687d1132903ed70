// The page's entry point: is the service up, does it need a key (and is the one we have right),
// then the three views: import a file, recent imports, customers.

import { ApiError, forgetKey, hasKey, onUnauthorized, request, setKey } from "./api.js";
import { initCustomers, showCustomers } from "./customers.js";
import { $, busy, fieldError, keepTableSemantics } from "./dom.js";
import { loadFields } from "./fields.js";
import { initImports, loadJobs, resetImport } from "./imports.js";

const VIEWS = ["import", "jobs", "customers"];
// What a person typing a key needs to hear (the API's 401 detail is written for HTTP clients).
const KEY_REFUSED = "That key was not accepted.";
const KEY_HELP = "Check that you copied the whole key, or ask whoever runs this service for a new one.";
let signedIn = false;
let keyNeeded = false;

function showView(name, { focus = false } = {}) {
  if (!VIEWS.includes(name)) name = "import";
  for (const view of VIEWS) $(`view-${view}`).hidden = view !== name;
  for (const tab of document.querySelectorAll("#tabs .tab")) {
    if (tab.dataset.view === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "jobs") loadJobs();
  if (name === "customers") showCustomers();
  if (focus) $("main").focus();
}

async function checkService() {
  const state = $("service-state");
  try {
    const response = await fetch(new URL("readyz", document.baseURI), { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      state.textContent = "";
      state.className = "service-state";
      return;
    }
    const down = Object.entries(body.checks || {})
      .filter(([, v]) => v !== "up")
      .map(([k]) => (k === "mysql" ? "the database" : k === "redis" ? "the cache" : k));
    state.textContent = down.length
      ? `Service not ready: ${down.join(" and ")} ${down.length > 1 ? "are" : "is"} unavailable.`
      : "Service not ready.";
    state.className = "service-state bad";
  } catch {
    state.textContent = "The service cannot be reached.";
    state.className = "service-state bad";
  }
}

/** 200 for GET /jobs?limit=1: the key is right, or the service needs none. */
async function probe() {
  await request("jobs", { query: { limit: 1 } });
}

function showKeyForm(message = "") {
  signedIn = false;
  $("loading").hidden = true;
  $("tabs").hidden = true;
  $("key-state").hidden = true;
  for (const view of VIEWS) $(`view-${view}`).hidden = true;
  $("view-key").hidden = false;
  fieldError($("key-input"), "key-error", message);
  $("key-input").focus();
}

function showApp() {
  signedIn = true;
  $("loading").hidden = true;
  $("view-key").hidden = true;
  $("tabs").hidden = false;
  $("key-state").hidden = false;
  $("key-state-text").textContent = keyNeeded ? "Using your API key." : "This service needs no API key.";
  $("forget-key").hidden = !keyNeeded;
  showView(location.hash.slice(1));
}

async function signIn(event) {
  event.preventDefault();
  const input = $("key-input");
  const key = input.value.trim();
  if (!key) {
    fieldError(input, "key-error", "Enter the API key you were given.");
    return;
  }
  fieldError(input, "key-error", "");
  setKey(key);
  try {
    await busy([$("key-submit"), input], probe, $("view-key"));
    keyNeeded = true;
    input.value = "";
    showApp();
  } catch (error) {
    forgetKey();
    const wrong = error instanceof ApiError && error.status === 401;
    fieldError(input, "key-error", wrong ? `${KEY_REFUSED} ${KEY_HELP}` : error.message);
    input.focus();
    input.select();
  }
}

async function start() {
  try {
    await loadFields(); // the forms and the mapping are built from them
  } catch (error) {
    $("loading").textContent = `The service did not answer as expected: ${error.message} Reload the page to try again.`;
    $("loading").className = "notice error";
    return;
  }
  keepTableSemantics();
  initImports({ showView });
  initCustomers();
  for (const tab of document.querySelectorAll("#tabs .tab")) {
    tab.addEventListener("click", () => showView(tab.dataset.view, { focus: false }));
  }
  window.addEventListener("hashchange", () => signedIn && showView(location.hash.slice(1)));
  $("key-form").addEventListener("submit", signIn);
  $("forget-key").addEventListener("click", () => {
    resetImport(); // first: a preview shown is deleted with the key still in hand
    forgetKey();
    showKeyForm("");
  });
  onUnauthorized((error) => {
    if (!signedIn) return;
    forgetKey();
    resetImport();
    showKeyForm(`The service no longer accepts your key. ${KEY_HELP}`);
  });

  checkService();
  const hadKey = hasKey();
  try {
    await probe();
    keyNeeded = hadKey;
    showApp();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      keyNeeded = true;
      if (hadKey) forgetKey();
      showKeyForm(hadKey ? `Your saved key is no longer accepted. ${KEY_HELP}` : "");
    } else {
      $("loading").textContent = `The service did not answer as expected: ${error.message} Reload the page to try again.`;
      $("loading").className = "notice error";
    }
  }
}

start();
