// The phone simulator: talks only to the admin's same-origin JSON endpoints (signed in, CSRF header).
(function () {
  "use strict";
  const root = document.getElementById("simulator");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const screen = document.getElementById("phone-screen");
  const entry = document.getElementById("phone-entry");
  const phone = document.getElementById("sim-phone");
  const serviceCode = root.dataset.serviceCode;
  // Words in the page's language (data-t-* attributes), English when the page has none.
  function t(name, fallback) { return root.dataset[name] || fallback; }
  let sessionId = null;
  let inputs = [];

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  function show(text, ended) {
    screen.textContent = text;
    screen.classList.toggle("ended", Boolean(ended));
  }

  function hangUp(message) {
    sessionId = null;
    inputs = [];
    entry.value = serviceCode;
    if (message) show(message, true);
  }

  async function send() {
    const keyed = entry.value.trim();
    if (sessionId === null) {
      if (keyed !== serviceCode) { show(t("tUnknownCode", "Unknown code. Dial " + serviceCode + "."), true); return; }
      sessionId = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
      inputs = [];
    } else {
      inputs.push(keyed);
    }
    entry.value = "";
    show("…");
    try {
      const reply = await post(root.dataset.ussd, { session_id: sessionId, phone: phone.value, text: inputs.join("*") });
      show(reply.screen, reply.ends);
      if (reply.ends) { sessionId = null; inputs = []; entry.value = serviceCode; }
    } catch (error) {
      hangUp(t("tConnection", "Connection problem or invalid MMI code.") + " (" + error.message + ")");
    }
  }

  root.querySelectorAll(".key").forEach(function (button) {
    button.addEventListener("click", function () { entry.value += button.dataset.key; });
  });
  document.getElementById("phone-clear").addEventListener("click", function () { entry.value = entry.value.slice(0, -1); });
  document.getElementById("phone-end").addEventListener("click", function () { hangUp(t("tEnded", "Call ended.")); });
  document.getElementById("phone-call").addEventListener("click", send);
  entry.addEventListener("keydown", function (event) { if (event.key === "Enter") { event.preventDefault(); send(); } });

  const replies = document.getElementById("sms-replies");
  function note(list, text) {
    const item = document.createElement("li");
    item.textContent = text;
    list.appendChild(item);
  }

  async function poll(after, tries) {
    const url = root.dataset.outbox + "?phone=" + encodeURIComponent(phone.value) + "&after=" + after;
    const response = await fetch(url, { credentials: "same-origin" });
    const data = await response.json();
    if (data.messages.length) {
      data.messages.forEach(function (m) { note(replies, "← " + m.body); });
      return;
    }
    if (tries > 0) setTimeout(function () { poll(after, tries - 1); }, 1000);
    else note(replies, t("tNoReply", "(no reply yet: is the worker running?)"));
  }

  document.getElementById("sms-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const text = document.getElementById("sms-text").value;
    note(replies, "→ " + text);
    try {
      const sent = await post(root.dataset.sms, { phone: phone.value, text: text });
      poll(sent.after, 20);
    } catch (error) {
      note(replies, t("tNotSent", "not sent") + " (" + error.message + ")");
    }
  });

  document.getElementById("pay-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const result = document.getElementById("pay-result");
    result.textContent = "…";
    try {
      const paid = await post(root.dataset.pay, {
        amount: document.getElementById("pay-amount").value,
        reference: document.getElementById("pay-reference").value,
        phone: phone.value,
      });
      const reply = paid.reply || {};
      result.textContent = paid.status === 200
        ? t("tPayment", "Payment") + " sandbox/" + paid.txn_id + " " + reply.outcome + " (" + reply.payment_status + ")"
        : t("tRefused", "Refused:") + " " + (reply.error || paid.status);
      result.dataset.txnId = paid.txn_id;
    } catch (error) {
      result.textContent = t("tNotSent", "not sent") + " (" + error.message + ")";
    }
  });
})();
