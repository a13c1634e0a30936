// The agent desktop ("Customer Context" gadget): find a customer, see the journey, take notes,
// move activities, pop new activities live, and obey a host desktop through postMessage.
// Values from the service are only ever put in the page as text nodes (textContent), never parsed as markup.

import {
  ApiError, api, el, icon, formatTime, loadDictionary, fieldLabel, signInForm, signOut, whoami, recheckSession, toast,
} from "./common.js";

const MEDIA_TYPES = ["voice", "chat", "email", "sms", "social", "video", "web", "mobile", "event"];
const MEDIA_LABELS = {
  voice: "Voice", chat: "Chat", email: "Email", sms: "SMS", social: "Social",
  video: "Video", web: "Web", mobile: "Mobile", event: "Event",
};
const PHONE_FIELDS = ["Context_Mobile_Phone", "Context_Home_Phone", "Context_Work_Phone"];
const EMAIL_FIELDS = ["Context_Home_Email", "Context_Work_Email"];
const SOURCE_FIELDS = ["Context_POD_Source_Cust_Name", "Context_POD_Source_Email", "Context_POD_Source_Phone"];
const TEXT_FIELDS = ["Context_Title", "Context_Description", "Context_Notes", "Context_Comment", "cccRatingComments"];
const SHOWN_FIELDS = new Set([...TEXT_FIELDS, ...SOURCE_FIELDS, "Context_POD_Activity_Link",
  "Context_DisplayName", "Context_Visible", "cccRatingPoints"]);
const COMMANDS = new Set(["showPodById", "showCustomer", "searchByPhone"]);
const PAGE_SIZE = 50;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const POPPED_MAX = 1000;
const NOTE_TRIES = 3;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

const S = {
  me: null,
  embed: false,
  metaOrigins: [], // every organization's allowed hosts (the page's meta tag)
  orgOrigins: null, // once signed in: the user's organization's own, within metaOrigins
  hostOrigin: null, // the origin of the last command obeyed
  queue: [], // at most one command, waiting for the sign-in: {cmd, origin} (origin null: the URL)
  customer: null, // the open customer
  solo: null, // an activity shown alone (it has no customer)
  openGen: 0,
  mediaType: "",
  requestFilter: null,
  tgen: 0, // timeline generation: answers of an older one are dropped
  cursor: null,
  done: true,
  loading: false,
  entries: new Map(), // id → object on the timeline
  requests: new Map(), // id → request object
  pendingRequests: new Map(), // id → promise
  customerRequests: null, // {customerId, promise}
  es: null,
  lastEventId: "",
  reopenTimer: 0,
  popped: new Set(),
  pop: null,
  observer: null,
};

// ---------------------------------------------------------------- boot

function boot() {
  const params = new URLSearchParams(location.search);
  S.embed = ["1", "true", "yes"].includes((params.get("embed") || "").toLowerCase());
  document.body.classList.toggle("embed", S.embed);
  S.metaOrigins = parseOrigins(document.querySelector('meta[name="contextd-embed-origins"]')?.content);

  window.addEventListener("message", onMessage);
  window.addEventListener("contextd:signed-out", (e) => {
    if (S.me) signedOut({ expired: true, notice: e.detail?.notice });
  });
  document.addEventListener("visibilitychange", onVisible);
  wireStatic();
  buildFilters();

  const podId = params.get("podId");
  const customerId = params.get("customerId");
  const phone = params.get("phone");
  let cmd = null;
  if (podId) cmd = { type: "showPodById", id: podId };
  else if (customerId) cmd = { type: "showCustomer", id: customerId };
  else if (phone) cmd = { type: "searchByPhone", number: phone };
  if (cmd) S.queue = [{ cmd, origin: null }];

  announceReady();
  start();
}

async function start() {
  let who = null;
  try {
    who = await whoami();
  } catch (e) {
    $("boot").textContent = `The service could not be reached: ${e.message}`;
    $("boot").classList.add("error");
    return;
  }
  if (who) await enter(who);
  else showSignIn();
}

/** Normalized origins (`scheme://host[:port]`) of a list or a space/comma separated string. */
function parseOrigins(content) {
  const out = [];
  const items = Array.isArray(content) ? content.map(String) : String(content || "").split(/[\s,]+/);
  for (const item of items) {
    if (!item) continue;
    try {
      const origin = new URL(item).origin;
      if (origin && origin !== "null" && !out.includes(origin)) out.push(origin);
    } catch {
      /* not an origin */
    }
  }
  return out;
}

function wireStatic() {
  $("signout").addEventListener("click", async () => {
    $("signout").disabled = true;
    try {
      await signOut();
    } catch {
      /* the session is forgotten locally anyway */
    }
    $("signout").disabled = false;
    signedOut({ expired: false });
  });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search-input").value.trim();
    if (q) runSearch(q).catch(showError);
  });
  $("new-request").addEventListener("click", () => toggleNewRequest(true));
  $("new-request-cancel").addEventListener("click", () => toggleNewRequest(false));
  $("new-request-form").addEventListener("submit", submitNewRequest);
  $("new-request-form").addEventListener("keydown", (e) => {
    if (e.key === "Escape") toggleNewRequest(false);
  });
  $("new-request-form").addEventListener("keydown", submitOnCtrlEnter);
  $("load-more").addEventListener("click", () => loadPage().catch(showError));
  $("request-filter-clear").addEventListener("click", () => setRequestFilter(null));
  $("screen-pop-dismiss").addEventListener("click", hidePop);
  $("screen-pop-show").addEventListener("click", showPopped);
  $("timeline").addEventListener("click", onTimelineClick);

  if ("IntersectionObserver" in window) {
    S.observer = new IntersectionObserver((items) => {
      if (items.some((i) => i.isIntersecting) && !S.loading && !S.done) loadPage().catch(showError);
    }, { rootMargin: "300px 0px" });
    S.observer.observe($("timeline-sentinel"));
  }
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) return; // the sign-in form says it already
  toast(e && e.message ? e.message : String(e), { kind: "error" });
}

function showSignIn(notice = "") {
  $("boot").hidden = true;
  $("app-header").hidden = true;
  $("desk").hidden = true;
  const view = $("signin-view");
  view.replaceChildren(signInForm({ partitionChoice: true, onSignedIn: enter, notice }));
  view.hidden = false;
  if (!S.embed) $("signin-name").focus();
}

async function enter(who) {
  S.me = who;
  setOrgOrigins(who);
  $("boot").hidden = true;
  $("signin-view").hidden = true;
  $("signin-view").replaceChildren();
  $("user-name").textContent = who.name || who.id || "";
  $("user-partition").textContent = who.partition || "";
  $("app-header").hidden = S.embed;
  $("desk").hidden = false;
  loadDictionary().catch((e) => toast(`Field labels unavailable: ${e.message}`, { kind: "error" }));
  startEvents();
  // A command queued before the sign-in runs only if it came from the URL or from a host
  // of the user's own organization.
  const queued = S.queue.splice(0).filter((q) => q.origin === null || obeys(q.origin));
  if (!S.embed && !queued.length) $("search-input").focus();
  for (const { cmd, origin } of queued) {
    if (origin) S.hostOrigin = origin;
    await runCommand(cmd).catch(showError);
  }
}

