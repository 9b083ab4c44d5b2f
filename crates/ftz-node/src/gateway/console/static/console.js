// ftz-exchange console: the little the pages need a script for. Every state-changing request
// is a POST of JSON to this origin (which another site's page cannot send without the
// browser asking first); answers are shown as text, or as the node's own escaped HTML
// fragments. No inline script anywhere (Content-Security-Policy: script-src 'self').
"use strict";

(function () {
  const zh = document.body.dataset.lang === "zh";
  const say = (z, e) => (zh ? z : e);
  const $ = (sel, root) => (root || document).querySelector(sel);

  const post = (url, body) =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  const toBase64 = (buf) => {
    const bytes = new Uint8Array(buf);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const readFile = (file) => new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(r.result);
    r.onerror = () => fail(r.error);
    r.readAsArrayBuffer(file);
  });

  // An HTML fragment rendered (and escaped) by the node, shown in `target`; its state copied.
  async function showFragment(res, target, attr) {
    // Only the node's own HTML fragments are shown as HTML; anything else as text.
    if ((res.headers.get("content-type") || "").startsWith("text/html")) target.innerHTML = await res.text();
    else await showAnswer(res, target);
    const inner = target.querySelector("[data-" + attr + "]");
    target.dataset[attr] = inner ? inner.dataset[attr] : "failed";
  }

  // A problem (RFC 9457) or an answer, as text.
  async function showAnswer(res, out) {
    const text = await res.text();
    let v = null;
    try { v = JSON.parse(text); } catch (e) { /* not JSON */ }
    out.dataset.state = res.ok ? "ok" : "failed";
    if (!res.ok && v && v.reason) out.textContent = "✘ " + v.reason + ": " + v.detail;
    else out.textContent = (res.ok ? "✔ " : "✘ ") + (v ? JSON.stringify(v, null, 2) : text);
  }

  // Enterprise: download the offline bundle of the verified record.
  const dl = $("#download-bundle");
  if (dl) dl.addEventListener("click", async () => {
    const st = $("#download-status");
    st.textContent = "…";
    const d = dl.dataset;
    const res = await post("/console/export-bundle", { zone: d.zone, id: d.id, recognising_zone: d.recognising, purpose: d.purpose });
    if (!res.ok) { await showAnswer(res, st); return; }
    const blob = await res.blob();
    const name = (/filename="([^"]+)"/.exec(res.headers.get("content-disposition") || "") || [])[1] || "record.bundle";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    st.textContent = "✔ " + name;
  });

  // Enterprise: a bundle file chosen or dropped is checked offline by the node.
  const bundleFile = $("#bundle-file");
  const checkBundle = async (file) => {
    const out = $("#bundle-verdict");
    out.textContent = "…";
    const res = await post("/console/verify-bundle", { bundle: toBase64(await readFile(file)) });
    await showFragment(res, out, "verdict");
    const v = out.querySelector("[data-verdict]");
    out.dataset.verdict = v ? v.dataset.verdict : "REFUSED";
  };
  if (bundleFile) {
    bundleFile.addEventListener("change", () => bundleFile.files[0] && checkBundle(bundleFile.files[0]));
    const drop = $("#bundle-drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files[0]) checkBundle(e.dataTransfer.files[0]);
    });
  }

  // Admin: install a signed document.
  const install = $("#install-submit");
  if (install) install.addEventListener("click", async () => {
    const f = $("#install-file").files[0];
    const out = $("#install-result");
    if (!f) { out.dataset.state = "failed"; out.textContent = say("请选择文件", "choose a file"); return; }
    out.textContent = "…";
    const res = await post("/console/install", { kind: $("#install-kind").value, file: toBase64(await readFile(f)) });
    await showFragment(res, out, "state");
  });

  // Auditor: compare another zone's export (the directory `ftzctl audit export` wrote: its
  // `checkpoint` file and its `entries/<i>` files) with this zone's log.
  const cross = $("#cross-check-submit");
  if (cross) cross.addEventListener("click", async () => {
    const out = $("#cross-check-result");
    const files = Array.from($("#cross-check-files").files);
    let checkpoint = null;
    const entries = [];
    for (const f of files) {
      const path = f.webkitRelativePath || f.name;
      const m = /(?:^|\/)entries\/(\d+)$/.exec(path) || (/^\d+$/.test(f.name) ? [null, f.name] : null);
      if (f.name === "checkpoint") checkpoint = await f.text();
      else if (m) entries.push([Number(m[1]), f]);
    }
    if (checkpoint === null) { out.dataset.state = "failed"; out.textContent = say("导出中没有 checkpoint 文件", "the export has no checkpoint file"); return; }
    entries.sort((a, b) => a[0] - b[0]);
    const bar = $("#cross-check-progress");
    bar.hidden = false;
    bar.max = entries.length || 1;
    const encoded = [];
    for (const [i, f] of entries) {
      if (i !== encoded.length) { out.dataset.state = "failed"; out.textContent = say("缺少条目 ", "missing entry ") + encoded.length; return; }
      encoded.push(toBase64(await readFile(f)));
      bar.value = encoded.length;
    }
    out.textContent = "…";
    const res = await post("/console/cross-check", { request: { checkpoint, entries: encoded } });
    await showFragment(res, out, "state");
  });

  // Issuer: each form posts its fields as the JSON request of the route it names.
  document.querySelectorAll("form.api").forEach((form) => {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("output.result", form);
      const fields = {};
      for (const el of form.elements) {
        if (!el.name) continue;
        if (el.dataset.type === "ms") fields[el.name] = el.value ? String(Date.parse(el.value + "Z")) : "0";
        else fields[el.name] = el.value.trim();
      }
      if (form.dataset.wrap === "certification" && !fields.issued_at_ms) fields.issued_at_ms = String(Date.now());
      const body = form.dataset.wrap ? { [form.dataset.wrap]: fields } : fields;
      out.textContent = "…";
      await showAnswer(await post(form.dataset.api, body), out);
    });
  });

  // Issuer: import a CSV file in parts: every part checked first, then imported, with progress.
  const imp = $("#import-submit");
  if (imp) imp.addEventListener("click", async () => {
    const out = $("#import-result");
    const bar = $("#import-progress");
    const f = $("#import-file").files[0];
    if (!f) { out.dataset.state = "failed"; out.textContent = say("请选择 CSV 文件", "choose a CSV file"); return; }
    const lines = (await f.text()).split(/\r?\n/);
    const header = lines.shift();
    while (lines.length && lines[lines.length - 1].trim() === "") lines.pop();
    const PART = 1000;
    const parts = [];
    for (let i = 0; i < lines.length; i += PART) parts.push({ csv: header + "\n" + lines.slice(i, i + PART).join("\n"), first_line: String(i + 1) });
    bar.max = parts.length * 2 || 1;
    bar.value = 0;
    for (const [phase, checkOnly] of [[say("检查", "checking"), true], [say("导入", "importing"), false]]) {
      let rows = 0;
      for (const p of parts) {
        out.textContent = phase + " " + rows + " / " + lines.length;
        const res = await post("/console/import-rows", Object.assign({ check_only: checkOnly }, p));
        if (!res.ok) { await showAnswer(res, out); return; }
        const v = await res.json();
        rows += Number(v.imported || v.checked || 0);
        bar.value += 1;
        if (!checkOnly) out.dataset.total = v.total_rows;
      }
    }
    out.dataset.state = "ok";
    out.textContent = "✔ " + say(`已导入 ${lines.length} 行，数据集共 ${out.dataset.total} 行`, `imported ${lines.length} rows; the dataset holds ${out.dataset.total} rows`);
  });
})();
