// The admin console of contextd (its "management URL"): dictionary, people, credentials,
// connectors, webhooks, audit log, status and embedding settings of one organization and
// partition. It speaks only the public /v1 API, with the session cookie of an admin user.
//
// Rules kept here: relative URLs only (the service may sit under a path prefix); no markup
// built from strings (every value goes through text nodes); nothing inline (the page's CSP
// allows only 'self' scripts and styles).

import {
  ApiError,
  api,
  signOut,
  whoami,
  el,
  formatTime,
  signInForm,
  toast,
} from "./common.js";

const SECTIONS = [
  "fields",
  "fieldsets",
  "users",
  "keys",
  "grants",
  "connectors",
  "webhooks",
  "audit",
  "status",
  "settings",
];
const ORG_KEY = "contextd.admin.org";
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const STATS_EVERY_MS = 5000;

const state = {
  who: null,
  orgName: "",
  section: null,
  fields: [],
  fieldsets: [],
  editingField: null,
  editingFieldset: null,
  users: [],
  editingUser: null,
  keys: [],
  webhook: null,
  audit: { params: null, cursors: [null], next: null },
  statsTimer: 0,
  statsBusy: false,
};

// ---------------------------------------------------------------------------------------
// Small DOM helpers

const $ = (id) => document.getElementById(id);

/** `el()` of common.js: null/false children and attributes are skipped. */
const h = el;

function timeCell(iso) {
  return iso ? h("time", { datetime: iso }, formatTime(iso)) : h("span", { class: "muted" }, "—");
}

function code(text) {
  return h("code", {}, text);
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind ?? ""}`.trim() }, text);
}

/** Replaces a table's body; an empty list shows one row saying so. */
function fillTable(table, rows, emptyText) {
  const body = table.tBodies[0];
  table.removeAttribute("aria-busy");
  if (rows.length === 0) {
    const cols = table.tHead.rows[0].cells.length;
    body.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: cols }, emptyText)));
  } else {
    body.replaceChildren(...rows);
  }
}

function tableMessage(table, text, kind) {
  const cols = table.tHead.rows[0].cells.length;
  table.tBodies[0].replaceChildren(
    h("tr", { class: `empty ${kind ?? ""}`.trim() }, h("td", { colspan: cols }, text)),
  );
}

function tableLoading(table) {
  table.setAttribute("aria-busy", "true");
  if (table.tBodies[0].rows.length === 0) tableMessage(table, "Loading…");
}

function tableFailed(table, err) {
  table.removeAttribute("aria-busy");
  tableMessage(table, problemText(err), "error");
}

/** A row action: a real button whose accessible name says what it acts on. */
function action(text, label, run, kind) {
  const button = h("button", {
    type: "button",
    class: kind ?? "secondary small",
    "aria-label": label,
    on: {
      click: async () => {
        if (button.disabled) return;
        button.disabled = true;
        try {
          await run();
        } catch (err) {
          toast(problemText(err), { kind: "error" });
        } finally {
          if (button.isConnected) button.disabled = false;
        }
      },
    },
  }, text);
  return button;
}

function enc(id) {
  return encodeURIComponent(id);
}

function problemText(err) {
  if (err instanceof ApiError) {
    const base = err.detail || err.title || `HTTP ${err.status}`;
    const list = (err.errors ?? []).map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
    return list.length ? `${base} (${list.join("; ")})` : base;
  }
  return err?.message ?? String(err);
}

function fmtMs(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "—";
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function fmtCount(v) {
  return typeof v === "number" ? v.toLocaleString() : "—";
}

function fmtUptime(seconds) {
  const s = Math.max(0, Math.floor(seconds ?? 0));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hh} h ${mm} min`;
  if (hh) return `${hh} h ${mm} min`;
  return `${mm} min ${s % 60} s`;
}

/** `datetime-local` value → RFC 3339 (UTC), or undefined when empty. */
function isoFromLocal(value, field) {
  if (!value) return undefined;
  const t = new Date(value);
  if (Number.isNaN(t.getTime())) throw new FormError([{ field, message: "not a valid date and time" }]);
  return t.toISOString();
}