function signedOut({ expired, notice = "" }) {
  stopEvents();
  S.me = null;
  S.orgOrigins = null;
  S.queue = [];
  S.popped.clear();
  S.lastEventId = "";
  closeCustomer();
  hidePop();
  $("results").replaceChildren();
  $("results").hidden = true;
  $("search-input").value = "";
  showSignIn(notice || (expired ? "Your session has ended. Please sign in again." : ""));
}

/** Back to the tab: is the session still this user's (a sign-in in another tab changes it)? */
async function onVisible() {
  if (document.visibilityState !== "visible" || !S.me) return;
  const who = await recheckSession(); // signs the page out when it changed hands
  if (who && S.me) setOrgOrigins(who);
}

// ---------------------------------------------------------------- embedding (postMessage)
//
// The page's meta tag lists the allowed hosts of every organization (the CSP must let all of
// them frame the page before anyone signs in). Before the sign-in, a command of any of them is
// kept (only the last one); once signed in, only hosts of the user's own organization (and
// this origin) are obeyed, and only they hear what the desktop shows.

function setOrgOrigins(who) {
  S.orgOrigins = parseOrigins(who?.embedOrigins || []).filter((o) => S.metaOrigins.includes(o));
}

/** Whether a host at `origin` may drive the desktop of the signed-in user (and hear it). */
function obeys(origin) {
  return origin === location.origin || (!!S.orgOrigins && S.orgOrigins.includes(origin));
}

function onMessage(event) {
  // Framed: only the embedding page itself, not another frame or window of an allowed origin.
  if (window.parent !== window && event.source !== window.parent) return;
  const msg = event.data;
  if (!msg || typeof msg !== "object" || !COMMANDS.has(msg.type)) return;
  const cmd = { type: msg.type, id: msg.id, number: msg.number };
  if (S.me) {
    if (!obeys(event.origin)) return;
    S.hostOrigin = event.origin;
    runCommand(cmd).catch(showError);
  } else if (event.origin === location.origin || S.metaOrigins.includes(event.origin)) {
    S.queue = [{ cmd, origin: event.origin }]; // the last command wins
  }
}

/** Where replies go: the origin of the last obeyed command, else the embedding page's own
 * origin (Chromium tells it); either only when it is a host of the user's organization.
 * None before the sign-in or when the host is unknown. */
function hostTargets() {
  if (!S.me || !S.orgOrigins) return [];
  if (S.hostOrigin && obeys(S.hostOrigin)) return [S.hostOrigin];
  const ancestors = location.ancestorOrigins;
  if (ancestors && ancestors.length && obeys(ancestors[0])) return [ancestors[0]];
  return [];
}

function postToHost(msg) {
  let targets = hostTargets();
  // Top level (not embedded): only a same-origin sender (a test, a tool) hears the replies.
  if (window.parent === window) targets = targets.filter((o) => o === location.origin);
  for (const origin of targets) {
    try {
      window.parent.postMessage(msg, origin);
    } catch {
      /* an unusable origin */
    }
  }
}

/** `ready` carries nothing: it may go to any allowed host (the browser delivers it only to
 * the one that is the parent). */
function announceReady() {
  if (window.parent === window) return;
  const ancestors = location.ancestorOrigins;
  let targets = [...new Set([...S.metaOrigins, location.origin])];
  if (ancestors && ancestors.length) targets = targets.includes(ancestors[0]) ? [ancestors[0]] : [];
  for (const origin of targets) {
    try {
      window.parent.postMessage({ type: "ready" }, origin);
    } catch {
      /* dropped */
    }
  }
}

async function runCommand(cmd) {
  const text = (v) => (typeof v === "string" || typeof v === "number" ? String(v).trim() : "");
  switch (cmd.type) {
    case "showPodById": {
      const id = text(cmd.id);
      if (id) await showPod(id);
      break;
    }
    case "showCustomer": {
      const id = text(cmd.id);
      if (id) await openCustomer(id);
      break;
    }
    case "searchByPhone": {
      const number = text(cmd.number);
      if (number) {
        $("search-input").value = number;
        await runSearch(number, "phone");
      }
      break;
    }
  }
}

// ---------------------------------------------------------------- search

function searchSpec(q, forced) {
  const compact = q.replace(/\s+/g, "");
  const digits = q.replace(/\D/g, "");
  let kind = forced;
  if (!kind) {
    if (q.includes("@")) kind = "email";
    else if (digits.length >= 3 && /^[\d+()\-./]+$/.test(compact)) kind = "phone";
    else if (digits.length >= 5 && digits.length / compact.length >= 0.7) kind = "phone";
    else kind = "name";
  }
  const terms = {};
  if (kind === "email") {
    for (const f of EMAIL_FIELDS) terms[f] = [q];
  } else if (kind === "phone") {
    for (const f of PHONE_FIELDS) terms[f] = [q];
    if (!forced) terms.Context_Customer_External_ID = [q];
  } else {
    const words = q.split(/\s+/).filter(Boolean).slice(0, 10);
    terms.Context_First_Name = words;
    terms.Context_Last_Name = words;
    if (words.length > 1) {
      // "Mary Ann Smith": the first name may itself hold several words.
      terms.Context_First_Name = [...words, words.slice(0, -1).join(" ")];
    }
    terms.Context_Customer_External_ID = [q];
  }
  return { kind, terms, words: q.toLowerCase().split(/\s+/).filter(Boolean) };
}

