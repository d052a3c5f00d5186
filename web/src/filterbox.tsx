// FilterBox: the filter language's input, with completion of field names
// (from GET /api/v1/schema) and of values (from the caller: live data), and
// a parse error shown at its column.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, FieldSet } from "./api";

const WORD = /[A-Za-z0-9._\/:*-]/;
const OPS = new Set(["=", "==", "!=", "<", "<=", ">", ">=", "contains", "matches", "in"]);
const KEYWORDS = ["and", "or", "not", "in", "contains", "matches", "exists"];

interface Ctx {
  start: number; // where the word under the caret starts
  word: string;
  field?: string; // set when completing a value of this field
}

// context finds what the caret is completing: a field name, or a value of
// the field before the last operator.
export function context(text: string, caret: number): Ctx {
  let start = caret;
  while (start > 0 && WORD.test(text[start - 1])) start--;
  if (start > 0 && text[start - 1] === '"') start--;
  const word = text.slice(start, caret).replace(/^"/, "");
  // Tokens before the word, roughly (strings kept whole).
  const toks = text.slice(0, start).match(/"(?:[^"\\]|\\.)*"?|[!<>=]=?|[(),]|[^\s()",!<>=]+/g) ?? [];
  let i = toks.length - 1;
  // Inside an in-list: skip back over values and commas to "(".
  if (i >= 0 && (toks[i] === "," || toks[i] === "(")) {
    let j = i;
    while (j >= 0 && toks[j] !== "(") j--;
    if (j >= 1 && toks[j - 1].toLowerCase() === "in" && j >= 2) return { start, word, field: toks[j - 2 - (toks[j - 2]?.toLowerCase() === "not" ? 1 : 0)] };
    if (toks[i] === "(") return { start, word };
  }
  if (i >= 1 && OPS.has(toks[i].toLowerCase())) {
    let f = toks[i - 1];
    if (f.toLowerCase() === "not" && i >= 2) f = toks[i - 2];
    return { start, word, field: f };
  }
  return { start, word };
}

