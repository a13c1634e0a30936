// Shared by the agent desktop (/desktop) and the admin console (/admin).
// Plain ES module, no build step. Every URL is relative: the service may sit under a path prefix.
// Values from the service are only ever put in the page as text nodes (textContent), never parsed as markup.

const CSRF_KEY = "contextd.csrf";
const PROBLEM_PREFIX = "urn:contextd:problem:";
const SVG_NS = "http://www.w3.org/2000/svg";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** An error answer of the API (RFC 9457 problem JSON). */
export class ApiError extends Error {
  status;
  code;
  title;
  detail;
  errors;

  constructor(status, problem = {}) {
    const title = problem.title || (status ? `HTTP ${status}` : "Network error");
    const detail = problem.detail || "";
    super(detail || title);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    const type = typeof problem.type === "string" ? problem.type : "";
    this.code =
      problem.code || (type.startsWith(PROBLEM_PREFIX) ? type.slice(PROBLEM_PREFIX.length) : "");
  }
}

/** Said when the session cookie now belongs to someone else (a sign-in in another tab). */
const SIGNED_IN_ELSEWHERE = "You signed in elsewhere in this browser; sign in again.";
/** Said when the session predates the CSRF token's storage (an upgrade): it can't make changes. */
const SIGN_IN_AGAIN = "Please sign in again.";

/** The identity the page works as: {id, partition, orgId?}; set by signIn and whoami. */
let pageUser = null;
/** A message for the next sign-in form (#signin-error), taken once. */
let pendingNotice = "";
/** The dictionary's promise, once per session (see loadDictionary). */
let dictionary = null;

/** Tells the page that it is signed out; `notice` (optional) says why. */
function signedOut(notice = "") {
  pageUser = null;
  dictionary = null;
  window.dispatchEvent(new CustomEvent("contextd:signed-out", { detail: { notice } }));
}

function identityOf(who) {
  return who ? { id: who.id, partition: who.partition, orgId: who.orgId || "" } : null;
}

function sameIdentity(a, b) {
  return !!a && !!b && a.id === b.id && a.partition === b.partition
    && (!a.orgId || !b.orgId || a.orgId === b.orgId);
}

/**
 * Calls the API. `path` is relative (`v1/customers/search`). Returns the parsed JSON answer,
 * or null for 204 / an empty body. Throws ApiError on a non-2xx answer; a 401 also dispatches
 * `contextd:signed-out` on window (unless `options.quiet401`).
 */
export async function api(method, path, body, options = {}) {
  method = method.toUpperCase();
  const headers = { accept: "application/json, application/problem+json" };
  const init = { method, credentials: "same-origin", headers, cache: "no-store" };
  if (body !== undefined) {
    headers["content-type"] =
      method === "PATCH" ? "application/merge-patch+json" : "application/json";
    init.body = JSON.stringify(body);
  }
  if (UNSAFE.has(method)) {
    const token = sessionStorage.getItem(CSRF_KEY);
    if (token) headers["x-csrf-token"] = token;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, {
      title: "Network error",
      detail: "The service could not be reached. Check the connection and try again.",
    });
  }
  const text = res.status === 204 ? "" : await res.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!res.ok) {
    const problem = json && typeof json === "object" ? json : { title: res.statusText };
    if (res.status === 401 && !options.quiet401) signedOut();
    if (res.status === 403 && UNSAFE.has(method) && !options.csrfRetried
      && /csrf/i.test(`${problem.detail || ""} ${problem.title || ""}`)) {
      // The cookie may have changed hands (a sign-in in another tab): the same user again
      // brings a new token (then try once more), anyone else signs this page out.
      const who = await recheckSession();
      if (who) return api(method, path, body, { ...options, csrfRetried: true });
    }
    throw new ApiError(res.status, problem);
  }
  return json;
}

/** Signs in with name and password; the session cookie is set by the server. */
export async function signIn({ org, partition, name, password }) {
  const body = { org: org || "default", partition: partition || "production", name, password };
  dictionary = null; // another organization or partition has another dictionary
  pendingNotice = "";
  const session = await api("POST", "v1/sessions", body, { quiet401: true });
  if (session && session.csrfToken) sessionStorage.setItem(CSRF_KEY, session.csrfToken);
  pageUser = session && session.user ? { id: session.user.id, partition: body.partition, orgId: "" } : null;
  return session;
}

/** Ends the session (best effort) and forgets the CSRF token. */
export async function signOut() {
  try {
    await api("DELETE", "v1/sessions/current", undefined, { quiet401: true });
  } finally {
    sessionStorage.removeItem(CSRF_KEY);
    pageUser = null;
    dictionary = null;
  }
}

