// Renders /openapi.json as a page: operations grouped by tag, their parameters, request and
// response schemas, and an example curl command. Plain DOM, no libraries, nothing from the network
// but the document itself. Text is always set with textContent (never parsed as HTML).
"use strict";

(function () {
  const METHODS = ["get", "post", "put", "patch", "delete"];
  let doc = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function resolve(schema) {
    let seen = 0;
    while (schema && schema.$ref && seen++ < 20) {
      const parts = schema.$ref.replace(/^#\//, "").split("/");
      schema = parts.reduce((node, key) => (node ? node[key] : undefined), doc);
    }
    return schema || {};
  }

  function refName(schema) {
    return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
  }

  function typeLabel(schema) {
    const name = refName(schema);
    if (name) return name;
    const s = resolve(schema);
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.oneOf) return s.oneOf.map(typeLabel).join(" | ");
    if (s.allOf) return s.allOf.map(typeLabel).join(" & ");
    let type = Array.isArray(s.type) ? s.type.join(" | ") : s.type || "any";
    if (type.startsWith("array") && s.items) type = typeLabel(s.items) + "[]";
    if (s.format) type += " (" + s.format + ")";
    return type;
  }

  // A schema as nested lists of its properties (depth-limited, references expanded once each).
  function renderSchema(schema, depth, seen) {
    const s = resolve(schema);
    const name = refName(schema);
    if (depth > 4 || (name && seen.has(name))) return null;
    const nextSeen = new Set(seen);
    if (name) nextSeen.add(name);
    const parts = [];
    for (const sub of s.allOf || []) {
      const rendered = renderSchema(sub, depth, nextSeen);
      if (rendered) parts.push(rendered);
    }
    const props = s.properties || {};
    if (Object.keys(props).length) {
      const required = new Set(s.required || []);
      const list = el("ul");
      for (const [prop, propSchema] of Object.entries(props)) {
        const resolved = resolve(propSchema);
        const item = el("li", {}, el("code", {}, prop), " ",
          el("span", { class: "type" }, typeLabel(propSchema)),
          required.has(prop) ? el("span", { class: "req" }, " required") : null,
          resolved.description ? " — " + resolved.description : null);
        const inner = resolved.type === "array" && resolved.items ? resolved.items : propSchema;
        const nested = renderSchema(inner, depth + 1, nextSeen);
        if (nested && (resolve(inner).properties || resolve(inner).allOf)) item.append(nested);
        list.append(item);
      }
      parts.push(list);
    }
    for (const option of s.oneOf || []) {
      const rendered = renderSchema(option, depth + 1, nextSeen);
      if (rendered && resolve(option).properties) {
        parts.push(el("div", {}, "one of: " + typeLabel(option), rendered));
      }
    }
    if (!parts.length) return null;
    return el("div", { class: "schema" }, ...parts);
  }

  function exampleOf(schema, depth) {
    const s = resolve(schema);
    if (s.example !== undefined) return s.example;
    if (s.default !== undefined) return s.default;
    if (s.const !== undefined) return s.const;
    if (s.enum) return s.enum[0];
    if (depth > 3) return null;
    if (s.properties) {
      const out = {};
      for (const [key, value] of Object.entries(s.properties)) out[key] = exampleOf(value, depth + 1);
      return out;
    }
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    return { string: "...", integer: 0, number: 0, boolean: true, array: [] }[type] ?? null;
  }

  function shellQuote(text) {
    return "'" + String(text).replace(/'/g, "'\\''") + "'";
  }

  function curlFor(path, method, op) {
    const base = window.location.origin;
    let url = base + path;
    for (const param of op.parameters || []) {
      if (param.in === "path") url = url.replace("{" + param.name + "}", param.example || "ID");
    }
    if (path === "/v1/stream") {
      return "# a WebSocket: e.g. with websocat\nwebsocat " +
        shellQuote(url.replace(/^http/, "ws") + "?voice=piper:joe&token=$TIMBRE_KEY");
    }
    const lines = ["curl -sS" + (method === "get" ? "" : " -X " + method.toUpperCase()) + " " +
      shellQuote(url)];
    const isPublic = Array.isArray(op.security) && op.security.length === 0;
    if (!isPublic) lines.push('-H "Authorization: Bearer $TIMBRE_KEY"');
    const content = (op.requestBody && op.requestBody.content) || {};
    if (content["application/json"]) {
      const media = content["application/json"];
      const body = media.example !== undefined ? media.example : exampleOf(media.schema, 0);
      lines.push("-H 'Content-Type: application/json'");
      lines.push("-d " + shellQuote(JSON.stringify(body)));
    } else if (content["multipart/form-data"]) {
      const schema = resolve(content["multipart/form-data"].schema);
      const required = new Set(schema.required || []);
      for (const [key, value] of Object.entries(schema.properties || {})) {
        if (!required.has(key)) continue;
        const s = resolve(value);
        const isFile = s.format === "binary" || (s.items && resolve(s.items).format === "binary");
        const example = isFile ? "@reference.wav" : s.type === "boolean" ? "true"
          : exampleOf(value, 0);
        lines.push("-F " + shellQuote(key + "=" + (example === "..." ? "…" : example)));
      }
    }
    if (path.endsWith("/audio")) lines.push("-o result.wav");
    return lines.join(" \\\n  ");
  }

  function parametersTable(params) {
    if (!params || !params.length) return null;
    const table = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"),
      el("th", {}, "type"), el("th", {}, "description")));
    for (const p of params) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
        el("td", { class: "type" }, typeLabel(p.schema || {})),
        el("td", {}, (p.required ? "required. " : "") + (p.description || ""))));
    }
    return el("div", {}, el("h4", {}, "Parameters"), table);
  }

  function bodySection(body) {
    if (!body) return null;
    const section = el("div", {}, el("h4", {}, "Request body" + (body.required ? "" : " (optional)")));
    for (const [type, media] of Object.entries(body.content || {})) {
      section.append(el("div", {}, el("code", {}, type), " ",
        el("span", { class: "type" }, typeLabel(media.schema || {}))));
      const rendered = renderSchema(media.schema || {}, 0, new Set());
      if (rendered) section.append(rendered);
    }
    return section;
  }

  function responsesSection(responses) {
    const section = el("div", {}, el("h4", {}, "Responses"));
    const table = el("table");
    for (const [status, response] of Object.entries(responses || {})) {
      const types = Object.entries(response.content || {});
      const cell = el("td", {}, response.description || "");
      for (const [type, media] of types) {
        cell.append(el("div", {}, el("code", {}, type), " ",
          el("span", { class: "type" }, typeLabel(media.schema || {}))));
        if (status.startsWith("2")) {
          const rendered = renderSchema(media.schema || {}, 0, new Set());
          if (rendered) cell.append(rendered);
        }
      }
      table.append(el("tr", {}, el("td", {}, el("code", {}, status)), cell));
    }
    section.append(table);
    return section;
  }

  function operation(path, method, op) {
    const isPublic = Array.isArray(op.security) && op.security.length === 0;
    const summary = el("summary", {},
      el("span", { class: "method " + method }, method.toUpperCase()),
      el("span", { class: "path" }, path),
      el("span", { class: "summary" }, op.summary || ""),
      op["x-scope"] ? el("span", { class: "badge" }, "scope: " + op["x-scope"]) : null,
      isPublic ? el("span", { class: "badge" }, "public") : null);
    const body = el("div", { class: "op-body" },
      el("p", {}, op.description || ""),
      parametersTable(op.parameters),
      bodySection(op.requestBody),
      responsesSection(op.responses),
      el("h4", {}, "Example"),
      el("pre", {}, el("code", {}, curlFor(path, method, op))));
    const id = (op.operationId || method + path).replace(/[^A-Za-z0-9_-]/g, "_");
    return el("details", { class: "op", id: id }, summary, body);
  }

  function render() {
    document.getElementById("title").textContent = doc.info.title + " (OpenAPI " + doc.openapi + ")";
    document.getElementById("description").textContent = doc.info.description || "";
    document.title = doc.info.title;
    const groups = new Map((doc.tags || []).map((t) => [t.name, []]));
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        if (!item[method]) continue;
        const tag = (item[method].tags || ["Other"])[0];
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag).push([path, method, item[method]]);
      }
    }
    const main = document.getElementById("operations");
    const toc = document.getElementById("toc");
    toc.append(el("a", { href: "/openapi.json" }, "openapi.json"));
    for (const [tag, ops] of groups) {
      if (!ops.length) continue;
      const anchor = "tag-" + tag.replace(/[^A-Za-z0-9]/g, "_");
      toc.append(el("a", { href: "#" + anchor }, tag));
      main.append(el("h2", { id: anchor }, tag));
      for (const [path, method, op] of ops) main.append(operation(path, method, op));
    }
    main.dataset.rendered = String(groups.size);
  }

  fetch("/openapi.json")
    .then((response) => {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then((body) => { doc = body; render(); })
    .catch((err) => {
      document.getElementById("error").textContent = "Could not load /openapi.json: " + err.message;
    });
})();