async function runSearch(q, forced) {
  const results = $("results");
  results.hidden = false;
  results.setAttribute("aria-busy", "true");
  results.replaceChildren(el("li", { class: "muted" }, "Searching…"));
  try {
    if (!forced && UUID_RE.test(q)) {
      try {
        const c = await api("GET", `v1/customers/${enc(q)}`);
        results.replaceChildren();
        results.hidden = true;
        await openCustomer(c);
        return;
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
      }
    }
    const spec = searchSpec(q, forced);
    const page = await api("POST", "v1/customers/search", { match: "any", terms: spec.terms, limit: 20 });
    let items = (page && page.items) || [];
    if (spec.kind === "name") {
      const score = (c) => {
        const names = [c.data?.Context_First_Name, c.data?.Context_Last_Name]
          .filter((v) => typeof v === "string").join(" ").toLowerCase().split(/\s+/);
        return spec.words.filter((w) => names.includes(w)).length;
      };
      items = items.map((c, i) => [score(c), i, c]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map((x) => x[2]);
    }
    if (items.length === 1) {
      results.replaceChildren();
      results.hidden = true;
      await openCustomer(items[0]);
      return;
    }
    if (!items.length) {
      results.replaceChildren(el("li", { class: "no-results muted" }, `No customer found for “${q}”.`));
      return;
    }
    const total = page.total ?? items.length;
    results.replaceChildren(
      el("li", { class: "results-summary muted" },
        total > items.length ? `${total} customers match; showing ${items.length}.` : `${items.length} customers match.`),
      ...items.map((c) => el("li", {},
        el("button", {
          type: "button", class: "result", "data-id": c.id, "data-testid": "result",
          on: { click: () => { results.hidden = true; openCustomer(c).catch(showError); } },
        },
        icon("customer"),
        el("span", { class: "result-name" }, customerName(c)),
        el("span", { class: "result-phone" }, firstValue(c, PHONE_FIELDS)),
        el("span", { class: "result-email" }, firstValue(c, EMAIL_FIELDS))))),
    );
  } catch (e) {
    results.replaceChildren(el("li", { class: "error", role: "alert" }, e.message));
    throw e;
  } finally {
    results.removeAttribute("aria-busy");
  }
}

function firstValue(o, fields) {
  for (const f of fields) {
    const v = o.data?.[f];
    if (v !== null && v !== undefined && v !== "") return String(v);
  }
  return "";
}

function customerName(c) {
  if (!c) return "";
  const d = c.data || {};
  const name = [d.Context_First_Name, d.Context_Last_Name].filter((v) => typeof v === "string" && v.trim()).join(" ");
  return name || firstValue(c, [...EMAIL_FIELDS, ...PHONE_FIELDS, "Context_Customer_External_ID"])
    || `Customer ${String(c.id).slice(0, 8)}…`;
}

// ---------------------------------------------------------------- opening things

async function showPod(id) {
  let act;
  try {
    act = await api("GET", `v1/activities/${enc(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) throw new Error(`No activity ${id} was found.`);
    throw e;
  }
  if (act.customerId) await openCustomer(act.customerId, { highlight: act.id, activity: act });
  else showSolo(act);
}

async function openCustomer(target, { highlight = null, activity = null } = {}) {
  const gen = ++S.openGen;
  let customer = target;
  if (typeof target === "string") {
    try {
      customer = await api("GET", `v1/customers/${enc(target)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) throw new Error(`No customer ${target} was found.`);
      throw e;
    }
  }
  if (gen !== S.openGen) return;
  const switching = !S.customer || S.customer.id !== customer.id;
  S.customer = customer;
  S.solo = null;
  if (switching) {
    S.requests.clear();
    S.pendingRequests.clear();
    S.customerRequests = null;
    S.mediaType = "";
  }
  S.requestFilter = null;
  showWorkspace();
  toggleNewRequest(false);
  await renderCard();
  updateFilters();
  resetTimeline();
  await loadPage();
  if (gen !== S.openGen) return;
  if (highlight) await highlightEntry(highlight, activity);
  postToHost({ type: "customerShown", customerId: customer.id, name: customerName(customer) });
}

function showSolo(act) {
  ++S.openGen;
  S.customer = null;
  S.solo = act;
  S.mediaType = "";
  S.requestFilter = null;
  S.requests.clear();
  S.pendingRequests.clear();
  S.customerRequests = null;
  showWorkspace();
  toggleNewRequest(false);
  $("new-request").hidden = true;
  $("filters").hidden = true;
  const src = act.data || {};
  $("customer-card").replaceChildren(
    el("div", { class: "card-head" }, icon("customer"), el("h2", { id: "customer-name" }, "No customer yet")),
    el("p", {}, "This activity is not linked to a customer. Use “Create customer from this activity” below, or move it to an existing customer."),
    sourceLine(src),
  );
  resetTimeline();
  S.done = true;
  S.entries.set(act.id, act);
  const li = renderEntry(act);
  li.classList.add("highlight");
  $("timeline").append(li);
  $("timeline-count").textContent = "";
  resolveParents();
}

function showWorkspace() {
  $("empty-state").hidden = true;
  $("workspace").hidden = false;
  $("new-request").hidden = false;
  $("filters").hidden = false;
}

function closeCustomer() {
  ++S.openGen;
  S.customer = null;
  S.solo = null;
  S.requests.clear();
  S.pendingRequests.clear();
  S.customerRequests = null;
  resetTimeline();
  $("customer-card").replaceChildren();
  $("workspace").hidden = true;
  $("empty-state").hidden = false;
}

async function highlightEntry(id, activity) {
  let li = findEntry(id);
  if (!li) {
    // Older than the first page: pin it on top so the agent sees the interaction at hand.
    let act = activity;
    if (!act) act = await api("GET", `v1/activities/${enc(id)}`).catch(() => null);
    if (!act || (S.customer && act.customerId !== S.customer.id)) return;
    S.entries.set(act.id, act);
    li = renderEntry(act);
    $("timeline").prepend(li);
    resolveParents();
  }
  for (const other of $("timeline").querySelectorAll("li.entry.highlight")) other.classList.remove("highlight");
  li.classList.add("highlight");
  li.scrollIntoView({ block: "nearest" });
}

function findEntry(id) {
  return $("timeline").querySelector(`li.entry[data-id="${CSS.escape(id)}"]`);
}

// ---------------------------------------------------------------- customer card

function labelOf(dict, id) {
  const f = dict && dict.fields.get(id);
  return f ? fieldLabel(f) : id;
}

function formatValue(v, field) {
  if (v === null || v === undefined) return "";
  if (typeof v === "boolean") return v ? "Yes" : "No";
  if (field && field.dataType === "date") return formatTime(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function orderedFields(obj, dict) {
  const seen = new Set();
  const out = [];
  for (const fsId of obj.fieldsets || []) {
    const fs = dict && dict.fieldsets.get(fsId);
    for (const f of fs ? fs.fields : []) if (!seen.has(f)) { seen.add(f); out.push(f); }
  }
  for (const f of Object.keys(obj.data || {})) if (!seen.has(f)) { seen.add(f); out.push(f); }
  return out;
}

async function renderCard() {
  const c = S.customer;
  if (!c) return;
  const dict = await loadDictionary().catch(() => null);
  if (S.customer !== c) return;
  const withheld = new Set(c.withheld || []);
  const rows = [];
  for (const id of orderedFields(c, dict)) {
    const v = c.data?.[id];
    if (withheld.has(id)) {
      rows.push(el("div", { class: "kv withheld", "data-field": id },
        el("dt", {}, labelOf(dict, id)), el("dd", {}, el("em", { class: "muted" }, "withheld"))));
    } else if (v !== null && v !== undefined && v !== "") {
      rows.push(el("div", { class: "kv", "data-field": id },
        el("dt", {}, labelOf(dict, id)), el("dd", {}, formatValue(v, dict?.fields.get(id)))));
    }
  }
  $("customer-card").replaceChildren(
    el("div", { class: "card-head" },
      icon("customer"),
      el("h2", { id: "customer-name", "data-testid": "customer-name" }, customerName(c)),
      el("button", {
        type: "button", id: "edit-customer", "data-testid": "edit-customer", "aria-expanded": "false",
        on: { click: () => editCard() },
      }, "Edit")),
    rows.length ? el("dl", { class: "customer-data" }, rows) : el("p", { class: "muted" }, "No details recorded."),
    el("p", { class: "card-meta muted" }, `Customer since ${formatTime(c.created)} · updated ${formatTime(c.lastUpdated)}`),
  );
}

function controlFor(field, fid, value) {
  const id = `cf-${fid}`;
  const common = { id, name: fid, "aria-describedby": `${id}-error` };
  const current = value === null || value === undefined ? "" : String(value);
  if (field && Array.isArray(field.enumValues) && field.enumValues.length) {
    const values = field.enumValues.filter((e) => e.active !== false).map((e) => e.value);
    if (current && !values.includes(current)) values.unshift(current);
    return el("select", { ...common, value: current },
      el("option", { value: "" }, "—"), values.map((v) => el("option", { value: v }, v)));
  }
  const type = field?.dataType;
  if (type === "boolean") {
    return el("select", { ...common, value: current },
      el("option", { value: "" }, "—"), el("option", { value: "true" }, "Yes"), el("option", { value: "false" }, "No"));
  }
  if (type === "integer" || type === "long" || type === "double") {
    return el("input", { ...common, type: "number", step: type === "double" ? "any" : "1", value: current });
  }
  const attrs = { ...common, type: "text", value: current, maxlength: field?.maxLength || null };
  if (PHONE_FIELDS.includes(fid)) { attrs.type = "tel"; attrs.autocomplete = "off"; }
  if (EMAIL_FIELDS.includes(fid)) attrs.inputmode = "email";
  if (type === "date") attrs.placeholder = "2024-05-01T09:30:00Z";
  if (field?.maxLength > 200) return el("textarea", { ...common, rows: 3, maxlength: field.maxLength, value: current });
  return el("input", attrs);
}

function parseInput(raw, field) {
  if (raw === "") return null;
  switch (field?.dataType) {
    case "boolean": return raw === "true";
    case "integer": case "long": case "double": {
      const n = Number(raw);
      return Number.isFinite(n) ? n : raw;
    }
    default: return raw;
  }
}

async function editCard() {
  const c = S.customer;
  if (!c) return;
  const dict = await loadDictionary().catch(() => null);
  if (S.customer !== c) return;
  const withheld = new Set(c.withheld || []);
  let ids = [];
  if (dict) {
    const seen = new Set();
    for (const fsId of c.fieldsets || []) {
      const fs = dict.fieldsets.get(fsId);
      if (!fs) continue;
      const inactive = new Set(fs.inactiveFields || []);
      for (const f of fs.fields) {
        if (seen.has(f) || withheld.has(f)) continue;
        if (inactive.has(f) && (c.data?.[f] === undefined || c.data?.[f] === null)) continue;
        seen.add(f);
        ids.push(f);
      }
    }
  } else {
    ids = Object.keys(c.data || {}).filter((f) => !withheld.has(f));
  }
  const controls = new Map();
  const groups = ids.map((fid) => {
    const field = dict?.fields.get(fid);
    const control = controlFor(field, fid, c.data?.[fid]);
    controls.set(fid, { control, field });
    return el("div", { class: "field", "data-field": fid },
      el("label", { for: `cf-${fid}` }, labelOf(dict, fid)),
      control,
      el("p", { id: `cf-${fid}-error`, class: "field-error", hidden: true }));
  });
  const formError = el("p", { id: "customer-form-error", class: "error", role: "alert", hidden: true });
  const save = el("button", { type: "submit", id: "save-customer", class: "primary", "data-testid": "save-customer" }, "Save");
  const cancel = el("button", { type: "button", id: "cancel-customer" }, "Cancel");
  const form = el("form", { id: "customer-form", class: "customer-form", "aria-label": "Edit customer", novalidate: true },
    groups.length ? groups : el("p", { class: "muted" }, "This customer has no editable fields."),
    formError,
    el("div", { class: "actions" }, save, cancel));
  cancel.addEventListener("click", () => renderCard().then(() => $("edit-customer")?.focus()));
  form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") cancel.click();
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const { control } of controls.values()) control.removeAttribute("aria-invalid");
    for (const p of form.querySelectorAll(".field-error")) { p.hidden = true; p.textContent = ""; }
    formError.hidden = true;
    const changed = {};
    for (const [fid, { control, field }] of controls) {
      const value = parseInput(control.value, field);
      const before = c.data?.[fid] ?? null;
      if (value !== before && !(value === null && before === "")) changed[fid] = value;
    }
    if (!Object.keys(changed).length) {
      await renderCard();
      return;
    }
    save.disabled = true;
    try {
      const updated = await api("PATCH", `v1/customers/${enc(c.id)}`, { data: changed });
      if (S.customer && S.customer.id === updated.id) S.customer = updated;
      await renderCard();
      $("edit-customer")?.focus();
      toast("Customer saved.", { kind: "success" });
    } catch (err) {
      let placed = 0;
      for (const fe of err.errors || []) {
        const fid = String(fe.field || "").replace(/^data\./, "");
        const entry = controls.get(fid);
        if (!entry) continue;
        entry.control.setAttribute("aria-invalid", "true");
        const p = document.getElementById(`cf-${fid}-error`);
        p.textContent = fe.message;
        p.hidden = false;
        if (!placed) entry.control.focus();
        placed += 1;
      }
      const unplaced = (err.errors || []).filter((fe) => !controls.has(String(fe.field || "").replace(/^data\./, "")));
      if (!placed || unplaced.length) {
        formError.textContent = [err.message, ...unplaced.map((fe) => `${fe.field}: ${fe.message}`)].join(" ");
        formError.hidden = false;
      }
    } finally {
      save.disabled = false;
    }
  });
  const card = $("customer-card");
  const head = card.querySelector(".card-head");
  card.replaceChildren(head, form);
  const edit = $("edit-customer");
  edit.hidden = true;
  edit.setAttribute("aria-expanded", "true");
  form.querySelector("input, select, textarea")?.focus();
}