/** A Date as a `datetime-local` value. */
function localInputValue(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`;
}

function lines(text) {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

// ---------------------------------------------------------------------------------------
// Forms and their errors

/** A problem found before sending, shaped like the server's (`detail`, `errors`). */
class FormError extends Error {
  constructor(errors, detail = "Check the highlighted values.") {
    super(detail);
    this.detail = detail;
    this.errors = errors;
  }
}

function clearErrors(form) {
  for (const n of form.querySelectorAll(".field-error")) n.remove();
  for (const n of form.querySelectorAll("[aria-invalid]")) {
    n.removeAttribute("aria-invalid");
    if ("describedbyBefore" in n.dataset) {
      const before = n.dataset.describedbyBefore;
      if (before) n.setAttribute("aria-describedby", before);
      else n.removeAttribute("aria-describedby");
      delete n.dataset.describedbyBefore;
    }
  }
  const box = form.querySelector(".form-error");
  if (box) {
    box.hidden = true;
    box.replaceChildren();
  }
}

/** The control a server error's `field` names: by full name, then by its first segment. */
function controlFor(form, field) {
  if (!field) return null;
  const names = [field, field.split(/[.[]/)[0]];
  for (const name of names) {
    for (const c of form.querySelectorAll(`[data-field~="${CSS.escape(name)}"]`)) {
      if (!c.closest("[hidden]")) return c;
    }
  }
  return null;
}

/** Shows a problem: its detail at the top of the form, each field error beside its control. */
function showError(form, err) {
  clearErrors(form);
  const box = form.querySelector(".form-error");
  const unmatched = [];
  let first = null;
  let n = 0;
  for (const fe of err?.errors ?? []) {
    const control = controlFor(form, fe.field);
    if (!control) {
      unmatched.push(fe);
      continue;
    }
    const id = `${form.id}-err-${n++}`;
    const msg = h("p", { class: "field-error", id }, fe.message ?? "invalid");
    const holder = control.closest(".control") ?? control.parentElement;
    holder.append(msg);
    if (!control.hasAttribute("aria-invalid")) {
      control.dataset.describedbyBefore = control.getAttribute("aria-describedby") ?? "";
    }
    control.setAttribute("aria-invalid", "true");
    control.setAttribute(
      "aria-describedby",
      `${control.getAttribute("aria-describedby") ?? ""} ${id}`.trim(),
    );
    first ??= control;
  }
  if (box) {
    const detail =
      err instanceof ApiError || err instanceof FormError ? err.detail || err.title : problemText(err);
    box.append(h("p", {}, detail || "The request failed."));
    if (unmatched.length) {
      box.append(
        h("ul", {}, unmatched.map((fe) => h("li", {}, fe.field ? `${fe.field}: ${fe.message}` : fe.message))),
      );
    }
    box.hidden = false;
  }
  const target = first?.matches("fieldset") ? first.querySelector("input, select, textarea") : first;
  (target ?? box)?.focus();
}

/** Handles a form's submit: no reload, one request at a time, errors shown beside it. */
function onSubmit(form, handler) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (form.dataset.busy) return;
    clearErrors(form);
    const submit = form.querySelector('[type="submit"]');
    form.dataset.busy = "1";
    form.setAttribute("aria-busy", "true");
    if (submit) submit.disabled = true;
    try {
      await handler();
    } catch (err) {
      if (!(err instanceof ApiError) && !(err instanceof FormError)) console.error(err);
      showError(form, err);
    } finally {
      delete form.dataset.busy;
      form.removeAttribute("aria-busy");
      if (submit) submit.disabled = false;
    }
  });
}

/** Shows a value that the server returns only once, focused and selected for copying. */
function showOnce(panelId, inputId, labelText, value) {
  const panel = $(panelId);
  const input = $(inputId);
  $(`${inputId}-label`).textContent = labelText;
  input.value = value;
  panel.hidden = false;
  input.focus();
  input.select();
}

function hideOnce(panelId, inputId) {
  $(inputId).value = "";
  $(panelId).hidden = true;
}

async function copyValue(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    toast("Copied to the clipboard.", { kind: "success" });
  } catch {
    input.focus();
    input.select();
    const ok = typeof document.execCommand === "function" && document.execCommand("copy");
    toast(ok ? "Copied to the clipboard." : "Selected: press Ctrl+C (⌘C) to copy.", {
      kind: ok ? "success" : "info",
    });
  }
}

function wireOnce(panelId, inputId) {
  $(`${inputId}-copy`).addEventListener("click", () => copyValue($(inputId)));
  $(`${inputId}-done`).addEventListener("click", () => hideOnce(panelId, inputId));
}

// ---------------------------------------------------------------------------------------
// Fields

async function loadFields() {
  const table = $("fields-table");
  tableLoading(table);
  try {
    state.fields = (await api("GET", "v1/fields")) ?? [];
    renderFields();
  } catch (err) {
    tableFailed(table, err);
  }
}

/** The field's label in the browser's language, else in en_US, else any, else its id. */
function labelOf(f) {
  const t = f?.translations ?? {};
  const norm = (k) => k.replace(/-/g, "_").toLowerCase();
  const want = [navigator.language ?? "", "en_US", "en"].map(norm);
  const entries = Object.entries(t);
  for (const w of want) {
    const hit = entries.find(([k]) => norm(k) === w);
    if (hit) return hit[1];
  }
  return entries[0]?.[1] ?? f?.id ?? "";
}

function byBaseThenId(a, b) {
  return Number(!!a.base) - Number(!!b.base) || a.id.localeCompare(b.id);
}

function fieldOrigin(f) {
  if (f.base) return badge("base", "base");
  if (f.inUse === true) return badge("custom, used", "used");
  if (f.inUse === false) return badge("custom, unused", "custom");
  return badge("custom", "custom");
}

function renderFields() {
  const q = $("fields-filter").value.trim().toLowerCase();
  const showBase = $("fields-show-base").checked;
  const rows = [...state.fields]
    .sort(byBaseThenId)
    .filter((f) => showBase || !f.base)
    .filter((f) => {
      if (!q) return true;
      const label = labelOf(f);
      return [f.id, label, f.description ?? ""].some((t) => t.toLowerCase().includes(q));
    })
    .map((f) => {
      const type = [f.dataType];
      if (f.maxLength) type.push(`≤ ${f.maxLength}`);
      if (f.enumValues?.length) type.push(`enum of ${f.enumValues.length}`);
      return h(
        "tr",
        { "data-id": f.id, class: f.base ? "base" : null },
        h("th", { scope: "row" }, code(f.id)),
        h("td", {}, labelOf(f)),
        h("td", {}, type.join(", ")),
        h("td", {}, badge(f.classification, `class-${String(f.classification).toLowerCase()}`)),
        h("td", {}, f.searchable ? "yes" : "no"),
        h("td", {}, fieldOrigin(f)),
        h(
          "td",
          { class: "row-actions" },
          f.base || f.readOnly
            ? h("span", { class: "muted" }, "read-only")
            : [
                action("Edit", `Edit field ${f.id}`, async () => editField(f)),
                action("Delete", `Delete field ${f.id}`, () => deleteField(f), "danger small"),
              ],
        ),
      );
    });
  fillTable($("fields-table"), rows, q ? "No field matches the filter." : "No fields yet.");
}

function syncFieldStringOnly() {
  const isString = $("field-datatype").value === "string";
  $("field-maxlength").disabled = !isString;
  $("field-enum").disabled = !isString;
  for (const box of $("field-enum-list").querySelectorAll("input")) box.disabled = !isString;
}

function renderExistingEnum(values) {
  const list = $("field-enum-list");
  list.replaceChildren(
    ...values.map((v, i) => {
      const id = `field-enum-active-${i}`;
      return h(
        "div",
        { class: "check" },
        h("input", { type: "checkbox", id, "data-value": v.value, checked: v.active !== false }),
        h("label", { for: id }, v.value, h("span", { class: "visually-hidden" }, " active")),
      );
    }),
  );
  $("field-enum-existing").hidden = values.length === 0;
  $("field-enum-label").textContent = values.length
    ? "Add values, one per line"
    : "Allowed values, one per line (empty: any value)";
}

function resetFieldForm() {
  const form = $("field-form");
  form.reset();
  clearErrors(form);
  state.editingField = null;
  $("field-id").readOnly = false;
  $("field-form-title").textContent = "New field";
  $("field-save").textContent = "Create field";
  $("field-cancel").hidden = true;
  renderExistingEnum([]);
  syncFieldStringOnly();
}

function editField(f) {
  resetFieldForm();
  state.editingField = f;
  $("field-form-title").textContent = `Edit field ${f.id}`;
  $("field-save").textContent = "Save field";
  $("field-cancel").hidden = false;
  $("field-id").value = f.id;
  $("field-id").readOnly = true;
  $("field-description").value = f.description ?? "";
  $("field-datatype").value = f.dataType;
  $("field-classification").value = f.classification;
  $("field-searchable").checked = !!f.searchable;
  $("field-maxlength").value = f.maxLength ?? "";
  renderExistingEnum(f.enumValues ?? []);
  $("field-translations").value = Object.entries(f.translations ?? {})
    .map(([locale, label]) => `${locale}=${label}`)
    .join("\n");
  syncFieldStringOnly();
  $("field-form").scrollIntoView({ block: "nearest" });
  $("field-description").focus();
}

function collectField() {
  const errors = [];
  const dataType = $("field-datatype").value;
  const body = {
    id: $("field-id").value.trim(),
    description: $("field-description").value.trim(),
    dataType,
    classification: $("field-classification").value,
    searchable: $("field-searchable").checked,
    translations: {},
  };
  if (dataType === "string") {
    const max = $("field-maxlength").value.trim();
    if (max !== "") {
      const n = Number(max);
      if (!Number.isInteger(n) || n < 1) errors.push({ field: "maxLength", message: "a whole number, at least 1" });
      else body.maxLength = n;
    }
    const values = [];
    const seen = new Set();
    for (const box of $("field-enum-list").querySelectorAll("input[data-value]")) {
      values.push({ value: box.dataset.value, active: box.checked });
      seen.add(box.dataset.value);
    }
    for (const v of lines($("field-enum").value)) {
      if (seen.has(v)) continue;
      seen.add(v);
      values.push({ value: v, active: true });
    }
    if (values.length) body.enumValues = values;
  }
  $("field-translations")
    .value.split(/\r?\n/)
    .forEach((line, i) => {
      if (!line.trim()) return;
      const at = line.indexOf("=");
      const locale = at < 0 ? "" : line.slice(0, at).trim();
      const label = at < 0 ? "" : line.slice(at + 1).trim();
      if (!locale || !label) {
        errors.push({ field: "translations", message: `line ${i + 1}: write locale=label, as en-US=Loyalty tier` });
      } else if (locale in body.translations) {
        errors.push({ field: "translations", message: `line ${i + 1}: ${locale} is given twice` });
      } else {
        body.translations[locale] = label;
      }
    });
  if (errors.length) throw new FormError(errors);
  return body;
}

async function saveField() {
  const body = collectField();
  const editing = state.editingField;
  if (editing) {
    await api("PUT", `v1/fields/${enc(editing.id)}`, body);
    toast(`Field ${body.id} saved.`, { kind: "success" });
  } else {
    await api("POST", "v1/fields", body);
    toast(`Field ${body.id} created.`, { kind: "success" });
  }
  resetFieldForm();
  await loadFields();
  $("field-id").focus();
}

async function deleteField(f) {
  if (!confirm(`Delete the field ${f.id}? This can't be undone.`)) return;
  await api("DELETE", `v1/fields/${enc(f.id)}`);
  toast(`Field ${f.id} deleted.`, { kind: "success" });
  if (state.editingField?.id === f.id) resetFieldForm();
  await loadFields();
}

