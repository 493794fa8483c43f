// The collection officers' form: sign in with the collector's key (kept in IndexedDB), fill a household member by
// member, check it on the phone, keep it while offline, send it to POST /api/enrolments when the network is back.
import { allForms, deleteForm, deleteSetting, getForm, getSetting, putForm, setSetting } from "./store.js";
import { translate } from "./words.js";

const API = "/api/enrolments";
const MEMBER_FIELDS = ["first_name", "last_name", "sex", "date_of_birth", "relationship", "phone", "id_number",
  "card_number"];
const app = document.getElementById("app");
const langSelect = document.getElementById("lang");
const net = document.getElementById("net");
const state = { key: null, choices: null, lang: "fr", current: null, remote: [], syncing: false, again: false };

function t(name) { return translate(state.lang, name); }

// An error found on the phone is a word's name ("@required"), shown in the language of the moment; the API's as sent.
function shown(error) { return error && error.startsWith("@") ? t(error.slice(1)) : error || ""; }

// Build an element: h("p", {class: "x", onclick: f}, "text", child…).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value") el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

function today() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

function showNetwork() {
  net.textContent = navigator.onLine ? t("online") : t("offline");
  net.classList.toggle("off", !navigator.onLine);
}

// ---------------------------------------------------------------- the API

async function call(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  return fetch(path, { ...options, headers, cache: "no-store" });
}

async function loadChoices() {
  try {
    const response = await call(`${API}/form`);
    if (response.status === 401) return "refused";
    if (!response.ok) return "failed";
    state.choices = await response.json();
    await setSetting("choices", state.choices);
    return "ok";
  } catch (error) {
    return "offline";
  }
}

async function loadRemote() {
  try {
    const response = await call(API);
    if (!response.ok) return;
    state.remote = (await response.json()).enrolments;
    await setSetting("remote", state.remote);
  } catch (error) { /* offline: the last list read stays */ }
}

// Send every form waiting on the phone, oldest first; stop at the first network failure (try again later).
export async function sendWaiting() {
  if (!state.key) return;
  if (state.syncing) {
    state.again = true;  // asked while sending (the network came back mid-way): go round once more after
    return;
  }
  state.syncing = true;
  state.again = false;
  try {
    const waiting = (await allForms()).filter((f) => f.state === "waiting").sort((a, b) => a.saved - b.saved);
    for (const form of waiting) {
      let response;
      try {
        response = await call(API, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(payloadOf(form)),
        });
      } catch (error) {
        break;  // no network: it stays waiting
      }
      if (response.status === 200 || response.status === 201) {
        const body = await response.json();
        Object.assign(form, { state: "sent", enrolment_id: body.id, status: body.status, errors: {} });
        await putForm(form);
      } else if (response.status === 422) {
        const body = await response.json();
        Object.assign(form, { state: "fix", errors: body.errors || {} });
        await putForm(form);
      } else if (response.status === 400 || response.status === 413) {
        const body = await response.json().catch(() => ({}));
        Object.assign(form, { state: "fix", errors: { "(body)": body.detail || `HTTP ${response.status}` } });
        await putForm(form);
      } else {
        break;  // 401, 429, 503…: try again later, nothing lost
      }
    }
    await loadRemote();
  } finally {
    state.syncing = false;
  }
  if (state.again) {
    await sendWaiting();
    return;
  }
  if (!state.current) await renderHome();
}

function payloadOf(form) {
  const body = { client_id: form.client_id, ...form.household, members: form.members };
  for (const name of ["network", "plan", "language"]) if (!body[name]) delete body[name];
  body.members = form.members.map((m) => {
    const person = {};
    for (const name of MEMBER_FIELDS) if (m[name]) person[name] = m[name].trim();
    return person;
  });
  return body;
}

// ---------------------------------------------------------------- checks on the phone (the API checks again)