// ---------------------------------------------------------------- new request

function toggleNewRequest(open) {
  const form = $("new-request-form");
  form.hidden = !open;
  $("new-request").setAttribute("aria-expanded", String(open));
  $("new-request-error").hidden = true;
  if (open) $("new-request-title").focus();
  else form.reset();
}

async function submitNewRequest(e) {
  e.preventDefault();
  const c = S.customer;
  const error = $("new-request-error");
  const title = $("new-request-title").value.trim();
  const description = $("new-request-description").value.trim();
  if (!c) return;
  if (!title) {
    error.textContent = "Give the request a title.";
    error.hidden = false;
    $("new-request-title").focus();
    return;
  }
  const data = { Context_Title: title };
  if (description) data.Context_Description = description;
  $("new-request-submit").disabled = true;
  try {
    const req = await api("POST", "v1/requests", { customerId: c.id, fieldsets: ["cisco.base.request"], data });
    S.requests.set(req.id, req);
    if (S.customerRequests) S.customerRequests = null;
    if (!S.mediaType && S.customer === c) addToTop(req, "added");
    toggleNewRequest(false);
    $("new-request").focus();
    toast(`Request “${title}” created.`, { kind: "success" });
  } catch (err) {
    error.textContent = [err.message, ...(err.errors || []).map((fe) => `${fe.field}: ${fe.message}`)].join(" ");
    error.hidden = false;
  } finally {
    $("new-request-submit").disabled = false;
  }
}