function initFields() {
  onSubmit($("field-form"), saveField);
  $("field-cancel").addEventListener("click", () => {
    resetFieldForm();
    $("field-id").focus();
  });
  $("field-datatype").addEventListener("change", syncFieldStringOnly);
  $("fields-filter").addEventListener("input", renderFields);
  $("fields-show-base").addEventListener("change", renderFields);
  $("fields-refresh").addEventListener("click", loadFields);
  resetFieldForm();
}

// ---------------------------------------------------------------------------------------
// Field sets

async function loadFieldsets() {
  const table = $("fieldsets-table");
  tableLoading(table);
  try {
    const [sets, fields] = await Promise.all([api("GET", "v1/fieldsets"), api("GET", "v1/fields")]);
    state.fieldsets = sets ?? [];
    state.fields = fields ?? [];
    renderFieldsets();
    renderFieldPicker();
  } catch (err) {
    tableFailed(table, err);
  }
}

function renderFieldsets() {
  const rows = [...state.fieldsets].sort(byBaseThenId).map((s) => {
    const inactive = new Set(s.inactiveFields ?? []);
    const list = (s.fields ?? []).map((f, i) => [
      i ? ", " : "",
      inactive.has(f) ? h("span", { class: "inactive" }, `${f} (inactive)`) : f,
    ]);
    return h(
      "tr",
      { "data-id": s.id, class: s.base ? "base" : null },
      h("th", { scope: "row" }, code(s.id)),
      h("td", {}, s.description ?? ""),
      h("td", { class: "field-list" }, h("span", { class: "count" }, `${(s.fields ?? []).length}: `), list),
      h("td", {}, s.base ? badge("base", "base") : badge("custom", "custom")),
      h(
        "td",
        { class: "row-actions" },
        s.base || s.readOnly
          ? h("span", { class: "muted" }, "read-only")
          : [
              action("Edit", `Edit field set ${s.id}`, async () => editFieldset(s)),
              action("Delete", `Delete field set ${s.id}`, () => deleteFieldset(s), "danger small"),
            ],
      ),
    );
  });
  fillTable($("fieldsets-table"), rows, "No field sets yet.");
}

/** One row per field: "in the set" and "inactive" checkboxes, keeping what was checked. */
function renderFieldPicker() {
  const list = $("fieldset-fields-list");
  const chosen = new Set();
  const inactive = new Set();
  if (list.childElementCount) {
    for (const b of list.querySelectorAll('input[name="fields"]:checked')) chosen.add(b.value);
    for (const b of list.querySelectorAll('input[name="inactive"]:checked')) inactive.add(b.value);
  } else if (state.editingFieldset) {
    for (const f of state.editingFieldset.fields ?? []) chosen.add(f);
    for (const f of state.editingFieldset.inactiveFields ?? []) inactive.add(f);
  }
  const ids = [...state.fields].sort(byBaseThenId).map((f) => f.id);
  // Fields of the set that the dictionary no longer lists are kept visible.
  for (const f of chosen) if (!ids.includes(f)) ids.push(f);
  const byId = new Map(state.fields.map((f) => [f.id, f]));
  list.replaceChildren(
    ...ids.map((id, i) => {
      const f = byId.get(id);
      const inId = `fieldset-field-${i}`;
      const offId = `fieldset-inactive-${i}`;
      const label = f ? labelOf(f) : "";
      return h(
        "div",
        { class: "picker-row", "data-id": id },
        h(
          "div",
          { class: "check" },
          h("input", { type: "checkbox", id: inId, name: "fields", value: id, checked: chosen.has(id) }),
          h(
            "label",
            { for: inId },
            code(id),
            label && label !== id ? h("span", { class: "muted" }, ` ${label}`) : null,
            f ? h("span", { class: "muted small" }, ` · ${f.dataType}`) : null,
          ),
        ),
        h(
          "div",
          { class: "check inactive-check" },
          h("input", {
            type: "checkbox",
            id: offId,
            name: "inactive",
            value: id,
            checked: inactive.has(id),
            disabled: !chosen.has(id),
          }),
          h("label", { for: offId }, "inactive", h("span", { class: "visually-hidden" }, ` ${id}`)),
        ),
      );
    }),
  );
  filterFieldPicker();
}

function filterFieldPicker() {
  const q = $("fieldset-fields-filter").value.trim().toLowerCase();
  for (const row of $("fieldset-fields-list").children) {
    const box = row.querySelector('input[name="fields"]');
    // Checked fields stay visible, so the set's content is never hidden by a filter.
    row.hidden = !!q && !box.checked && !row.textContent.toLowerCase().includes(q);
  }
}

function resetFieldsetForm() {
  const form = $("fieldset-form");
  form.reset();
  clearErrors(form);
  state.editingFieldset = null;
  $("fieldset-id").readOnly = false;
  $("fieldset-form-title").textContent = "New field set";
  $("fieldset-save").textContent = "Create field set";
  $("fieldset-cancel").hidden = true;
  $("fieldset-fields-list").replaceChildren();
  renderFieldPicker();
}

function editFieldset(s) {
  resetFieldsetForm();
  state.editingFieldset = s;
  $("fieldset-fields-list").replaceChildren();
  renderFieldPicker();
  $("fieldset-form-title").textContent = `Edit field set ${s.id}`;
  $("fieldset-save").textContent = "Save field set";
  $("fieldset-cancel").hidden = false;
  $("fieldset-id").value = s.id;
  $("fieldset-id").readOnly = true;
  $("fieldset-description").value = s.description ?? "";
  $("fieldset-form").scrollIntoView({ block: "nearest" });
  $("fieldset-description").focus();
}

/** The checked ids, in the set's stored order first (a reorder alone is a change). */
function keepOrder(original, checked) {
  const set = new Set(checked);
  const out = (original ?? []).filter((f) => set.has(f));
  for (const f of checked) if (!out.includes(f)) out.push(f);
  return out;
}

async function saveFieldset() {
  const list = $("fieldset-fields-list");
  const checked = [...list.querySelectorAll('input[name="fields"]:checked')].map((b) => b.value);
  const off = [...list.querySelectorAll('input[name="inactive"]:checked')]
    .map((b) => b.value)
    .filter((f) => checked.includes(f));
  const editing = state.editingFieldset;
  const body = {
    id: $("fieldset-id").value.trim(),
    description: $("fieldset-description").value.trim(),
    fields: keepOrder(editing?.fields, checked),
    inactiveFields: keepOrder(editing?.inactiveFields, off),
  };
  if (body.fields.length === 0) {
    throw new FormError([{ field: "fields", message: "choose at least one field" }]);
  }
  if (editing) {
    await api("PUT", `v1/fieldsets/${enc(editing.id)}`, body);
    toast(`Field set ${body.id} saved.`, { kind: "success" });
  } else {
    await api("POST", "v1/fieldsets", body);
    toast(`Field set ${body.id} created.`, { kind: "success" });
  }
  resetFieldsetForm();
  await loadFieldsets();
  $("fieldset-id").focus();
}

async function deleteFieldset(s) {
  if (!confirm(`Delete the field set ${s.id}? This can't be undone.`)) return;
  await api("DELETE", `v1/fieldsets/${enc(s.id)}`);
  toast(`Field set ${s.id} deleted.`, { kind: "success" });
  if (state.editingFieldset?.id === s.id) resetFieldsetForm();
  await loadFieldsets();
}