function phoneProblem(text) {
  const rule = state.choices && state.choices.phone;
  if (!rule) return null;
  let digits = text.replace(/[\s.\-()]/g, "");
  if (digits.startsWith("+" + rule.calling_code)) digits = digits.slice(rule.calling_code.length + 1);
  else if (digits.startsWith("00" + rule.calling_code)) digits = digits.slice(rule.calling_code.length + 2);
  return new RegExp(rule.pattern).test(digits) ? null : "@badPhone";
}

function dateProblem(text) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return "@badDate";
  const [y, m, d] = text.split("-").map(Number);
  const date = new Date(Date.UTC(y, m - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) return "@badDate";
  if (text > today()) return "@future";
  return null;
}

function check(form) {
  const errors = {};
  const choices = state.choices || {};
  const household = form.household;
  if ((choices.communes || []).length && !household.commune) errors.commune = "@required";
  if (!household.subsidy_category) errors.subsidy_category = "@required";
  const heads = form.members.filter((m) => m.relationship === "head").length;
  if (heads !== 1) errors.members = "@oneHead";
  form.members.forEach((m, i) => {
    const at = `members[${i}]`;
    for (const name of ["first_name", "last_name", "sex", "date_of_birth", "relationship"]) {
      if (!(m[name] || "").trim()) errors[`${at}.${name}`] = "@required";
    }
    if (m.date_of_birth && !errors[`${at}.date_of_birth`]) {
      const problem = dateProblem(m.date_of_birth.trim());
      if (problem) errors[`${at}.date_of_birth`] = problem;
    }
    if ((m.phone || "").trim()) {
      const problem = phoneProblem(m.phone.trim());
      if (problem) errors[`${at}.phone`] = problem;
    }
    if (m.relationship === "head") {
      for (const name of choices.head_required || []) {
        if (!(m[name] || "").trim()) errors[`${at}.${name}`] = "@required";
      }
      if ((choices.card_required_for || []).includes(household.subsidy_category) && !(m.card_number || "").trim()) {
        errors[`${at}.card_number`] = "@required";
      }
    }
  });
  return errors;
}

// ---------------------------------------------------------------- views

function renderSignIn(message) {
  state.current = null;
  document.getElementById("title").textContent = "Mutuelle";
  const input = h("input", { id: "key", name: "key", autocomplete: "off", autocapitalize: "off", spellcheck: "false" });
  const error = h("p", { class: "error", id: "signin-error" }, message || "");
  const button = h("button", { id: "signin", type: "button", onclick: () => signIn(input.value.trim(), error) },
    t("signinButton"));
  app.replaceChildren(h("h1", {}, t("signin")), h("label", { for: "key" }, t("key")), input, error, button);
}

async function signIn(key, error) {
  if (!key) { error.textContent = t("required"); return; }
  state.key = key;
  const outcome = await loadChoices();
  if (outcome !== "ok") {
    state.key = null;
    error.textContent = outcome === "refused" ? t("badKey") : t("needNetwork");
    return;
  }
  await setSetting("key", key);
  await loadRemote();
  await renderHome();
}

async function signOut() {
  if (!window.confirm(t("signoutConfirm"))) return;
  await deleteSetting("key");
  await deleteSetting("choices");
  await deleteSetting("remote");
  if (window.caches) await caches.delete("collect-api");
  Object.assign(state, { key: null, choices: null, remote: [] });
  renderSignIn();
}

function statusOf(form, remote) {
  if (form && form.state === "waiting") return "WAITING";
  if (form && form.state === "fix") return "FIX";
  if (form && form.state === "draft") return "DRAFT";
  return remote ? remote.status : (form && form.status) || "SUBMITTED";
}

function headName(form) {
  const head = form.members.find((m) => m.relationship === "head") || form.members[0];
  return head ? `${head.first_name || ""} ${head.last_name || ""}`.trim() || "…" : "…";
}