// ---------------------------------------------------------------- filters and timeline

function buildFilters() {
  const make = (value, label, iconName) => el("button", {
    type: "button", "data-media-type": value, "aria-pressed": value === "all" ? "true" : "false",
    title: label, on: { click: () => setMediaType(value === "all" ? "" : value) },
  }, iconName && icon(iconName), el("span", { class: "label" }, label));
  $("filters").replaceChildren(make("all", "All"), ...MEDIA_TYPES.map((m) => make(m, MEDIA_LABELS[m], m)));
}

function updateFilters() {
  for (const b of $("filters").querySelectorAll("button[data-media-type]")) {
    const v = b.dataset.mediaType;
    b.setAttribute("aria-pressed", String(v === (S.mediaType || "all")));
  }
}

function setMediaType(value) {
  if (!S.customer) return;
  S.mediaType = value;
  updateFilters();
  resetTimeline();
  loadPage().catch(showError);
}

function resetTimeline() {
  S.tgen += 1;
  S.cursor = null;
  S.done = false;
  S.loading = false;
  S.entries.clear();
  $("timeline").replaceChildren();
  $("timeline-status").textContent = "";
  $("timeline-count").textContent = "";
  $("load-more").hidden = true;
  setRequestFilter(S.requestFilter, true);
}

async function loadPage() {
  const c = S.customer;
  if (!c || S.loading || S.done) return;
  S.loading = true;
  const gen = S.tgen;
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (S.cursor) q.set("cursor", S.cursor);
  if (S.mediaType) q.set("mediaType", S.mediaType);
  $("timeline-status").textContent = "Loading…";
  $("load-more").disabled = true;
  try {
    const page = await api("GET", `v1/customers/${enc(c.id)}/timeline?${q}`);
    if (gen !== S.tgen) return;
    const items = (page && page.items) || [];
    for (const o of items) if (o.type === "request") S.requests.set(o.id, o);
    const frag = document.createDocumentFragment();
    for (const o of items) {
      if (S.entries.has(o.id)) continue;
      S.entries.set(o.id, o);
      frag.append(renderEntry(o));
    }
    $("timeline").append(frag);
    S.cursor = page.nextCursor || null;
    S.done = !S.cursor;
    const total = page.total ?? S.entries.size;
    $("timeline-count").textContent = `${S.entries.size} of ${total}`;
    $("timeline-status").textContent = S.entries.size ? "" :
      (S.mediaType ? `No ${MEDIA_LABELS[S.mediaType] || S.mediaType} interactions.` : "No interactions yet.");
    $("load-more").hidden = S.done;
    refreshRequestLinks();
    resolveParents();
    applyRequestFilter();
  } catch (e) {
    if (gen === S.tgen) $("timeline-status").textContent = `The journey could not be loaded: ${e.message}`;
    throw e;
  } finally {
    if (gen === S.tgen) {
      S.loading = false;
      $("load-more").disabled = false;
    }
  }
  if (gen === S.tgen && !S.done && S.observer) {
    // Still in view after this page? The observer only reports changes: ask again.
    S.observer.unobserve($("timeline-sentinel"));
    S.observer.observe($("timeline-sentinel"));
  }
}

function addToTop(o, cls) {
  if (S.entries.has(o.id)) {
    replaceEntry(o);
    return findEntry(o.id);
  }
  S.entries.set(o.id, o);
  if (o.type === "request") S.requests.set(o.id, o);
  const li = renderEntry(o);
  if (cls) li.classList.add(cls);
  $("timeline").prepend(li);
  $("timeline-status").textContent = "";
  resolveParents();
  applyRequestFilter();
  return li;
}

function replaceEntry(o) {
  S.entries.set(o.id, o);
  if (o.type === "request") S.requests.set(o.id, o);
  const old = findEntry(o.id);
  if (!old) return;
  const li = renderEntry(o);
  for (const cls of ["new", "highlight", "added"]) if (old.classList.contains(cls)) li.classList.add(cls);
  old.replaceWith(li);
  if (o.type === "request") refreshRequestLinks();
  resolveParents();
  applyRequestFilter();
}

function removeEntry(id) {
  S.entries.delete(id);
  findEntry(id)?.remove();
}

function requestTitle(r) {
  const t = r?.data?.Context_Title;
  return typeof t === "string" && t.trim() ? t : "Untitled request";
}

/** Fetches the parent requests of activities that the loaded pages did not include. */
function resolveParents() {
  for (const o of S.entries.values()) {
    if (o.type !== "activity" || !o.parentId) continue;
    const id = o.parentId;
    if (S.requests.has(id) || S.pendingRequests.has(id)) continue;
    const gen = S.openGen;
    const p = api("GET", `v1/requests/${enc(id)}`).then(
      (r) => {
        if (gen !== S.openGen) return; // another customer since
        S.requests.set(r.id, r);
        refreshRequestLinks();
      },
      () => { /* not readable: the link keeps its generic text */ },
    );
    S.pendingRequests.set(id, p);
  }
}

function refreshRequestLinks() {
  for (const b of $("timeline").querySelectorAll("button.request-link[data-request-id]")) {
    const r = S.requests.get(b.dataset.requestId);
    if (!r) continue;
    b.textContent = requestTitle(r);
    const badge = b.parentElement?.querySelector(".req-state");
    if (badge) {
      badge.textContent = r.state === "closed" ? "closed" : "";
      badge.hidden = r.state !== "closed";
    }
  }
  for (const span of $("timeline").querySelectorAll(".parent-label[data-parent-id]")) {
    span.textContent = parentLabel(span.dataset.parentId);
  }
}

function parentLabel(id) {
  const r = S.requests.get(id);
  if (r) return `on request “${requestTitle(r)}”`;
  const a = S.entries.get(id);
  if (a && a.type === "activity") {
    const label = MEDIA_LABELS[a.mediaType];
    if (!label) return "on an activity";
    return `on ${/^(Email|Event|SMS)$/.test(label) ? "an" : "a"} ${label} activity`;
  }
  return "on an earlier entry";
}

function belongsTo(o, rid) {
  if (o.id === rid || o.parentId === rid) return true;
  if (o.type === "detail" && o.parentId) {
    const parent = S.entries.get(o.parentId);
    return !!parent && parent.parentId === rid;
  }
  return false;
}