/**
 * Reads the session: the WhoAmI, or null when there is none (401) or when it has no CSRF token
 * (a session from before an upgrade: unusable for changes, so treated as none). Stores nothing.
 */
async function readSession() {
  try {
    const who = await api("GET", "v1/sessions/current", undefined, { quiet401: true });
    if (!who) return { who: null, stale: false };
    if (!who.csrfToken) return { who: null, stale: true };
    return { who, stale: false };
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return { who: null, stale: false };
    throw e;
  }
}

function adopt(who) {
  sessionStorage.setItem(CSRF_KEY, who.csrfToken);
  pageUser = identityOf(who);
}

/**
 * Who is signed in, or null when nobody is (the page then works as that user). A session
 * without a CSRF token counts as none, and the next sign-in form says "Please sign in again".
 */
export async function whoami() {
  const { who, stale } = await readSession();
  if (!who) {
    sessionStorage.removeItem(CSRF_KEY);
    pageUser = null;
    if (stale) pendingNotice = SIGN_IN_AGAIN;
    return null;
  }
  adopt(who);
  return who;
}

/**
 * Checks that the session cookie still belongs to the page's user. Returns the fresh WhoAmI
 * (its CSRF token stored), null after signing the page out (`contextd:signed-out`: no session
 * any more, or another identity's), or undefined when the service could not be asked.
 */
export async function recheckSession() {
  const before = pageUser;
  let read;
  try {
    read = await readSession();
  } catch {
    return undefined;
  }
  const { who, stale } = read;
  if (!who || (before && !sameIdentity(before, identityOf(who)))) {
    sessionStorage.removeItem(CSRF_KEY);
    signedOut(who ? SIGNED_IN_ELSEWHERE : (stale ? SIGN_IN_AGAIN : ""));
    return null;
  }
  adopt(who);
  return who;
}

const BOOLEAN_ATTRS = new Set(["hidden", "disabled", "required", "checked", "selected", "multiple", "readonly", "autofocus"]);

/**
 * Builds an element. attrs: class, id, for, type, name, value, data-*, aria-*, hidden,
 * disabled, other plain attributes (href, rel, role, placeholder…), and on: {event: fn}.
 * Children: nodes, strings/numbers (text nodes), arrays; null/false/undefined are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  let value;
  for (const [key, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (key === "on") {
      for (const [type, fn] of Object.entries(v)) if (fn) node.addEventListener(type, fn);
    } else if (key === "class") {
      node.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
    } else if (key === "for") {
      node.htmlFor = v;
    } else if (key === "value") {
      value = v;
    } else if (BOOLEAN_ATTRS.has(key)) {
      node[key === "readonly" ? "readOnly" : key] = true;
    } else if ((key === "href" || key === "src" || key === "action") && !webUrl(v)) {
      continue; // only http(s) URLs, never a script or data URL
    } else {
      node.setAttribute(key, v === true ? "" : String(v));
    }
  }
  append(node, children);
  // Set last, so that a <select>'s options exist when its value is chosen.
  if (value !== undefined) node.value = String(value);
  return node;
}

/** Whether `v` is a relative URL or an http(s) one (resolved against the page). */
function webUrl(v) {
  try {
    const u = new URL(String(v), location.href);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.append(child);
    else node.append(document.createTextNode(String(child)));
  }
}

/** `<svg class="icon"><use href="ui/icons.svg#name"></use></svg>`. */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS(SVG_NS, "use");
  use.setAttribute("href", `ui/icons.svg#${name}`);
  svg.append(use);
  return svg;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

/** A local short date and time, or "" / the input when it is not a date. */
export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : timeFormat.format(d);
}

/** The dictionary: {fields: Map(id → field), fieldsets: Map(id → fieldset)}, once per session (signIn, signOut and a sign-out forget it). */
export function loadDictionary() {
  if (!dictionary) {
    dictionary = Promise.all([api("GET", "v1/fields"), api("GET", "v1/fieldsets")]).then(
      ([fields, fieldsets]) => ({
        fields: new Map(listOf(fields).map((f) => [f.id, f])),
        fieldsets: new Map(listOf(fieldsets).map((s) => [s.id, s])),
      }),
      (e) => {
        dictionary = null;
        throw e;
      },
    );
  }
  return dictionary;
}

/** Forgets the cached dictionary and loads it again. */
export function reloadDictionary() {
  dictionary = null;
  return loadDictionary();
}