function initFieldsets() {
  onSubmit($("fieldset-form"), saveFieldset);
  $("fieldset-cancel").addEventListener("click", () => {
    resetFieldsetForm();
    $("fieldset-id").focus();
  });
  $("fieldset-fields-filter").addEventListener("input", filterFieldPicker);
  $("fieldset-fields-list").addEventListener("change", (ev) => {
    const box = ev.target;
    if (box.name !== "fields") return;
    const off = box.closest(".picker-row").querySelector('input[name="inactive"]');
    off.disabled = !box.checked;
    if (!box.checked) off.checked = false;
  });
  $("fieldsets-refresh").addEventListener("click", loadFieldsets);
}

// ---------------------------------------------------------------------------------------
// Users

async function fetchUsers() {
  state.users = (await api("GET", "v1/users")) ?? [];
  return state.users;
}

async function loadUsers() {
  const table = $("users-table");
  tableLoading(table);
  try {
    await fetchUsers();
    renderUsers();
  } catch (err) {
    tableFailed(table, err);
  }
}

function renderUsers() {
  const me = state.who?.id;
  const rows = [...state.users]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((u) =>
      h(
        "tr",
        { "data-id": u.id, class: u.disabled ? "disabled" : null },
        h("th", { scope: "row" }, u.name, u.id === me ? h("span", { class: "muted" }, " (you)") : null),
        h("td", {}, u.role),
        h("td", {}, u.disabled ? badge("disabled", "revoked") : badge("enabled", "ok")),
        h("td", {}, timeCell(u.created)),
        h("td", {}, code(u.id)),
        h(
          "td",
          { class: "row-actions" },
          action("Edit", `Edit user ${u.name}`, async () => editUser(u)),
          action(u.disabled ? "Enable" : "Disable", `${u.disabled ? "Enable" : "Disable"} user ${u.name}`, () =>
            setUserDisabled(u, !u.disabled),
          ),
          action("End sessions", `End sessions of user ${u.name}`, () => endSessions(u)),
          action("Delete", `Delete user ${u.name}`, () => deleteUser(u), "danger small"),
        ),
      ),
    );
  fillTable($("users-table"), rows, "No users.");
}

function resetUserForm() {
  const form = $("user-form");
  form.reset();
  clearErrors(form);
  state.editingUser = null;
  $("user-name").readOnly = false;
  $("user-password").required = true;
  $("user-password-label").textContent = "Password";
  $("user-form-title").textContent = "New user";
  $("user-save").textContent = "Create user";
  $("user-cancel").hidden = true;
}

function editUser(u) {
  resetUserForm();
  state.editingUser = u;
  $("user-form-title").textContent = `Edit user ${u.name}`;
  $("user-save").textContent = "Save user";
  $("user-cancel").hidden = false;
  $("user-name").value = u.name;
  $("user-name").readOnly = true;
  $("user-role").value = u.role;
  $("user-password").required = false;
  $("user-password-label").textContent = "New password (empty: keep; a new one ends their sessions)";
  $("user-form").scrollIntoView({ block: "nearest" });
  $("user-role").focus();
}

async function saveUser() {
  const editing = state.editingUser;
  const role = $("user-role").value;
  const password = $("user-password").value;
  if (editing) {
    const patch = {};
    if (role !== editing.role) patch.role = role;
    if (password) patch.password = password;
    if (Object.keys(patch).length === 0) {
      throw new FormError([], "Nothing to change: choose another role or type a new password.");
    }
    await api("PATCH", `v1/users/${enc(editing.id)}`, patch);
    toast(`User ${editing.name} saved.`, { kind: "success" });
  } else {
    const name = $("user-name").value.trim();
    await api("POST", "v1/users", { name, role, password });
    toast(`User ${name} created.`, { kind: "success" });
  }
  resetUserForm();
  await loadUsers();
  $("user-name").focus();
}

async function setUserDisabled(u, disabled) {
  if (disabled && !confirm(`Disable ${u.name}? Their sessions end at once.`)) return;
  await api("PATCH", `v1/users/${enc(u.id)}`, { disabled });
  toast(`User ${u.name} ${disabled ? "disabled" : "enabled"}.`, { kind: "success" });
  await loadUsers();
}

async function endSessions(u) {
  if (!confirm(`End every session of ${u.name}?`)) return;
  const res = await api("DELETE", `v1/users/${enc(u.id)}/sessions`);
  const n = res?.revoked ?? 0;
  toast(`${n} session${n === 1 ? "" : "s"} of ${u.name} ended.`, { kind: "success" });
}

async function deleteUser(u) {
  if (!confirm(`Delete the user ${u.name}? This can't be undone.`)) return;
  await api("DELETE", `v1/users/${enc(u.id)}`);
  toast(`User ${u.name} deleted.`, { kind: "success" });
  if (state.editingUser?.id === u.id) resetUserForm();
  await loadUsers();
}

function initUsers() {
  onSubmit($("user-form"), saveUser);
  $("user-cancel").addEventListener("click", () => {
    resetUserForm();
    $("user-name").focus();
  });
  $("users-refresh").addEventListener("click", loadUsers);
}

// ---------------------------------------------------------------------------------------
// API keys

async function fetchKeys() {
  state.keys = (await api("GET", "v1/keys")) ?? [];
  return state.keys;
}

function keyState(k) {
  if (k.revoked) return badge("revoked", "revoked");
  if (k.expiresAt && new Date(k.expiresAt) <= new Date()) return badge("expired", "stale");
  return badge("active", "ok");
}

async function loadKeys() {
  const table = $("keys-table");
  tableLoading(table);
  try {
    await fetchKeys();
    const rows = [...state.keys]
      .sort((a, b) => Number(a.revoked) - Number(b.revoked) || String(b.created).localeCompare(String(a.created)))
      .map((k) =>
        h(
          "tr",
          { "data-id": k.id, class: k.revoked ? "disabled" : null },
          h("th", { scope: "row" }, k.name),
          h("td", {}, k.role),
          h("td", {}, keyState(k)),
          h("td", {}, timeCell(k.created)),
          h("td", {}, k.expiresAt ? timeCell(k.expiresAt) : h("span", { class: "muted" }, "never")),
          h("td", {}, code(k.id)),
          h(
            "td",
            { class: "row-actions" },
            k.revoked ? null : action("Revoke", `Revoke key ${k.name}`, () => revokeKey(k), "danger small"),
          ),
        ),
      );
    fillTable(table, rows, "No API keys.");
  } catch (err) {
    tableFailed(table, err);
  }
}

async function saveKey() {
  const name = $("key-name").value.trim();
  const body = { name, role: $("key-role").value };
  const expiresAt = isoFromLocal($("key-expires").value, "expiresAt");
  if (expiresAt) body.expiresAt = expiresAt;
  const key = await api("POST", "v1/keys", body);
  $("key-form").reset();
  await loadKeys();
  showOnce("key-created", "key-token", `Token of the key ${key?.name ?? name} (${key?.role ?? body.role})`, key?.token ?? "");
  toast(`Key ${name} created. Copy its token now.`, { kind: "success" });
}

async function revokeKey(k) {
  if (!confirm(`Revoke the key ${k.name}? Programs using it stop working at once.`)) return;
  await api("DELETE", `v1/keys/${enc(k.id)}`);
  toast(`Key ${k.name} revoked.`, { kind: "success" });
  await loadKeys();
}

function initKeys() {
  onSubmit($("key-form"), saveKey);
  wireOnce("key-created", "key-token");
  $("keys-refresh").addEventListener("click", loadKeys);
}

// ---------------------------------------------------------------------------------------
// Partner grants (no list endpoint: the grants made here are kept for this browser session)

function grantsKey() {
  return `contextd.admin.grants.${state.who?.orgId}.${state.who?.partition}`;
}