async function renderHome() {
  state.current = null;
  const choices = state.choices;
  document.getElementById("title").textContent = choices ? choices.mutuelle.name : "Mutuelle";
  const forms = await allForms();
  const byClient = new Map(forms.map((f) => [f.client_id, f]));
  const remoteIds = new Set(state.remote.map((r) => r.client_id));
  const waiting = forms.filter((f) => f.state === "waiting").length;
  const items = [];
  // What is only on the phone first (drafts, waiting, to fix), then what the server knows, newest first.
  for (const form of forms.filter((f) => !remoteIds.has(f.client_id) || f.state !== "sent")
    .sort((a, b) => b.saved - a.saved)) {
    items.push(listItem(form, state.remote.find((r) => r.client_id === form.client_id)));
  }
  for (const remote of state.remote) {
    const form = byClient.get(remote.client_id);
    if (form && form.state !== "sent") continue;
    items.push(listItem(form, remote));
  }
  app.replaceChildren(
    h("p", { class: "muted" }, choices ? `${choices.collector.name} · ${choices.mutuelle.code}` : ""),
    h("div", { class: "waiting" },
      h("span", {}, `${t("waiting")} : `), h("strong", { id: "waiting-count" }, String(waiting)),
      h("button", { id: "send-now", type: "button", class: "secondary", onclick: () => sendWaiting() }, t("sendNow"))),
    h("button", { id: "new-household", type: "button", onclick: () => openForm(newForm()) }, t("newHousehold")),
    h("h2", {}, t("myList")),
    items.length ? h("ul", { class: "list", id: "forms" }, items) : h("p", { class: "muted" }, t("empty")),
    h("button", { id: "signout", type: "button", class: "danger", onclick: signOut }, t("signout")),
  );
}

function listItem(form, remote) {
  const status = statusOf(form, remote);
  const reopen = form && (form.state !== "sent" || status === "NEEDS_CHANGES");
  const name = form ? headName(form) : remote.kind === "change" ? `${t("change")} ${remote.household_no || ""}` : "…";
  const reason = remote && remote.reason && ["NEEDS_CHANGES", "REJECTED"].includes(status)
    ? h("div", { class: "reason" }, `${t("reason")} : ${remote.reason}`) : null;
  const number = remote && remote.household_no && status === "VALIDATED"
    ? h("div", { class: "household-no" }, `${t("householdNo")} : ${remote.household_no}`) : null;
  const missing = !form && status === "NEEDS_CHANGES" ? h("div", { class: "muted" }, t("notOnPhone")) : null;
  const onclick = reopen ? () => openForm(form, remote) : null;
  return h("li", { class: reopen ? "open" : "", "data-client-id": (form || remote).client_id, onclick },
    h("div", {}, h("strong", {}, name), " ", h("span", { class: `status ${status}` }, t(status))),
    reason, number, missing);
}

function newForm() {
  const choices = state.choices || {};
  const plan = (choices.plans || []).find((p) => p.default);
  return {
    client_id: crypto.randomUUID(),
    state: "draft",
    saved: Date.now(),
    errors: {},
    household: {
      commune: (choices.communes || []).length === 1 ? choices.communes[0] : "",
      network: (choices.collector && choices.collector.network) || "",
      plan: plan ? plan.code : "",
      language: choices.default_language || "",
      subsidy_category: "",
      sms_opt_in: true,
    },
    members: [{ relationship: "head" }],
  };
}

async function save(form) {
  form.saved = Date.now();
  await putForm(form);
}

function select(name, value, options, onchange) {
  return h("select", { id: name, name, onchange },
    h("option", { value: "" }, t("choose")),
    options.map(([code, label]) => h("option", { value: code, selected: code === value ? "selected" : null }, label)));
}

function field(form, key, label, control) {
  const error = form.errors[key];
  if (error) control.classList.add("invalid");
  control.setAttribute("data-key", key);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    h("p", { class: "error", "data-error-for": key }, shown(error)));
}