function setRequestFilter(rid, quiet) {
  S.requestFilter = rid || null;
  const bar = $("request-filter");
  if (S.requestFilter) {
    const r = S.requests.get(S.requestFilter);
    $("request-filter-text").textContent = `Showing request “${requestTitle(r)}”${r?.state === "closed" ? " (closed)" : ""}.`;
    bar.hidden = false;
  } else {
    bar.hidden = true;
  }
  if (!quiet) applyRequestFilter();
}

function applyRequestFilter() {
  const rid = S.requestFilter;
  for (const li of $("timeline").children) {
    const o = S.entries.get(li.dataset.id);
    li.hidden = !!rid && !!o && !belongsTo(o, rid);
  }
}

// ---------------------------------------------------------------- timeline entries

function iconName(o) {
  if (o.type === "activity") return MEDIA_TYPES.includes(o.mediaType) ? o.mediaType : "event";
  if (o.type === "detail") return o.detailType === "feedback" ? "feedback" : "comment";
  if (o.type === "customer") return "customer";
  return "request";
}

function kindLabel(o) {
  if (o.type === "activity") return `${MEDIA_LABELS[o.mediaType] || "Activity"}`;
  if (o.type === "detail") return o.detailType === "feedback" ? "Feedback" : "Comment";
  return "Request";
}

function safeLink(v) {
  if (typeof v !== "string") return null;
  try {
    const u = new URL(v.trim());
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

function sourceLine(d) {
  const bits = SOURCE_FIELDS.map((f) => d[f]).filter((v) => typeof v === "string" && v.trim());
  return bits.length ? el("p", { class: "source muted" }, `From: ${bits.join(" · ")}`) : null;
}

function hasSource(o) {
  return SOURCE_FIELDS.some((f) => typeof o.data?.[f] === "string" && o.data[f].trim());
}

function textBlock(o, id, cls) {
  if ((o.withheld || []).includes(id)) return el("p", { class: `${cls} muted` }, "(withheld)");
  const v = o.data?.[id];
  if (v === null || v === undefined || v === "") return null;
  return el("p", { class: cls }, String(v));
}

function renderEntry(o) {
  const d = o.data || {};
  const time = o.lastUpdated || o.created;
  const closed = o.state === "closed";
  const head = el("div", { class: "entry-head" },
    el("span", { class: "entry-icon" }, icon(iconName(o))),
    el("span", { class: "entry-kind" }, kindLabel(o)),
    o.type === "request" && el("span", { class: ["badge", closed ? "closed" : "active"] }, closed ? "closed" : "open"),
    el("time", { class: "entry-time", datetime: time || null, title: time || null }, formatTime(time)));

  const body = [];
  if (o.type === "request") {
    body.push(el("h3", { class: "entry-title" }, requestTitle(o)));
    body.push(textBlock(o, "Context_Description", "entry-text"));
    body.push(el("p", { class: "entry-meta" },
      el("button", { type: "button", class: "link request-show", "data-request-id": o.id, "aria-label": `Show its entries: request ${requestTitle(o)}` }, "Show its entries")));
  } else if (o.type === "activity") {
    if (o.parentId) {
      const r = S.requests.get(o.parentId);
      body.push(el("p", { class: "entry-meta" }, "Request: ",
        el("button", { type: "button", class: "link request-link", "data-request-id": o.parentId }, r ? requestTitle(r) : "(loading…)"),
        " ",
        el("span", { class: "badge closed req-state", hidden: !(r && r.state === "closed") }, r && r.state === "closed" ? "closed" : "")));
    } else if (!o.customerId) {
      body.push(el("p", { class: "entry-meta muted" }, "No customer linked"));
    }
    body.push(textBlock(o, "Context_Title", "entry-title-text"));
    body.push(textBlock(o, "Context_Notes", "entry-text notes"));
    body.push(textBlock(o, "Context_Comment", "entry-text"));
    const href = safeLink(d.Context_POD_Activity_Link);
    if (href) {
      body.push(el("p", { class: "entry-link" },
        el("a", { href, rel: "noopener noreferrer", target: "_blank" }, "Open activity link")));
    }
    body.push(sourceLine(d));
  } else {
    // detail
    body.push(el("p", { class: "entry-meta" },
      d.Context_DisplayName ? `${d.Context_DisplayName} ` : "",
      el("span", { class: "parent-label", "data-parent-id": o.parentId || "" }, parentLabel(o.parentId))));
    body.push(textBlock(o, "Context_Comment", "entry-text"));
    if (d.cccRatingPoints !== undefined && d.cccRatingPoints !== null) {
      body.push(el("p", { class: "entry-text rating" }, `Rating: ${d.cccRatingPoints}`));
    }
    body.push(textBlock(o, "cccRatingComments", "entry-text"));
  }
  const extra = Object.keys(d).filter((k) => !SHOWN_FIELDS.has(k) && d[k] !== null && d[k] !== "");
  if (extra.length) body.push(extraFields(o, extra));

  const actions = [];
  if (o.type === "activity") {
    if ((o.fieldsets || []).includes("cisco.base.pod")) {
      actions.push(el("button", { type: "button", class: "add-note", "data-action": "note" }, "Add note"));
    }
    actions.push(el("button", { type: "button", class: "add-comment", "data-action": "comment" }, "Add comment"));
    actions.push(el("button", { type: "button", class: "move", "data-action": "move" }, "Move"));
    if (!o.customerId || hasSource(o)) {
      actions.push(el("button", { type: "button", class: "create-customer", "data-action": "create-customer" }, "Create customer from this activity"));
    }
  } else if (o.type === "request" && !closed) {
    actions.push(el("button", { type: "button", class: "add-comment", "data-action": "comment" }, "Add comment"));
  }

  return el("li", {
    class: ["entry", `entry-${o.type}`, closed && "closed"],
    "data-id": o.id, "data-type": o.type,
    "data-media-type": o.mediaType || null,
    "data-parent-id": o.parentId || null,
    "data-testid": "entry",
  },
  head,
  el("div", { class: "entry-body" }, body),
  actions.length ? el("div", { class: "entry-actions", role: "group", "aria-label": `${kindLabel(o)} actions` }, actions) : null,
  el("div", { class: "entry-forms" }));
}

function extraFields(o, ids) {
  const details = el("details", { class: "entry-fields" }, el("summary", {}, "All fields"));
  const dl = el("dl", {});
  details.append(dl);
  // Labels fill in when the dictionary is there (it normally already is).
  loadDictionary().catch(() => null).then((dict) => {
    for (const id of ids) {
      dl.append(el("div", { class: "kv" }, el("dt", {}, labelOf(dict, id)),
        el("dd", {}, (o.withheld || []).includes(id) ? "withheld" : formatValue(o.data[id], dict?.fields.get(id)))));
    }
  });
  return details;
}

function onTimelineClick(e) {
  const link = e.target.closest("button.request-link, button.request-show");
  if (link) {
    setRequestFilter(link.dataset.requestId);
    return;
  }
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  const li = button.closest("li.entry");
  const o = li && S.entries.get(li.dataset.id);
  if (!o) return;
  switch (button.dataset.action) {
    case "note": openForm(li, noteForm(o)); break;
    case "comment": openForm(li, commentForm(o)); break;
    case "move": openForm(li, moveForm(o)); break;
    case "create-customer": createCustomerFrom(o, button); break;
  }
}

let formSeq = 0;

function openForm(li, form) {
  const box = li.querySelector(".entry-forms");
  const existing = box.querySelector("form");
  if (existing && existing.className === form.className) {
    existing.remove(); // the same button again closes it
    return;
  }
  box.replaceChildren(form);
  form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeForm(form);
  });
  form.querySelector("textarea, select, input")?.focus();
}