function storedGrants() {
  try {
    const list = JSON.parse(sessionStorage.getItem(grantsKey()) ?? "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

function storeGrants(list) {
  try {
    sessionStorage.setItem(grantsKey(), JSON.stringify(list));
  } catch {
    // Storage full or refused: the list lives on in this page only.
  }
}

function renderGrants() {
  const rows = storedGrants()
    .slice()
    .reverse()
    .map((g) => {
      const expired = !g.revoked && new Date(g.expiresAt) <= new Date();
      return h(
        "tr",
        { "data-id": g.id, class: g.revoked ? "disabled" : null },
        h("th", { scope: "row" }, code(g.id)),
        h("td", {}, g.principalName ? `${g.principalName} ` : "", code(g.principal)),
        h("td", {}, timeCell(g.expiresAt)),
        h(
          "td",
          {},
          g.revoked ? badge("revoked", "revoked") : expired ? badge("expired", "stale") : badge("active", "ok"),
        ),
        h(
          "td",
          { class: "row-actions" },
          g.revoked ? null : action("Revoke", `Revoke grant ${g.id}`, () => revokeGrant(g.id), "danger small"),
        ),
      );
    });
  fillTable($("grants-table"), rows, "No grants made in this session.");
}

async function loadGrants() {
  renderGrants();
  if (!$("grant-expires").value) {
    $("grant-expires").value = localInputValue(new Date(Date.now() + 7 * 86400e3));
  }
  // Suggestions: this partition's partner users and keys; the grant works without them.
  const [users, keys] = await Promise.allSettled([fetchUsers(), fetchKeys()]);
  const options = [];
  if (users.status === "fulfilled") {
    for (const u of users.value) {
      if (u.role === "partner" && !u.disabled) options.push(h("option", { value: u.id, label: `user ${u.name}` }));
    }
  }
  if (keys.status === "fulfilled") {
    for (const k of keys.value) {
      if (k.role === "partner" && !k.revoked) options.push(h("option", { value: k.id, label: `key ${k.name}` }));
    }
  }
  $("grant-principals").replaceChildren(...options);
}

function principalName(id) {
  const u = state.users.find((x) => x.id === id);
  if (u) return `user ${u.name}`;
  const k = state.keys.find((x) => x.id === id);
  return k ? `key ${k.name}` : "";
}

async function saveGrant() {
  const principal = $("grant-principal").value.trim();
  const errors = [];
  if (!UUID_RE.test(principal)) errors.push({ field: "principal", message: "the id of a partner user or API key" });
  const expiresAt = isoFromLocal($("grant-expires").value, "expiresAt");
  if (!expiresAt) errors.push({ field: "expiresAt", message: "required" });
  if (errors.length) throw new FormError(errors);
  const res = await api("POST", "v1/grants", { principal, expiresAt });
  const list = storedGrants();
  list.push({ id: res.id, principal, principalName: principalName(principal), expiresAt, revoked: false });
  storeGrants(list);
  $("grant-principal").value = "";
  renderGrants();
  toast(`Access granted until ${formatTime(expiresAt)}. Grant id ${res.id}.`, { kind: "success" });
}

async function revokeGrant(id) {
  if (!confirm(`Revoke the grant ${id}? The partner stops seeing protected values at once.`)) return false;
  await api("DELETE", `v1/grants/${enc(id)}`);
  const list = storedGrants();
  for (const g of list) if (g.id === id) g.revoked = true;
  storeGrants(list);
  renderGrants();
  toast(`Grant ${id} revoked.`, { kind: "success" });
  return true;
}

function initGrants() {
  onSubmit($("grant-form"), saveGrant);
  onSubmit($("grant-revoke-form"), async () => {
    const id = $("grant-revoke-id").value.trim();
    if (!UUID_RE.test(id)) throw new FormError([{ field: "id", message: "a grant id (a UUID)" }]);
    if (await revokeGrant(id)) $("grant-revoke-id").value = "";
  });
}

// ---------------------------------------------------------------------------------------
// Connectors

const CONNECTOR_STATES = { registered: "ok", stale: "stale", revoked: "revoked" };

async function loadConnectors() {
  const table = $("connectors-table");
  tableLoading(table);
  try {
    const list = (await api("GET", "v1/connectors")) ?? [];
    const rows = list
      .sort(
        (a, b) =>
          Number(a.state === "revoked") - Number(b.state === "revoked") || a.name.localeCompare(b.name),
      )
      .map((c) =>
        h(
          "tr",
          { "data-id": c.id, class: c.state === "revoked" ? "disabled" : null },
          h("th", { scope: "row" }, c.name),
          h("td", {}, c.appType ?? c.type ?? ""),
          h("td", {}, c.version ?? h("span", { class: "muted" }, "—")),
          h("td", {}, badge(c.state, CONNECTOR_STATES[c.state])),
          h("td", {}, c.lastSeen ? timeCell(c.lastSeen) : h("span", { class: "muted" }, "never")),
          h("td", {}, timeCell(c.created)),
          h(
            "td",
            {},
            c.rotated ? timeCell(c.rotated) : h("span", { class: "muted" }, "—"),
            c.graceUntil && new Date(c.graceUntil) > new Date()
              ? h("div", { class: "muted small" }, "old secrets work until ", timeCell(c.graceUntil))
              : null,
          ),
          h(
            "td",
            { class: "row-actions" },
            c.state === "revoked"
              ? null
              : [
                  action("Rotate", `Rotate the secrets of ${c.name}`, () => rotateConnector(c)),
                  action("Revoke", `Revoke connector ${c.name}`, () => revokeConnector(c), "danger small"),
                ],
          ),
        ),
      );
    fillTable(table, rows, "No connectors.");
  } catch (err) {
    tableFailed(table, err);
  }
}

async function saveConnector() {
  const name = $("connector-name").value.trim();
  const body = { name, appType: $("connector-type").value };
  const version = $("connector-version").value.trim();
  if (version) body.version = version;
  const created = await api("POST", "v1/connectors", body);
  $("connector-form").reset();
  await loadConnectors();
  showOnce("connector-created", "connector-data", `connectionData of ${created?.connector?.name ?? name}`, created?.connectionData ?? "");
  toast(`Connector ${name} created. Copy its connectionData now.`, { kind: "success" });
}

async function rotateConnector(c) {
  if (!confirm(`Rotate the secrets of ${c.name}? Its old secrets keep working for one hour.`)) return;
  const rotated = await api("POST", `v1/connectors/${enc(c.id)}/rotate`, {});
  await loadConnectors();
  showOnce("connector-created", "connector-data", `New connectionData of ${c.name}`, rotated?.connectionData ?? "");
  toast(`Secrets of ${c.name} rotated. Copy the new connectionData now.`, { kind: "success" });
}

async function revokeConnector(c) {
  if (!confirm(`Revoke the connector ${c.name}? The component can't connect any more.`)) return;
  await api("DELETE", `v1/connectors/${enc(c.id)}`);
  toast(`Connector ${c.name} revoked.`, { kind: "success" });
  await loadConnectors();
}

function initConnectors() {
  onSubmit($("connector-form"), saveConnector);
  wireOnce("connector-created", "connector-data");
  $("connectors-refresh").addEventListener("click", loadConnectors);
}

// ---------------------------------------------------------------------------------------
// Webhooks and their deliveries

function filterSummary(f) {
  const parts = [];
  if (f?.types?.length) parts.push(f.types.join(", "));
  if (f?.customerId) parts.push(`customer ${f.customerId}`);
  if (f?.contributor) parts.push(`by ${f.contributor}`);
  if (f?.mediaType) parts.push(`${f.mediaType} only`);
  return parts.length ? parts.join("; ") : "all events";
}

async function loadWebhooks() {
  const table = $("webhooks-table");
  tableLoading(table);
  try {
    const list = (await api("GET", "v1/webhooks")) ?? [];
    const rows = list.map((w) =>
      h(
        "tr",
        { "data-id": w.id },
        h("th", { scope: "row", class: "url" }, w.url),
        h("td", {}, w.description ?? ""),
        h("td", {}, filterSummary(w.filter)),
        h("td", { class: "num" }, fmtCount(w.deliveredThrough)),
        h("td", { class: "num" }, w.deadLetters ? badge(fmtCount(w.deadLetters), "revoked") : "0"),
        h("td", {}, timeCell(w.created)),
        h(
          "td",
          { class: "row-actions" },
          action("Deliveries", `Deliveries to ${w.url}`, () => openDeliveries(w)),
          action("Delete", `Delete webhook ${w.url}`, () => deleteWebhook(w), "danger small"),
        ),
      ),
    );
    fillTable(table, rows, "No webhooks.");
    if (state.webhook && !list.some((w) => w.id === state.webhook.id)) closeDeliveries();
  } catch (err) {
    tableFailed(table, err);
  }
}

async function saveWebhook() {
  const url = $("webhook-url").value.trim();
  const filter = {};
  const types = [...$("webhook-types").querySelectorAll("input:checked")].map((b) => b.value);
  if (types.length) filter.types = types;
  const customerId = $("webhook-customer").value.trim();
  if (customerId) filter.customerId = customerId;
  const contributor = $("webhook-contributor").value.trim();
  if (contributor) filter.contributor = contributor;
  const mediaType = $("webhook-media").value;
  if (mediaType) filter.mediaType = mediaType;
  const body = { url, filter, description: $("webhook-description").value.trim() };
  const created = await api("POST", "v1/webhooks", body);
  $("webhook-form").reset();
  await loadWebhooks();
  showOnce("webhook-created", "webhook-secret", `Signing secret of ${url}`, created?.secret ?? "");
  toast("Webhook created. Copy its signing secret now.", { kind: "success" });
}

async function deleteWebhook(w) {
  if (!confirm(`Delete the webhook ${w.url}? Deliveries stop and its delivery log is removed.`)) return;
  await api("DELETE", `v1/webhooks/${enc(w.id)}`);
  toast("Webhook deleted.", { kind: "success" });
  if (state.webhook?.id === w.id) closeDeliveries();
  await loadWebhooks();
}

async function openDeliveries(w) {
  state.webhook = w;
  $("deliveries-title").textContent = `Deliveries to ${w.url}`;
  $("deliveries-panel").hidden = false;
  $("deliveries-table").tBodies[0].replaceChildren();
  await loadDeliveries();
  $("deliveries-title").focus();
}

function closeDeliveries() {
  state.webhook = null;
  $("deliveries-panel").hidden = true;
  $("deliveries-table").tBodies[0].replaceChildren();
}

const OUTCOMES = { delivered: "ok", failed: "stale", dead: "revoked" };

async function loadDeliveries() {
  const w = state.webhook;
  if (!w) return;
  const table = $("deliveries-table");
  tableLoading(table);
  const q = new URLSearchParams();
  const outcome = $("deliveries-outcome").value;
  if (outcome) q.set("outcome", outcome);
  const qs = q.toString();
  try {
    const res = await api("GET", `v1/webhooks/${enc(w.id)}/deliveries${qs ? `?${qs}` : ""}`);
    if (state.webhook !== w) return;
    const rows = (res?.items ?? []).map((d) =>
      h(
        "tr",
        { "data-id": String(d.id) },
        h("th", { scope: "row", class: "num" }, String(d.eventId)),
        h("td", {}, d.eventType),
        h("td", { class: "num" }, String(d.attempt)),
        h("td", {}, badge(d.outcome, OUTCOMES[d.outcome])),
        h("td", { class: "num" }, d.status == null ? "—" : String(d.status)),
        h("td", { class: "error-text" }, d.error ?? ""),
        h("td", {}, timeCell(d.at)),
        h("td", { class: "num" }, d.durationMs == null ? "—" : `${d.durationMs} ms`),
        h(
          "td",
          { class: "row-actions" },
          action("Redeliver", `Redeliver event ${d.eventId}`, () => redeliver(w, d)),
        ),
      ),
    );
    fillTable(table, rows, outcome ? `No ${outcome} attempts.` : "No delivery attempts yet.");
  } catch (err) {
    tableFailed(table, err);
  }
}

async function redeliver(w, d) {
  const attempt = await api("POST", `v1/webhooks/${enc(w.id)}/deliveries/${enc(String(d.id))}/redeliver`);
  const ok = attempt?.outcome === "delivered";
  const status = attempt?.status ? ` (HTTP ${attempt.status})` : "";
  toast(`Event ${d.eventId} redelivered: ${attempt?.outcome ?? "sent"}${status}.`, { kind: ok ? "success" : "error" });
  await Promise.all([loadDeliveries(), loadWebhooks()]);
}

function initWebhooks() {
  onSubmit($("webhook-form"), saveWebhook);
  wireOnce("webhook-created", "webhook-secret");
  $("webhooks-refresh").addEventListener("click", loadWebhooks);
  $("deliveries-refresh").addEventListener("click", loadDeliveries);
  $("deliveries-outcome").addEventListener("change", loadDeliveries);
  $("deliveries-close").addEventListener("click", () => {
    closeDeliveries();
    $("webhooks-refresh").focus();
  });
}

// ---------------------------------------------------------------------------------------
// Audit log

function auditParams() {
  const q = new URLSearchParams();
  const put = (key, value) => {
    if (value) q.set(key, value);
  };
  const actor = $("audit-actor").value.trim();
  if (actor && !UUID_RE.test(actor)) {
    throw new FormError([{ field: "actor", message: "a user or key id (a UUID)" }]);
  }
  const limit = $("audit-limit").value.trim();
  if (limit && !(Number.isInteger(Number(limit)) && Number(limit) >= 1 && Number(limit) <= 200)) {
    throw new FormError([{ field: "limit", message: "a whole number from 1 to 200" }]);
  }
  put("action", $("audit-action").value.trim());
  put("actor", actor);
  put("objectId", $("audit-object").value.trim());
  put("from", isoFromLocal($("audit-from").value, "from"));
  put("to", isoFromLocal($("audit-to").value, "to"));
  put("limit", limit || "50");
  return q;
}

function actorText(entry) {
  if (!entry.actor) return h("span", { class: "muted" }, "—");
  const u = state.users.find((x) => x.id === entry.actor);
  const k = !u && state.keys.find((x) => x.id === entry.actor);
  const name = u ? u.name : k ? `key ${k.name}` : null;
  return [
    name ? h("span", {}, `${name} `) : null,
    code(entry.actor),
    entry.actorRole ? h("span", { class: "muted" }, ` (${entry.actorRole})`) : null,
  ];
}

async function loadAuditPage() {
  const table = $("audit-table");
  tableLoading(table);
  const a = state.audit;
  const q = new URLSearchParams(a.params ?? "limit=50");
  const cursor = a.cursors.at(-1);
  if (cursor) q.set("cursor", cursor);
  $("audit-prev").disabled = true;
  $("audit-next").disabled = true;
  const res = await api("GET", `v1/audit?${q}`);
  a.next = res?.nextCursor ?? null;
  const rows = (res?.items ?? []).map((e) =>
    h(
      "tr",
      { "data-id": e.id },
      h("th", { scope: "row" }, timeCell(e.at)),
      h("td", {}, code(e.action)),
      h("td", {}, actorText(e)),
      h("td", {}, e.objectType ? `${e.objectType} ` : "", e.objectId ? code(e.objectId) : null),
      h("td", {}, (e.fields ?? []).join(", ")),
      h("td", { class: "detail" }, e.detail ?? ""),
    ),
  );
  fillTable(table, rows, a.cursors.length > 1 ? "No more entries." : "No entries match.");
  $("audit-page").textContent = `Page ${a.cursors.length}`;
  $("audit-prev").disabled = a.cursors.length <= 1;
  $("audit-next").disabled = !a.next;
}

async function searchAudit() {
  state.audit = { params: auditParams().toString(), cursors: [null], next: null };
  try {
    await loadAuditPage();
  } catch (err) {
    tableFailed($("audit-table"), err);
    throw err;
  }
}

async function loadAudit() {
  // Names for the actor column; the log reads fine without them.
  if (state.users.length === 0 && state.keys.length === 0) {
    await Promise.allSettled([fetchUsers(), fetchKeys()]);
  }
  if (!state.audit.params) {
    let params = "limit=50";
    try {
      params = auditParams().toString();
    } catch {
      // A half-typed filter: the first page unfiltered until the form is submitted.
    }
    state.audit = { params, cursors: [null], next: null };
  }
  try {
    await loadAuditPage();
  } catch (err) {
    tableFailed($("audit-table"), err);
  }
}

async function auditStep(forward) {
  const a = state.audit;
  if (forward) {
    if (!a.next) return;
    a.cursors.push(a.next);
  } else {
    if (a.cursors.length <= 1) return;
    a.cursors.pop();
  }
  try {
    await loadAuditPage();
  } catch (err) {
    tableFailed($("audit-table"), err);
    toast(problemText(err), { kind: "error" });
  }
}

function initAudit() {
  onSubmit($("audit-form"), searchAudit);
  $("audit-form").addEventListener("reset", () => {
    clearErrors($("audit-form"));
    // After the reset has restored the defaults.
    setTimeout(() => {
      state.audit = { params: null, cursors: [null], next: null };
      loadAudit();
    });
  });
  $("audit-next").addEventListener("click", () => auditStep(true));
  $("audit-prev").addEventListener("click", () => auditStep(false));
}

// ---------------------------------------------------------------------------------------
// Status and live statistics

const STATUS_KINDS = { ok: "ok", degraded: "stale", down: "revoked" };

function fact(term, ...value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, ...value));
}

async function loadStatus() {
  const panel = $("status-panel");
  panel.setAttribute("aria-busy", "true");
  try {
    const s = await api("GET", "v1/status");
    const facts = [
      fact("Status", badge(s.status, STATUS_KINDS[s.status])),
      fact("Version", s.version ?? "—"),
      fact("Uptime", fmtUptime(s.uptimeSeconds)),
      fact("Partition", s.partition ?? "—"),
    ];
    if (s.encryption) {
      const e = s.encryption;
      facts.push(
        fact(
          "Encryption",
          `data key version ${e.dataKeyVersion}, ${e.state}`,
          e.pendingObjects || e.pendingCustomerKeys
            ? ` (to re-encrypt: ${fmtCount(e.pendingObjects)} objects, ${fmtCount(e.pendingCustomerKeys)} customer keys)`
            : "",
          e.error ? h("div", { class: "error-text" }, e.error) : null,
        ),
      );
    }
    if (s.connectors) {
      const c = s.connectors;
      facts.push(
        fact("Connectors", `${c.registered} registered, ${c.stale} stale, ${c.revoked} revoked`),
      );
    }
    const deps = (s.dependencies ?? []).map((d) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, d.name),
        h("td", {}, d.backend ?? ""),
        h("td", {}, d.reachable ? badge("reachable", "ok") : badge("unreachable", "revoked")),
        h("td", { class: "num" }, fmtMs(d.latencyMs)),
      ),
    );
    const depTable = h(
      "table",
      { id: "dependencies-table" },
      h("caption", {}, "Dependencies"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Dependency"),
          h("th", { scope: "col" }, "Backend"),
          h("th", { scope: "col" }, "Reachable"),
          h("th", { scope: "col", class: "num" }, "Latency ms"),
        ),
      ),
      h("tbody", {}),
    );
    fillTable(depTable, deps, "No dependencies reported.");
    panel.replaceChildren(h("dl", { class: "facts" }, facts), h("div", { class: "table-wrap" }, depTable));
  } catch (err) {
    panel.replaceChildren(h("p", { class: "error-text" }, problemText(err)));
  } finally {
    panel.removeAttribute("aria-busy");
  }
}

