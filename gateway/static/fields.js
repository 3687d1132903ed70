// The customer fields, as the service declares them (GET /fields, from shared/customers/fields.py):
// the page keeps no copy of its own. Loaded once, before the views are built (app.js).

import { getJSON } from "./api.js";

/** [name, label] of each field, in the service's order. */
export const FIELDS = [];
/** The fields every customer needs a column for. */
export const REQUIRED = [];
/** name -> label, of the fields and of the mapping's other targets (the full name). */
export const LABEL = {};

export async function loadFields() {
  const answer = await getJSON("fields");
  FIELDS.splice(0, FIELDS.length, ...answer.items.map((field) => [field.name, field.label]));
  REQUIRED.splice(0, REQUIRED.length, ...answer.items.filter((field) => field.required).map((field) => field.name));
  Object.assign(LABEL, Object.fromEntries(FIELDS), { [answer.full_name.name]: answer.full_name.label });
}