/** In a textarea Enter makes a new line; Ctrl+Enter (⌘+Enter) submits its form. */
function submitOnCtrlEnter(e) {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.tagName === "TEXTAREA") {
    e.preventDefault();
    e.target.form?.requestSubmit();
  }
}

function closeForm(form) {
  const li = form.closest("li.entry");
  form.remove();
  li?.querySelector(".entry-actions button")?.focus();
}

function inlineForm(cls, title, fields, submitLabel, onSubmit) {
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const submit = el("button", { type: "submit", class: "primary" }, submitLabel);
  const form = el("form", { class: ["inline-form", cls], "aria-label": title, novalidate: true },
    fields, error,
    el("div", { class: "actions" }, submit,
      el("button", { type: "button", class: "cancel", on: { click: () => closeForm(form) } }, "Cancel")));
  const fail = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };
  form.addEventListener("keydown", submitOnCtrlEnter);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    fail("");
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await onSubmit(form, fail);
    } catch (err) {
      fail(err.detail || err.message || String(err));
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
  return form;
}

function textArea(name, label) {
  const id = `f${++formSeq}-${name}`;
  return el("div", { class: "field" },
    el("label", { for: id }, label),
    el("textarea", { id, name, rows: 3, required: true }));
}

function noteForm(o) {
  return inlineForm("note-form", "Add note", textArea("note", "Note"), "Save note", async (form, fail) => {
    const text = form.elements.note.value.trim();
    if (!text) return fail("Write a note first.");
    const updated = await appendNote(o.id, text);
    replaceEntry(updated);
    if (S.solo && S.solo.id === updated.id) S.solo = updated;
    findEntry(updated.id)?.querySelector("button.add-note")?.focus();
    toast("Note added.", { kind: "success" });
  });
}

/** Appends a line to the activity's notes as they are now: read fresh, written back with the
 * version read (the service refuses a stale one: then again, a few times). */
async function appendNote(id, text) {
  for (let attempt = 1; ; attempt += 1) {
    const current = await api("GET", `v1/activities/${enc(id)}`);
    if ((current.withheld || []).includes("Context_Notes")) {
      throw new Error("The notes of this activity are withheld from you: a note can't be added.");
    }
    const before = typeof current.data?.Context_Notes === "string" ? current.data.Context_Notes : "";
    const notes = before ? `${before}\n${text}` : text;
    try {
      return await api("PATCH", `v1/activities/${enc(id)}`, { version: current.version, data: { Context_Notes: notes } });
    } catch (e) {
      const stale = e instanceof ApiError && e.status === 409 && (!e.code || e.code === "version-conflict");
      if (!stale || attempt >= NOTE_TRIES) throw e;
    }
  }
}

function commentForm(o) {
  return inlineForm("comment-form", "Add comment", textArea("comment", "Comment"), "Add comment", async (form, fail) => {
    const text = form.elements.comment.value.trim();
    if (!text) return fail("Write a comment first.");
    const detail = await api("POST", "v1/details", {
      parentId: o.id,
      detailType: "comment",
      fieldsets: ["cisco.base.comment"],
      data: { Context_Comment: text, Context_DisplayName: S.me?.name || "agent", Context_Visible: true },
    });
    form.remove();
    if (!S.mediaType) addToTop(detail, "added");
    toast("Comment added.", { kind: "success" });
  });
}

/** The customer's requests: those on the timeline, completed by a search (once per customer). */
function customerRequests(customerId) {
  if (!S.customerRequests || S.customerRequests.customerId !== customerId) {
    const promise = api("POST", "v1/requests/search", { terms: { customerId: [customerId] }, limit: 200 })
      .then((page) => {
        for (const r of (page && page.items) || []) if (!S.requests.has(r.id)) S.requests.set(r.id, r);
      })
      .catch(() => { /* the timeline's requests will do */ });
    S.customerRequests = { customerId, promise };
  }
  return S.customerRequests.promise;
}

function moveForm(o) {
  const sid = `f${++formSeq}`;
  const select = el("select", { id: `${sid}-target`, name: "target" });
  const other = el("input", { id: `${sid}-customer`, name: "customerId", type: "text", autocomplete: "off", spellcheck: "false" });
  const otherBox = el("div", { class: "field move-customer", hidden: true },
    el("label", { for: `${sid}-customer` }, "Customer id"), other);

  const fill = () => {
    const keep = select.value;
    const reqs = [...S.requests.values()]
      .filter((r) => !S.customer || r.customerId === S.customer.id)
      .sort((a, b) => String(b.lastUpdated).localeCompare(String(a.lastUpdated)));
    select.replaceChildren(
      ...reqs.map((r) => el("option", { value: r.id }, `${requestTitle(r)}${r.state === "closed" ? " (closed)" : ""}`)),
      el("option", { value: "" }, "No request"),
      el("option", { value: "__customer__" }, "Another customer…"));
    const current = S.entries.get(o.id)?.parentId || "";
    select.value = keep && [...select.options].some((op) => op.value === keep) ? keep
      : (reqs.some((r) => r.id === current) ? current : (reqs[0]?.id ?? ""));
    otherBox.hidden = select.value !== "__customer__";
  };
  fill();
  if (S.customer) customerRequests(S.customer.id).then(() => { if (select.isConnected) fill(); });
  select.addEventListener("change", () => {
    otherBox.hidden = select.value !== "__customer__";
    if (!otherBox.hidden) other.focus();
  });

  const fields = [
    el("div", { class: "field" }, el("label", { for: `${sid}-target` }, "Move to"), select),
    otherBox,
  ];
  return inlineForm("move-form", "Move activity", fields, "Move", async (form, fail) => {
    const current = S.entries.get(o.id) || o;
    let body;
    if (select.value === "__customer__") {
      const cid = other.value.trim();
      if (!cid) {
        other.focus();
        return fail("Enter the id of the customer to move the activity to.");
      }
      body = { customerId: cid, parentId: null };
    } else {
      body = { parentId: select.value || null };
      if ((current.parentId || null) === body.parentId) {
        closeForm(form);
        return;
      }
    }
    const updated = await api("PATCH", `v1/activities/${enc(o.id)}`, body);
    if (S.solo && S.solo.id === updated.id) {
      if (updated.customerId) await openCustomer(updated.customerId, { highlight: updated.id, activity: updated });
      return;
    }
    if (S.customer && updated.customerId !== S.customer.id) {
      removeEntry(updated.id);
      toast("The activity was moved to another customer.", { kind: "success" });
      return;
    }
    replaceEntry(updated);
    const r = updated.parentId && S.requests.get(updated.parentId);
    toast(r ? `Activity moved to “${requestTitle(r)}”.` : "Activity moved.", { kind: "success" });
  });
}