async function loadStats() {
  if (state.statsBusy || document.hidden) return;
  state.statsBusy = true;
  const table = $("stats-table");
  try {
    const s = await api("GET", "v1/stats");
    if (state.section !== "status") return;
    // Figures count from the last periodic summary (`since` when the server says when).
    $("stats-since").replaceChildren(
      s?.since
        ? h("span", {}, "Since ", timeCell(s.since), ".")
        : h(
            "span",
            {},
            "Since the last periodic summary",
            typeof s?.uptimeSeconds === "number" ? `; server up ${fmtUptime(s.uptimeSeconds)}` : "",
            ".",
          ),
    );
    $("stats-updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    const ops = Object.entries(s?.operations ?? {}).sort(([a], [b]) => a.localeCompare(b));
    const rows = ops.map(([name, o]) =>
      h(
        "tr",
        { "data-op": name, class: o.errors ? "has-errors" : null },
        h("th", { scope: "row" }, code(name)),
        h("td", { class: "num" }, fmtCount(o.count)),
        h("td", { class: "num" }, fmtCount(o.errors)),
        h("td", { class: "num" }, fmtMs(o.minMs)),
        h("td", { class: "num" }, fmtMs(o.meanMs)),
        h("td", { class: "num" }, fmtMs(o.maxMs)),
        h("td", { class: "num" }, fmtMs(o.p99Ms)),
      ),
    );
    fillTable(table, rows, "No operations recorded yet.");
  } catch (err) {
    tableFailed(table, err);
    // A server without statistics won't grow them in five seconds.
    if (err instanceof ApiError && (err.status === 404 || err.status === 403)) stopStats();
  } finally {
    state.statsBusy = false;
  }
}

function startStats() {
  stopStats();
  tableLoading($("stats-table"));
  loadStats();
  state.statsTimer = setInterval(loadStats, STATS_EVERY_MS);
}

function stopStats() {
  if (state.statsTimer) clearInterval(state.statsTimer);
  state.statsTimer = 0;
}

async function rotateDataKey() {
  if (
    !confirm(
      "Add a new data-key version to this partition? New writes use it at once; older values are re-encrypted in the background.",
    )
  ) {
    return;
  }
  const res = await api("POST", "v1/encryption/rotate");
  toast(`Data key version ${res?.dataKeyVersion ?? "?"} in use; re-encryption runs in the background.`, {
    kind: "success",
  });
  await loadStatus();
}

function initStatus() {
  $("status-refresh").addEventListener("click", () => {
    loadStatus();
    loadStats();
  });
  const rotate = $("encryption-rotate");
  rotate.addEventListener("click", async () => {
    rotate.disabled = true;
    try {
      await rotateDataKey();
    } catch (err) {
      toast(problemText(err), { kind: "error" });
    } finally {
      rotate.disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------------------
// Embedding settings

async function loadSettings() {
  $("desktop-url").textContent = new URL("desktop", document.baseURI).href;
  const form = $("embed-form");
  clearErrors(form);
  try {
    const s = await api("GET", "v1/settings/embedding");
    $("embed-origins").value = (s?.allowedOrigins ?? []).join("\n");
  } catch (err) {
    showError(form, err);
  }
}

/** One origin per line (`https://host[:port]`, no path), as the browser's `Origin` names it. */
function parseOrigins(text) {
  const errors = [];
  const origins = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let url = null;
    try {
      url = new URL(line);
    } catch {
      // reported below
    }
    const bare =
      url &&
      /^https?:$/.test(url.protocol) &&
      url.pathname === "/" &&
      !url.search &&
      !url.hash &&
      !url.username &&
      !url.password &&
      !line.includes("?") &&
      !line.includes("#") &&
      !/^[a-z]+:\/\/[^/]+\/./i.test(line);
    if (!bare) {
      errors.push({
        field: "allowedOrigins",
        message: `line ${i + 1}: '${line}' is not an origin such as https://desk.example.com (scheme, host, optional port)`,
      });
    } else if (!origins.includes(url.origin)) {
      origins.push(url.origin);
    }
  });
  if (errors.length) throw new FormError(errors);
  return origins;
}

async function saveSettings() {
  const allowedOrigins = parseOrigins($("embed-origins").value);
  const saved = await api("PUT", "v1/settings/embedding", { allowedOrigins });
  $("embed-origins").value = (saved?.allowedOrigins ?? allowedOrigins).join("\n");
  const n = allowedOrigins.length;
  toast(n ? `${n} allowed origin${n === 1 ? "" : "s"} saved.` : "Embedding turned off: no origin allowed.", {
    kind: "success",
  });
}

function initSettings() {
  onSubmit($("embed-form"), saveSettings);
}

// ---------------------------------------------------------------------------------------
// Sections and navigation

const LOADERS = {
  fields: loadFields,
  fieldsets: loadFieldsets,
  users: loadUsers,
  keys: loadKeys,
  grants: loadGrants,
  connectors: loadConnectors,
  webhooks: loadWebhooks,
  audit: loadAudit,
  status: () => {
    loadStatus();
    startStats();
  },
  settings: loadSettings,
};

function sectionFromHash() {
  let name;
  try {
    name = decodeURIComponent(location.hash.slice(1));
  } catch {
    return "fields"; // a malformed escape
  }
  return SECTIONS.includes(name) ? name : "fields";
}

function showSection(name, { focus = false } = {}) {
  if (state.section === "status" && name !== "status") stopStats();
  state.section = name;
  for (const s of SECTIONS) $(`section-${s}`).hidden = s !== name;
  for (const a of $("sections").querySelectorAll("[data-section]")) {
    if (a.dataset.section === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${$(`h-${name}`).textContent} · contextd admin`;
  if (focus) $(`h-${name}`).focus();
  Promise.resolve(LOADERS[name]()).catch((err) => toast(problemText(err), { kind: "error" }));
}

function initNavigation() {
  window.addEventListener("hashchange", () => {
    if (!$("console").hidden) showSection(sectionFromHash(), { focus: true });
  });
  // A click on the section already shown reloads it (no hashchange then).
  $("sections").addEventListener("click", (ev) => {
    const link = ev.target.closest("[data-section]");
    if (link && link.dataset.section === state.section && !$("console").hidden) {
      ev.preventDefault();
      showSection(state.section);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Session: sign-in, partition switch, sign-out

function otherPartition(p) {
  return p === "lab" ? "production" : "lab";
}

/** Forgets everything shown for the last session: once-shown secrets above all. */
function resetConsole() {
  stopStats();
  Object.assign(state, {
    who: null,
    section: null,
    fields: [],
    fieldsets: [],
    users: [],
    keys: [],
    audit: { params: null, cursors: [null], next: null },
  });
  hideOnce("key-created", "key-token");
  hideOnce("connector-created", "connector-data");
  hideOnce("webhook-created", "webhook-secret");
  closeDeliveries();
  resetFieldForm();
  resetFieldsetForm();
  resetUserForm();
  for (const id of ["key-form", "grant-form", "grant-revoke-form", "connector-form", "webhook-form", "embed-form"]) {
    $(id).reset();
    clearErrors($(id));
  }
  $("grant-principals").replaceChildren();
  for (const t of document.querySelectorAll("#console table")) t.tBodies[0]?.replaceChildren();
}

function showSignIn({ partition, name, org, message } = {}) {
  resetConsole();
  $("boot-status").hidden = true;
  $("session-info").hidden = true;
  $("console").hidden = true;
  $("forbidden").hidden = true;
  document.title = "Sign in · contextd admin";
  const form = signInForm({ partitionChoice: true, onSignedIn: (who) => enter(who) });
  $("signin-slot").replaceChildren(form);
  const set = (sel, value) => {
    const c = form.querySelector(sel);
    if (!c || !value) return;
    if (c.matches("input, select, textarea")) {
      c.value = value;
    } else {
      // A group of radio buttons.
      const radio = [...c.querySelectorAll('input[type="radio"]')].find((r) => r.value === value);
      if (radio) radio.checked = true;
    }
  };
  set("#signin-org", org || state.orgName);
  set("#signin-partition", partition);
  set("#signin-name", name);
  if (message) {
    const err = form.querySelector("#signin-error");
    if (err) {
      err.textContent = message;
      err.hidden = false;
    }
  }
  $("signin-area").hidden = false;
  const first = [...form.querySelectorAll("#signin-org, #signin-name, #signin-password")].find((c) => !c.value);
  (first ?? form.querySelector("#signin-password"))?.focus();
}

function enter(who) {
  if (!who) {
    showSignIn();
    return;
  }
  resetConsole();
  state.who = who;
  if (who.orgName) {
    // The next sign-in form (and the partition switch) proposes the organization.
    state.orgName = who.orgName;
    try {
      localStorage.setItem(ORG_KEY, who.orgName);
    } catch {
      // Not remembered: the form asks for it.
    }
  }
  $("boot-status").hidden = true;
  $("signin-area").hidden = true;
  $("signin-slot").replaceChildren();
  const display = who.name ?? who.id;
  $("who-org").replaceChildren(h("span", {}, who.orgName ? `${who.orgName} ` : null, code(who.orgId ?? "")));
  $("who-name").replaceChildren(h("span", {}, display), h("span", { class: "muted" }, ` (${who.role})`));
  const badgeEl = $("partition-badge");
  badgeEl.textContent = who.partition;
  badgeEl.className = `badge partition partition-${who.partition}`;
  const other = otherPartition(who.partition);
  $("partition-switch").textContent = `Switch to ${other}`;
  $("session-info").hidden = false;
  if (who.role !== "admin") {
    $("console").hidden = true;
    $("forbidden-name").textContent = display;
    $("forbidden-role").textContent = who.role;
    $("forbidden").hidden = false;
    document.title = "Administrator needed · contextd admin";
    $("forbidden-title").focus();
    return;
  }
  $("forbidden").hidden = true;
  $("console").hidden = false;
  showSection(sectionFromHash());
}

async function leave(next) {
  const who = state.who;
  state.who = null;
  try {
    await signOut();
  } catch (err) {
    // The session may be gone already; the cookie is cleared by the answer when it isn't.
    if (!(err instanceof ApiError && err.status === 401)) toast(problemText(err), { kind: "error" });
  }
  showSignIn(next(who));
}

function initSession() {
  $("signout").addEventListener("click", () => leave((who) => ({ partition: who?.partition })));
  $("forbidden-signout").addEventListener("click", () => leave((who) => ({ partition: who?.partition })));
  $("partition-switch").addEventListener("click", () =>
    leave((who) => ({
      partition: otherPartition(who?.partition),
      name: who?.name,
      org: who?.orgName || state.orgName,
    })),
  );
  window.addEventListener("contextd:signed-out", (ev) => {
    const who = state.who;
    if (!who) return;
    showSignIn({
      partition: who.partition,
      name: who.name,
      org: who.orgName,
      message: ev.detail?.notice || "Your session has ended. Sign in again.",
    });
  });
}

// ---------------------------------------------------------------------------------------
// Start

async function boot() {
  try {
    state.orgName = localStorage.getItem(ORG_KEY) ?? "";
  } catch {
    state.orgName = "";
  }
  initFields();
  initFieldsets();
  initUsers();
  initKeys();
  initGrants();
  initConnectors();
  initWebhooks();
  initAudit();
  initStatus();
  initSettings();
  initNavigation();
  initSession();
  let who = null;
  try {
    who = await whoami();
  } catch (err) {
    $("boot-status").textContent = `The service didn't answer: ${problemText(err)}`;
    $("boot-status").classList.add("error-text");
    return;
  }
  enter(who);
}

boot();
