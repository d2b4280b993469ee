// A light mirror of one tab's recorded DOM, kept from its serialized nodes (full snapshots and
// mutation adds/removes/texts/attributes), so the event list can name a click's element ("Add
// todo", button#save) as it was at that moment, in live, rewind and replay alike, without a
// replayer for every tab. Masked text stays masked: it is whatever the recorder sent.
import { isObject } from './types';

interface Node {
  tag: string; // '' for text nodes
  attrs: Record<string, unknown>;
  text: string;
  kids: number[];
}

type Serialized = Record<string, unknown>;
const NODE_TEXT = 3;
const NODE_ELEMENT = 2;
const SKIP = new Set(['script', 'style', 'noscript', 'template']);
const ACTIONABLE = new Set(['a', 'button', 'label', 'summary', 'option', 'li', 'td', 'th']);
const MAX_LABEL = 60;

export class NodeIndex {
  private nodes = new Map<number, Node>();

  /** A full snapshot: the tab's document starts over. */
  snapshot(root: unknown): void {
    this.nodes.clear();
    if (isObject(root)) this.add(root);
  }

  /** A Mutation event's data: nodes added and removed, texts and attributes changed. */
  mutation(d: Record<string, unknown>): void {
    for (const a of arr(d.adds)) {
      if (!isObject(a) || !isObject(a.node)) continue;
      const id = this.add(a.node);
      const parent = this.nodes.get(Number(a.parentId));
      if (id !== null && parent && !parent.kids.includes(id)) parent.kids.push(id);
    }
    for (const r of arr(d.removes)) {
      if (!isObject(r)) continue;
      const parent = this.nodes.get(Number(r.parentId));
      if (parent) parent.kids = parent.kids.filter((k) => k !== Number(r.id));
    }
    for (const t of arr(d.texts)) {
      const n = isObject(t) ? this.nodes.get(Number(t.id)) : undefined;
      if (n && isObject(t)) n.text = String(t.value ?? '');
    }
    for (const a of arr(d.attributes)) {
      const n = isObject(a) ? this.nodes.get(Number(a.id)) : undefined;
      if (n && isObject(a) && isObject(a.attributes)) Object.assign(n.attrs, a.attributes);
    }
  }

  private add(s: Serialized): number | null {
    const id = Number(s.id);
    if (!Number.isFinite(id)) return null;
    const node: Node = {
      tag: s.type === NODE_ELEMENT ? String(s.tagName ?? '').toLowerCase() : '',
      attrs: isObject(s.attributes) ? { ...s.attributes } : {},
      text: s.type === NODE_TEXT ? String(s.textContent ?? '') : '',
      kids: [],
    };
    this.nodes.set(id, node);
    for (const c of arr(s.childNodes)) {
      if (!isObject(c)) continue;
      const k = this.add(c);
      if (k !== null) node.kids.push(k);
    }
    return id;
  }

  private textOf(id: number, budget = { left: 400 }): string {
    const n = this.nodes.get(id);
    if (!n || budget.left <= 0 || SKIP.has(n.tag)) return '';
    if (!n.tag) {
      budget.left -= n.text.length;
      return n.text;
    }
    let out = '';
    for (const k of n.kids) out += this.textOf(k, budget);
    return out;
  }

  /** What a PM would call the element: its visible text, else (or with `text` false) a CSS-like selector. */
  label(id: number, text = true): string {
    const n = this.nodes.get(id);
    if (!n) return `node ${id}`;
    if (!text) return selector(n);
    const a = n.attrs;
    const named = this.textOf(id).replace(/\s+/g, ' ').trim() || String(a['aria-label'] ?? a.title ?? a.placeholder ?? a.alt ?? a.value ?? '').trim();
    const sel = selector(n);
    if (!named) return sel;
    const quoted = named.length > MAX_LABEL ? named.slice(0, MAX_LABEL - 1) + '…' : named;
    return ACTIONABLE.has(n.tag) || n.tag === 'input' ? `${n.tag} "${quoted}"` : `"${quoted}" (${sel})`;
  }
}

function selector(n: Node): string {
  if (!n.tag) return 'text';
  const id = typeof n.attrs.id === 'string' && n.attrs.id ? `#${n.attrs.id}` : '';
  const cls = typeof n.attrs.class === 'string' ? n.attrs.class.trim().split(/\s+/).filter(Boolean).slice(0, 2) : [];
  return n.tag + id + cls.map((c) => '.' + c).join('');
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