async function createCustomerFrom(act, button) {
  const d = act.data || {};
  const data = {};
  const words = typeof d.Context_POD_Source_Cust_Name === "string"
    ? d.Context_POD_Source_Cust_Name.trim().split(/\s+/).filter(Boolean) : [];
  if (words.length) {
    data.Context_Last_Name = words.pop();
    if (words.length) data.Context_First_Name = words.join(" ");
  }
  if (typeof d.Context_POD_Source_Email === "string" && d.Context_POD_Source_Email.trim()) {
    data.Context_Home_Email = d.Context_POD_Source_Email.trim();
  }
  if (typeof d.Context_POD_Source_Phone === "string" && d.Context_POD_Source_Phone.trim()) {
    data.Context_Mobile_Phone = d.Context_POD_Source_Phone.trim();
  }
  if (button) button.disabled = true;
  try {
    const customer = await api("POST", "v1/customers", { fieldsets: ["cisco.base.customer"], data });
    const patch = { customerId: customer.id };
    if (act.parentId && act.customerId && act.customerId !== customer.id) patch.parentId = null;
    let linked = null;
    try {
      linked = await api("PATCH", `v1/activities/${enc(act.id)}`, patch);
    } catch (e) {
      toast(`The customer was created, but the activity could not be linked to it: ${e.message}`, { kind: "error" });
    }
    toast(`Customer ${customerName(customer)} created.`, { kind: "success" });
    await openCustomer(customer, linked ? { highlight: linked.id, activity: linked } : {});
  } catch (e) {
    showError(e);
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

// ---------------------------------------------------------------- screen pop (SSE)

function setLive(state) {
  const live = $("live");
  live.dataset.state = state;
  live.textContent = { live: "live", reconnecting: "reconnecting…", offline: "offline", connecting: "connecting…" }[state] || state;
}

function startEvents() {
  stopEvents();
  let url = "v1/events?types=object.created";
  const resumeFrom = S.lastEventId;
  if (resumeFrom) url += `&lastEventId=${enc(resumeFrom)}`;
  const es = new EventSource(url);
  S.es = es;
  let opened = false;
  setLive("connecting");
  es.addEventListener("open", (e) => {
    if (es !== S.es) return;
    opened = true;
    if (e.lastEventId) S.lastEventId = e.lastEventId;
    setLive("live");
  });
  es.addEventListener("object.created", (e) => {
    if (es !== S.es) return;
    if (e.lastEventId) S.lastEventId = e.lastEventId;
    onCreated(e.data).catch(showError);
  });
  es.addEventListener("resume", () => {
    // The server ends the stream (we fell behind); the browser reconnects with Last-Event-ID.
    if (es === S.es) setLive("reconnecting");
  });
  es.addEventListener("error", () => {
    if (es !== S.es) return;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an error answer): check the session, then try again.
      setLive("offline");
      clearTimeout(S.reopenTimer);
      S.reopenTimer = setTimeout(async () => {
        if (es !== S.es || !S.me) return;
        const who = await recheckSession(); // null: the page is signed out already
        if (es !== S.es || !S.me || who === null) return;
        // Refused before it ever opened while the service answers (e.g. the id to resume
        // from is past the newest event after a restore): start from now, not again from it.
        if (who && !opened && resumeFrom && S.lastEventId === resumeFrom) S.lastEventId = "";
        startEvents();
      }, 5000);
    } else {
      setLive("reconnecting");
    }
  });
}

function stopEvents() {
  clearTimeout(S.reopenTimer);
  if (S.es) {
    S.es.close();
    S.es = null;
  }
  setLive("offline");
}

async function onCreated(raw) {
  let ev;
  try {
    ev = JSON.parse(raw);
  } catch {
    return;
  }
  if (!ev || ev.objectType !== "activity" || !ev.objectId) return;
  const openId = S.customer?.id;
  const forOpen = !!openId && ev.customerId === openId;
  const forMe = !!S.me?.name && ev.addressedTo === S.me.name;
  if (!forOpen && !forMe) return;
  if (S.popped.has(ev.objectId)) return;
  S.popped.add(ev.objectId);
  if (S.popped.size > POPPED_MAX) S.popped.delete(S.popped.values().next().value);
  let act;
  try {
    act = await api("GET", `v1/activities/${enc(ev.objectId)}`);
  } catch (e) {
    S.popped.delete(ev.objectId); // not shown: a later event for it may pop it
    if (e instanceof ApiError && e.status === 404) return; // deleted since
    if (e instanceof ApiError && e.status === 401) throw e; // the sign-in form says it
    throw new Error(`A new activity could not be shown: ${e.message}`);
  }
  if (!S.me) return;
  if (S.customer && act.customerId === S.customer.id && (!S.mediaType || S.mediaType === act.mediaType)) {
    addToTop(act, "new");
  }
  postToHost({ type: "activityAdded", id: act.id, customerId: act.customerId ?? null, mediaType: act.mediaType ?? null });
  await showPop(act);
}

async function showPop(act) {
  let name;
  if (act.customerId) {
    if (S.customer && S.customer.id === act.customerId) name = customerName(S.customer);
    else name = await api("GET", `v1/customers/${enc(act.customerId)}`).then(customerName, () => "a customer");
  } else {
    const src = act.data?.Context_POD_Source_Cust_Name;
    name = typeof src === "string" && src.trim() ? src.trim() : "an unknown customer";
  }
  S.pop = { activityId: act.id, customerId: act.customerId || null };
  const media = MEDIA_LABELS[act.mediaType] ? act.mediaType : "";
  $("screen-pop-icon").setAttribute("href", `ui/icons.svg#${media || "event"}`);
  const banner = $("screen-pop");
  banner.dataset.activityId = act.id;
  banner.dataset.customerId = act.customerId || "";
  banner.dataset.mediaType = act.mediaType || "";
  banner.hidden = false;
  $("screen-pop-text").textContent = `New ${media ? `${media} ` : ""}activity for ${name}`;
}

function hidePop() {
  $("screen-pop").hidden = true;
  $("screen-pop-text").textContent = "";
  S.pop = null;
}

async function showPopped() {
  const pop = S.pop;
  hidePop();
  if (!pop) return;
  try {
    if (pop.customerId) {
      if (S.customer && S.customer.id === pop.customerId) await highlightEntry(pop.activityId);
      else await openCustomer(pop.customerId, { highlight: pop.activityId });
    } else {
      await showPod(pop.activityId);
    }
  } catch (e) {
    showError(e);
  }
}

boot();