export function FilterBox({
  value,
  onChange,
  onSubmit,
  schema,
  values,
  error,
  placeholder,
  label,
  onFocus,
}: {
  value: string;
  onChange: (v: string) => void;
  onSubmit: (v: string) => void;
  schema?: FieldSet;
  values?: (field: string) => string[];
  error?: ApiError;
  placeholder?: string;
  label: string;
  onFocus?: () => void;
}) {
  const input = useRef<HTMLInputElement>(null);
  const [caret, setCaret] = useState(value.length);
  const [open, setOpen] = useState(false);
  const [sel, setSel] = useState(0);
  const listId = useMemo(() => "fb-" + Math.random().toString(36).slice(2), []);

  const ctx = context(value, caret);
  const suggestions = useMemo(() => {
    const w = ctx.word.toLowerCase();
    let all: string[];
    if (ctx.field) {
      all = values ? values(ctx.field) : [];
    } else {
      const fields = schema?.fields ?? [];
      const dyn = values ? values("__fields__") : [];
      all = [...new Set([...fields, ...dyn, ...(schema?.prefixes ?? [])])];
      if (w && value.slice(0, ctx.start).trim()) all = all.concat(KEYWORDS);
    }
    return all.filter((s) => s.toLowerCase().startsWith(w) && s.toLowerCase() !== w).slice(0, 12);
  }, [ctx.word, ctx.field, schema, values, value]);

  useEffect(() => setSel(0), [ctx.word, ctx.field]);

  // An error moves the caret to its column.
  useEffect(() => {
    if (error?.position && input.current && document.activeElement === input.current) {
      const p = Math.min(error.position - 1, value.length);
      input.current.setSelectionRange(p, p);
    }
  }, [error]);

  const accept = (s: string) => {
    const needsQuote = ctx.field && !/^[A-Za-z0-9._\/:*-]+$/.test(s);
    const ins = needsQuote ? JSON.stringify(s) : s;
    const after = value.slice(caret).replace(/^[A-Za-z0-9._\/:*"-]*/, "");
    const addSpace = !s.endsWith(".") && !after.startsWith(" ");
    const next = value.slice(0, ctx.start) + ins + (addSpace ? " " : "") + after;
    const pos = ctx.start + ins.length + (addSpace ? 1 : 0);
    // Update the field at once, not at the next render: the keys typed
    // right after Tab must land after the completion.
    if (input.current) {
      input.current.value = next;
      input.current.setSelectionRange(pos, pos);
    }
    onChange(next);
    setCaret(pos);
    setOpen(!addSpace); // a prefix like label. goes on completing
    // Re-place the caret after the render, unless keys typed in the
    // meantime changed the text (they moved the caret themselves).
    requestAnimationFrame(() => {
      if (input.current && input.current.value === next) input.current.setSelectionRange(pos, pos);
    });
  };

  const show = open && suggestions.length > 0;
  const pos = error?.position;
  return (
    <form
      class="filterbox"
      role="search"
      onSubmit={(e) => {
        e.preventDefault();
        setOpen(false);
        onSubmit(value);
      }}
    >
      <label class="sr-only" for={listId + "-in"}>
        {label}
      </label>
      <div class="fb-row">
        <div class="fb-input">
          <input
            id={listId + "-in"}
            ref={input}
            type="text"
            role="combobox"
            aria-expanded={show}
            aria-controls={listId}
            aria-autocomplete="list"
            aria-activedescendant={show ? `${listId}-${sel}` : undefined}
            aria-invalid={!!error}
            aria-describedby={error ? listId + "-err" : undefined}
            spellcheck={false}
            autocomplete="off"
            placeholder={placeholder}
            value={value}
            data-testid="filter-input"
            onInput={(e) => {
              const t = e.currentTarget;
              onChange(t.value);
              setCaret(t.selectionStart ?? t.value.length);
              setOpen(true);
            }}
            onClick={(e) => setCaret(e.currentTarget.selectionStart ?? 0)}
            onKeyUp={(e) => {
              if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(e.key)) setCaret(e.currentTarget.selectionStart ?? 0);
            }}
            onFocus={() => {
              setOpen(true);
              onFocus?.();
            }}
            onBlur={() => setTimeout(() => setOpen(false), 150)}
            onKeyDown={(e) => {
              if (e.key === "ArrowDown" && suggestions.length) {
                e.preventDefault();
                if (!open) setOpen(true);
                else setSel((sel + 1) % suggestions.length);
              } else if (e.key === "ArrowUp" && show) {
                e.preventDefault();
                setSel((sel + suggestions.length - 1) % suggestions.length);
              } else if ((e.key === "Tab" || e.key === "Enter") && show && !e.shiftKey) {
                e.preventDefault();
                accept(suggestions[sel]);
              } else if (e.key === "Escape" && show) {
                e.preventDefault();
                setOpen(false);
              }
            }}
          />
          {show && (
            <ul class="suggest" id={listId} role="listbox" data-testid="suggestions">
              {suggestions.map((s, i) => (
                <li
                  id={`${listId}-${i}`}
                  role="option"
                  aria-selected={i === sel}
                  class={i === sel ? "on" : ""}
                  onMouseDown={(e) => {
                    e.preventDefault();
                    accept(s);
                  }}
                >
                  <span class="kind">{ctx.field ? "value" : KEYWORDS.includes(s) ? "keyword" : s.endsWith(".") ? "prefix" : "field"}</span>
                  {s}
                </li>
              ))}
            </ul>
          )}
        </div>
        <button type="submit">Search</button>
      </div>
      {error && (
        <div class="filter-error" id={listId + "-err"} role="alert" data-testid="filter-error" data-column={pos ?? ""}>
          {pos ? (
            <>
              <pre aria-hidden="true">
                {value}
                {"\n"}
                {" ".repeat(Math.max(0, pos - 1))}^
              </pre>
              <div>{error.message.replace(/^filter: /, "").replace(/^column \d+: /, "")} (column {pos})</div>
            </>
          ) : (
            <div>{error.message}</div>
          )}
        </div>
      )}
    </form>
  );
}

// valuesFrom collects, for completion, the distinct values of the fields of
// a sample of inventory workloads (namespace, kind, label.app, ...).
export function inventoryValues(ws: import("./api").Workload[]): (field: string) => string[] {
  const cache = new Map<string, string[]>();
  const get = (w: import("./api").Workload, f: string): (string | undefined)[] => {
    switch (f) {
      case "namespace":
        return [w.kind === "namespace" ? w.name : w.namespace];
      case "kind":
        return [w.kind];
      case "name":
        return [w.name];
      case "cluster":
        return [w.cluster];
      case "node":
        return [w.node];
      case "phase":
        return [w.phase];
      case "owner.kind":
        return [w.owner?.kind];
      case "owner.name":
        return [w.owner?.name];
      case "service.type":
        return [w.serviceType];
      case "service_account":
        return [w.serviceAccount];
      case "image":
        return (w.containers ?? []).map((c) => c.image);
      case "ip":
        return w.ips ?? [];
      case "id":
        return [w.id];
    }
    if (f.startsWith("label.")) return [w.labels?.[f.slice(6)]];
    if (f.startsWith("annotation.")) return [w.annotations?.[f.slice(11)]];
    if (f.startsWith("attr.") || f.startsWith("vuln.")) return w.attrs?.[f] ?? [];
    return [];
  };
  return (field: string) => {
    let v = cache.get(field);
    if (!v) {
      const s = new Set<string>();
      if (field === "__fields__") {
        for (const w of ws) {
          for (const k of Object.keys(w.labels ?? {})) s.add("label." + k);
          for (const k of Object.keys(w.attrs ?? {})) s.add(k);
        }
      } else for (const w of ws) for (const x of get(w, field)) if (x) s.add(x);
      v = [...s].sort();
      cache.set(field, v);
    }
    return v;
  };
}