function openForm(form, remote) {
  state.current = form;
  const choices = state.choices || {};
  const hh = form.household;
  const persist = () => save(form);
  const setHousehold = (name) => (event) => {
    hh[name] = event.target.type === "checkbox" ? event.target.checked : event.target.value;
    persist();
  };
  const banner = [];
  if (remote && remote.status === "NEEDS_CHANGES" && remote.reason) {
    banner.push(h("div", { class: "banner", id: "reason" }, `${t("NEEDS_CHANGES")} — ${t("reason")} : ${remote.reason}`));
  }
  const serverErrors = Object.keys(form.errors).length && form.state === "fix";
  if (serverErrors) {
    const general = ["(body)", "client_id", "members"].filter((k) => form.errors[k]).map((k) => shown(form.errors[k]));
    banner.push(h("div", { class: "banner bad", id: "fix-banner" }, t("serverFix"), " ", general.join(" ; ") || t("fixBelow")));
  }
  const household = h("fieldset", {}, h("legend", {}, t("household")),
    field(form, "commune", t("commune"),
      select("commune", hh.commune, (choices.communes || []).map((c) => [c, c]), setHousehold("commune"))),
    field(form, "network", t("network"),
      select("network", hh.network, (choices.networks || []).map((n) => [n.code, n.name]), setHousehold("network"))),
    field(form, "plan", t("plan"),
      select("plan", hh.plan, (choices.plans || []).map((p) => [p.code, `${p.code} (${p.months})`]), setHousehold("plan"))),
    field(form, "subsidy_category", t("category"),
      select("subsidy_category", hh.subsidy_category, (choices.subsidy_categories || []).map((c) => [c.code, c.label]),
        setHousehold("subsidy_category"))),
    field(form, "language", t("language"),
      select("language", hh.language, (choices.languages || []).map((l) => [l, l]), setHousehold("language"))),
    h("label", { class: "check" },
      h("input", { type: "checkbox", id: "sms_opt_in", checked: hh.sms_opt_in, onchange: setHousehold("sms_opt_in") }),
      t("sms")));
  const people = form.members.map((member, index) => memberFieldset(form, member, index, persist));
  app.replaceChildren(
    ...banner,
    household,
    h("h2", {}, t("members")),
    h("p", { class: "error", "data-error-for": "members" }, shown(form.errors.members)),
    ...people,
    h("button", { id: "add-member", type: "button", class: "secondary", onclick: async () => {
      form.members.push({ relationship: form.members.some((m) => m.relationship === "head") ? "" : "head" });
      await persist();
      openForm(form, remote);
      app.querySelector(`fieldset[data-index="${form.members.length - 1}"] input`).focus();
    } }, t("addMember")),
    h("button", { id: "review", type: "button", onclick: () => review(form, remote) }, t("review")),
    h("div", { class: "row" },
      h("button", { id: "to-list", type: "button", class: "secondary", onclick: () => renderHome() }, t("cancel")),
      form.state === "sent" ? null : h("button", { id: "discard", type: "button", class: "danger", onclick: async () => {
        if (!window.confirm(t("discardConfirm"))) return;
        await deleteForm(form.client_id);
        renderHome();
      } }, t("discard"))),
  );
  const firstBad = app.querySelector(".invalid");
  if (firstBad) firstBad.scrollIntoView({ block: "center" });
}

