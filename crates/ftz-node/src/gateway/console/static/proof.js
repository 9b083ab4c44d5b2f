// ftz-exchange console: checks a log entry's inclusion proof and its checkpoint's signatures in
// the browser, with WebCrypto (SHA-256, Ed25519), independently of the node that served the
// page. This is a second implementation of the checks of crates/ftz-audit (RFC 9162 inclusion
// proofs, c2sp.org/tlog-proof, c2sp.org/signed-note, c2sp.org/tlog-cosignature), kept small
// so that an auditor can read it. The keys it checks with are the auditor's own when pinned
// (kept in this browser's localStorage, from the signed registry: `ftzctl keys show
// --registry`); only without pinned keys does it use the ones the node serves, and says so.
"use strict";

(function () {
  const zh = document.body.dataset.lang === "zh";
  const say = (z, e) => (zh ? z : e);
  const enc = new TextEncoder();

  const hexToBytes = (h) => {
    if (h.length % 2 !== 0 || /[^0-9a-f]/i.test(h)) throw new Error(say("叶子不是十六进制", "the leaf is not hex"));
    const out = new Uint8Array(h.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
    return out;
  };
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  // A decimal as the specs write it: digits only, no sign, no leading zero.
  const decimal = (t) => {
    if (!/^(0|[1-9][0-9]{0,19})$/.test(t || "")) throw new Error(say("不是十进制数：", "not a decimal number: ") + JSON.stringify(t));
    return BigInt(t);
  };
  // A cosignature's time, for display only: never throws, whatever a witness signed.
  const when = (ts) => {
    const d = new Date(Number(ts) * 1000);
    return isNaN(d.getTime()) ? String(ts) + " s" : d.toISOString();
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (...parts) => new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
  async function rootFromInclusion(index, size, leafHash, proof) {
    if (index >= size) throw new Error(say("序号超出检查点大小", "index is past the checkpoint's size"));
    let fn = index, sn = size - 1n, r = leafHash;
    for (const p of proof) {
      if (sn === 0n) throw new Error(say("证明过长", "the proof is too long"));
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(Uint8Array.of(1), p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await sha256(Uint8Array.of(1), r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error(say("证明过短", "the proof is too short"));
    return r;
  }

  // c2sp.org/tlog-proof@v1: header, optional extra, index, hashes, blank line, checkpoint note.
  function parseProof(text) {
    const lines = text.split("\n");
    if (lines[0] !== "c2sp.org/tlog-proof@v1") throw new Error(say("不是 tlog-proof", "not a tlog-proof"));
    let i = 1;
    if (lines[i].startsWith("extra ")) i++;
    if (!lines[i].startsWith("index ")) throw new Error(say("缺少 index 行", "no index line"));
    const index = decimal(lines[i].slice(6));
    i++;
    const hashes = [];
    for (; lines[i] !== ""; i++) {
      if (i >= lines.length) throw new Error(say("证明被截断", "the proof is truncated"));
      const h = b64(lines[i]);
      if (h.length !== 32) throw new Error(say("哈希不是 32 字节", "a hash is not 32 bytes"));
      hashes.push(h);
    }
    return { index, hashes, note: lines.slice(i + 1).join("\n") };
  }

  // c2sp.org/signed-note: text (ending in a newline), blank line, signature lines.
  function parseNote(note) {
    const cut = note.indexOf("\n\n");
    if (cut < 0) throw new Error(say("检查点没有签名", "the checkpoint has no signatures"));
    const text = note.slice(0, cut + 1);
    const sigs = note.slice(cut + 2).split("\n").filter((l) => l !== "").map((l) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(l);
      if (!m) throw new Error(say("签名行格式错误", "a malformed signature line"));
      const raw = b64(m[2]);
      return { name: m[1], id: raw.slice(0, 4), body: raw.slice(4) };
    });
    const [origin, size, root] = text.split("\n");
    return { text, sigs, origin, size: decimal(size), root: b64(root) };
  }

  // name+hash+base64(type || key): the hash is SHA-256(name || "\n" || type || key)[:4].
  async function parseKey(vkey) {
    // The key data is base64, which may itself hold "+": split at the first two only.
    const i = vkey.indexOf("+"), j = vkey.indexOf("+", i + 1);
    if (i < 0 || j < 0) throw new Error(say("公钥格式错误", "a malformed key"));
    const [name, hash, data] = [vkey.slice(0, i), vkey.slice(i + 1, j), vkey.slice(j + 1)];
    const raw = b64(data);
    const id = (await sha256(enc.encode(name + "\n"), raw)).slice(0, 4);
    const hex = Array.from(id, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex !== hash) throw new Error(say("公钥编号与公钥不符：", "a key id does not match its key: ") + name);
    const key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    return { name, type: raw[0], id, key };
  }

  async function check(data, step) {
    const leaf = hexToBytes(data.leaf_hex);
    const leafHash = await sha256(Uint8Array.of(0), leaf);
    step(true, say("叶子哈希 SHA-256(0x00‖叶子)", "leaf hash SHA-256(0x00 || leaf)"));
    const proof = parseProof(data.proof);
    if (proof.index !== BigInt(data.index)) throw new Error(say("证明的序号不是本条目", "the proof is for another index"));
    const cp = parseNote(proof.note);
    const root = await rootFromInclusion(proof.index, cp.size, leafHash, proof.hashes);
    if (!equal(root, cp.root)) throw new Error(say("包含证明得出的根与检查点不符", "the inclusion proof leads to another root than the checkpoint's"));
    step(true, say(`包含证明：条目 ${proof.index} 在大小为 ${cp.size} 的树中`, `inclusion proof: entry ${proof.index} is in the tree of size ${cp.size}`));
    const keys = [];
    const pinned = pinnedKeys();
    step(pinned.length > 0, pinned.length > 0
      ? say(`使用您固定的 ${pinned.length} 个公钥`, `with the ${pinned.length} key(s) you pinned`)
      : say("使用本节点提供的公钥（未固定公钥：请与注册表核对）", "with the keys this node serves (none pinned: compare them with the registry's)"));
    for (const v of pinned.length > 0 ? pinned : data.keys) {
      try { keys.push(await parseKey(v)); } catch (e) { step(false, e.message); }
    }
    let logSigned = false, cosigned = 0;
    for (const s of cp.sigs) {
      const k = keys.find((k) => k.name === s.name && equal(k.id, s.id));
      if (!k) continue;
      let ok, what;
      if (k.type === 0x01) {
        ok = await crypto.subtle.verify({ name: "Ed25519" }, k.key, s.body, enc.encode(cp.text));
        what = say("日志签名 ", "log signature ") + s.name;
        if (!ok) throw new Error(what + say(" 无效", " is invalid"));
        if (s.name === cp.origin) logSigned = true;
      } else if (k.type === 0x04) {
        const ts = new DataView(s.body.buffer, s.body.byteOffset, 8).getBigUint64(0);
        const msg = enc.encode(`cosignature/v1\ntime ${ts}\n` + cp.text);
        ok = await crypto.subtle.verify({ name: "Ed25519" }, k.key, s.body.slice(8), msg);
        what = say("联署 ", "cosignature ") + s.name + " @ " + when(ts);
        if (!ok) throw new Error(what + say(" 无效", " is invalid"));
        cosigned++;
      } else continue;
      step(true, what);
    }
    if (!logSigned) throw new Error(say("检查点没有日志本身的有效签名", "the checkpoint has no valid signature of the log itself"));
    return cosigned;
  }

  const STORE = "ftz.pinned-keys";
  function pinnedKeys() {
    try { return (localStorage.getItem(STORE) || "").split("\n").map((l) => l.trim()).filter((l) => l !== ""); }
    catch (e) { return []; }
  }

  function pinning() {
    const area = document.getElementById("pinned-keys");
    const save = document.getElementById("pinned-save");
    if (!area || !save) return;
    area.value = pinnedKeys().join("\n");
    if (area.value) document.getElementById("pinned").open = true;
    save.addEventListener("click", () => {
      try { localStorage.setItem(STORE, area.value); } catch (e) { /* private mode: not kept */ }
      document.getElementById("proof-steps").textContent = "";
      run();
    });
  }

  function run() {
    const box = document.getElementById("proof-check");
    const dataEl = document.getElementById("proof-data");
    if (!box || !dataEl || box.dataset.state === "none") return;
    const status = document.getElementById("proof-status");
    const steps = document.getElementById("proof-steps");
    const step = (ok, text) => {
      const li = document.createElement("li");
      li.dataset.ok = String(ok);
      li.textContent = (ok ? "✔ " : "✘ ") + text;
      steps.appendChild(li);
    };
    let data;
    try { data = JSON.parse(dataEl.textContent); } catch (e) { data = null; }
    if (!data || !crypto.subtle) {
      box.dataset.state = "failed";
      status.textContent = say("此浏览器无法验证（需要 HTTPS 与 WebCrypto）", "this browser cannot check (HTTPS and WebCrypto are needed)");
      return;
    }
    check(data, step).then(
      (cosigned) => {
        // Signed by the log alone, a checkpoint could be one of two views the log shows: only
        // a witness's cosignature says another zone saw the same tree.
        box.dataset.state = cosigned > 0 ? "ok" : "unwitnessed";
        status.textContent = cosigned > 0
          ? say(`已验证：条目在已签名的检查点中，${cosigned} 个联署有效。`, `Verified: the entry is in the signed checkpoint; ${cosigned} cosignature(s) valid.`)
          : say("条目在日志签名的检查点中，但没有有效的联署：尚无其他区见证此检查点。", "The entry is in a checkpoint the log signed, but no cosignature verifies: no other zone has witnessed it yet.");
      },
      (e) => {
        box.dataset.state = "failed";
        status.textContent = say("验证失败：", "Verification FAILED: ") + e.message;
        step(false, e.message);
      },
    );
  }

  const start = () => { pinning(); run(); };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