function listOf(x) {
  if (Array.isArray(x)) return x;
  return (x && Array.isArray(x.items) && x.items) || [];
}

const normLocale = (tag) => String(tag).replace(/_/g, "-").toLowerCase();

/**
 * The display label of a field: its translation for the browser's language (exact tag, then
 * the same language), then en-US, then any translation, then the id. Keys may be `en-US` or `en_US`.
 */
export function fieldLabel(field) {
  if (!field) return "";
  if (typeof field === "string") return field;
  const entries = Object.entries(field.translations || {}).filter(([, label]) => label);
  if (!entries.length) return field.id;
  const byTag = new Map(entries.map(([k, label]) => [normLocale(k), label]));
  const wanted = [...(navigator.languages || []), navigator.language].filter(Boolean).map(normLocale);
  for (const tag of wanted) if (byTag.has(tag)) return byTag.get(tag);
  for (const tag of wanted) {
    const lang = tag.split("-")[0];
    for (const [k, label] of byTag) if (k.split("-")[0] === lang) return label;
  }
  return byTag.get("en-us") || byTag.get("en") || entries[0][1] || field.id;
}

let formCount = 0;

const COOKIE_NOT_KEPT = "Signed in, but this browser did not keep the session cookie: "
  + "contextd and the host page must be on the same site.";

/**
 * The sign-in form: `form#signin` with #signin-org, #signin-partition (when partitionChoice),
 * #signin-name, #signin-password, #signin-submit and #signin-error (role=alert), which shows
 * `notice` (or a notice left by whoami) at first.
 * Calls onSignedIn(who) with the WhoAmI of the new session.
 */
export function signInForm({ partitionChoice = false, onSignedIn, notice = "" } = {}) {
  formCount += 1;
  const error = el("p", { id: "signin-error", class: "error", role: "alert", hidden: true });
  const org = el("input", { id: "signin-org", name: "org", type: "text", value: "default", autocomplete: "organization", required: true });
  const name = el("input", { id: "signin-name", name: "name", type: "text", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = el("input", { id: "signin-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const partition = partitionChoice
    ? el("select", { id: "signin-partition", name: "partition", value: "production" },
        el("option", { value: "production" }, "Production"),
        el("option", { value: "lab" }, "Lab"))
    : null;
  const submit = el("button", { id: "signin-submit", type: "submit", class: "primary" }, "Sign in");

  const form = el("form", { id: "signin", class: "signin", "aria-labelledby": `signin-title-${formCount}`, novalidate: true },
    el("h2", { id: `signin-title-${formCount}` }, "Sign in"),
    el("div", { class: "field" }, el("label", { for: "signin-org" }, "Organization"), org),
    partition && el("div", { class: "field" }, el("label", { for: "signin-partition" }, "Partition"), partition),
    el("div", { class: "field" }, el("label", { for: "signin-name" }, "User name"), name),
    el("div", { class: "field" }, el("label", { for: "signin-password" }, "Password"), password),
    error,
    el("div", { class: "actions" }, submit),
  );

  const showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };
  showError(notice || pendingNotice);
  pendingNotice = "";

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim() || !password.value) {
      showError("Enter your user name and password.");
      (name.value.trim() ? password : name).focus();
      return;
    }
    showError("");
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    const chosenPartition = partition ? partition.value : "production";
    try {
      const session = await signIn({
        org: org.value.trim() || "default",
        partition: chosenPartition,
        name: name.value.trim(),
        password: password.value,
      });
      const who = await whoami();
      if (!who) {
        // The cookie did not come back (e.g. a cross-site iframe): nothing would work.
        throw new Error(COOKIE_NOT_KEPT);
      }
      if (!who.name && session && session.user) who.name = session.user.name;
      password.value = "";
      if (onSignedIn) await onSignedIn(who);
    } catch (e) {
      showError(e && e.message ? e.message : "Sign-in failed.");
      password.select();
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
  return form;
}

/**
 * Shows a message in #notices (aria-live). kind: info | success | error. Info and success
 * go after about 8 seconds; an error stays until its close button dismisses it.
 */
export function toast(message, { kind = "info" } = {}) {
  let region = document.getElementById("notices");
  if (!region) {
    region = el("div", { id: "notices", class: "notices", "aria-live": "polite", role: "status" });
    document.body.append(region);
  }
  const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  const item = el("div", { class: ["toast", `toast-${kind}`], role: kind === "error" ? "alert" : null },
    el("span", { class: "toast-text" }, message), close);
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  region.append(item);
  if (kind !== "error") setTimeout(remove, 8000);
  return item;
}