function memberFieldset(form, member, index, persist) {
  const at = `members[${index}]`;
  const set = (name) => (event) => { member[name] = event.target.value; persist(); };
  const input = (name, attrs = {}) =>
    h("input", { id: `${at}.${name}`, name, value: member[name] || "", oninput: set(name), ...attrs });
  const relationships = (state.choices ? state.choices.relationships : ["head", "spouse", "child", "other"])
    .map((r) => [r, t(r)]);
  return h("fieldset", { "data-index": String(index) },
    h("legend", {}, `${t("member")} ${index + 1}${member.relationship === "head" ? ` — ${t("head")}` : ""}`),
    field(form, `${at}.first_name`, t("firstName"), input("first_name", { autocomplete: "off" })),
    field(form, `${at}.last_name`, t("lastName"), input("last_name", { autocomplete: "off" })),
    field(form, `${at}.sex`, t("sex"),
      Object.assign(select(`${at}.sex`, member.sex, [["F", t("female")], ["M", t("male")]], set("sex")), {})),
    field(form, `${at}.date_of_birth`, t("birth"),
      input("date_of_birth", { inputmode: "numeric", placeholder: "1990-01-31", maxlength: "10" })),
    field(form, `${at}.relationship`, t("relationship"),
      select(`${at}.relationship`, member.relationship, relationships, set("relationship"))),
    field(form, `${at}.phone`, t("phone"), input("phone", { type: "tel", inputmode: "tel", placeholder: "77 123 45 67" })),
    field(form, `${at}.id_number`, t("idNumber"), input("id_number", { inputmode: "numeric" })),
    field(form, `${at}.card_number`, t("cardNumber"), input("card_number")),
    index > 0 ? h("button", { type: "button", class: "danger", onclick: async () => {
      form.members.splice(index, 1);
      form.errors = {};
      await persist();
      openForm(form);
    } }, t("removeMember")) : null);
}

async function review(form, remote) {
  form.errors = check(form);
  if (form.state !== "sent") form.state = Object.keys(form.errors).length ? "draft" : form.state;
  await save(form);
  if (Object.keys(form.errors).length) {
    openForm(form, remote);
    return;
  }
  const choices = state.choices || {};
  const label = (list, code, key = "code", name = "name") => {
    const found = (list || []).find((x) => x[key] === code);
    return found ? found[name] : code || "—";
  };
  const hh = form.household;
  const facts = [
    [t("commune"), hh.commune], [t("network"), label(choices.networks, hh.network)], [t("plan"), hh.plan],
    [t("category"), label(choices.subsidy_categories, hh.subsidy_category, "code", "label")],
    [t("language"), hh.language], [t("sms"), hh.sms_opt_in ? "✓" : "✗"],
  ];
  const people = form.members.map((m, i) => h("li", {},
    h("strong", {}, `${i + 1}. ${m.first_name} ${m.last_name}`), ` — ${t(m.relationship)}, ${m.sex}, ${m.date_of_birth}`,
    m.phone ? `, ${m.phone}` : "", m.id_number ? `, ${m.id_number}` : "", m.card_number ? `, ${m.card_number}` : ""));
  app.replaceChildren(
    h("h1", {}, t("summary")),
    h("dl", { class: "summary", id: "summary" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v || "—")])),
    h("h2", {}, t("members")),
    h("ul", { class: "list" }, people),
    h("button", { id: "send", type: "button", onclick: async () => {
      form.state = "waiting";
      form.errors = {};
      await save(form);
      state.current = null;
      await renderHome();
      await sendWaiting();
    } }, t("send")),
    h("button", { id: "back", type: "button", class: "secondary", onclick: () => openForm(form, remote) }, t("back")),
  );
}

// ---------------------------------------------------------------- start

async function start() {
  state.lang = (await getSetting("lang")) || "fr";
  langSelect.value = state.lang;
  document.documentElement.lang = state.lang;
  langSelect.addEventListener("change", async () => {
    state.lang = langSelect.value;
    document.documentElement.lang = state.lang;
    showNetwork();
    if (!state.key) renderSignIn();
    else if (state.current) openForm(state.current);
    else renderHome();
    await setSetting("lang", state.lang);
  });
  showNetwork();
  window.addEventListener("online", () => { showNetwork(); sendWaiting(); });
  window.addEventListener("offline", showNetwork);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/collect/sw.js", { scope: "/collect/" }).catch(() => {});
  }
  state.key = (await getSetting("key")) || null;
  if (!state.key) { renderSignIn(); return; }
  state.choices = (await getSetting("choices")) || null;
  state.remote = (await getSetting("remote")) || [];
  await renderHome();
  if ((await loadChoices()) === "refused") {
    renderSignIn(t("badKey"));
    return;
  }
  await sendWaiting();
}

start();
