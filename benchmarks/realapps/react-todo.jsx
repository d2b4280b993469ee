// TodoMVC in React (react + react-dom from npm, styled by todomvc-app-css), following the
// TodoMVC app spec: add, toggle, toggle all, edit on double-click, destroy, filters by hash,
// clear completed. A benchmark subject (benchmarks/latency_realapp.py), not part of StreamDOM.
import { StrictMode, useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';

const ENTER = 'Enter';
const ESCAPE = 'Escape';
const filters = { all: () => true, active: (t) => !t.completed, completed: (t) => t.completed };
const route = () => (location.hash.replace(/^#\/?/, '') || 'all');
let nextId = 1;

function Item({ todo, onToggle, onDestroy, onSave }) {
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(todo.title);
  const input = useRef(null);
  useEffect(() => { if (editing) input.current?.focus(); }, [editing]);
  const finish = () => {
    const v = text.trim();
    setEditing(false);
    if (v) onSave(todo, v);
    else onDestroy(todo);
  };
  const cls = [todo.completed && 'completed', editing && 'editing'].filter(Boolean).join(' ');
  return (
    <li className={cls}>
      <div className="view">
        <input className="toggle" type="checkbox" checked={todo.completed} onChange={() => onToggle(todo)} />
        <label onDoubleClick={() => { setText(todo.title); setEditing(true); }}>{todo.title}</label>
        <button className="destroy" onClick={() => onDestroy(todo)} />
      </div>
      {editing && (
        <input ref={input} className="edit" value={text} onChange={(e) => setText(e.target.value)} onBlur={finish}
          onKeyDown={(e) => { if (e.key === ENTER) finish(); else if (e.key === ESCAPE) setEditing(false); }} />
      )}
    </li>
  );
}

function App() {
  const [todos, setTodos] = useState([]);
  const [draft, setDraft] = useState('');
  const [filter, setFilter] = useState(route());
  useEffect(() => {
    const on = () => setFilter(route());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const add = (e) => {
    if (e.key !== ENTER) return;
    const title = draft.trim();
    if (!title) return;
    setTodos((ts) => [...ts, { id: nextId++, title, completed: false }]);
    setDraft('');
  };
  const toggle = (t) => setTodos((ts) => ts.map((x) => (x.id === t.id ? { ...x, completed: !x.completed } : x)));
  const destroy = (t) => setTodos((ts) => ts.filter((x) => x.id !== t.id));
  const save = (t, title) => setTodos((ts) => ts.map((x) => (x.id === t.id ? { ...x, title } : x)));
  const allDone = todos.length > 0 && todos.every((t) => t.completed);
  const left = todos.filter((t) => !t.completed).length;
  const shown = todos.filter(filters[filter] || filters.all);
  return (
    <section className="todoapp">
      <header className="header">
        <h1>todos</h1>
        <input className="new-todo" placeholder="What needs to be done?" autoFocus value={draft}
          onChange={(e) => setDraft(e.target.value)} onKeyDown={add} />
      </header>
      {todos.length > 0 && (
        <section className="main">
          <input id="toggle-all" className="toggle-all" type="checkbox" checked={allDone}
            onChange={() => setTodos((ts) => ts.map((x) => ({ ...x, completed: !allDone })))} />
          <label htmlFor="toggle-all">Mark all as complete</label>
          <ul className="todo-list">
            {shown.map((t) => <Item key={t.id} todo={t} onToggle={toggle} onDestroy={destroy} onSave={save} />)}
          </ul>
        </section>
      )}
      {todos.length > 0 && (
        <footer className="footer">
          <span className="todo-count"><strong>{left}</strong> {left === 1 ? 'item' : 'items'} left</span>
          <ul className="filters">
            {['all', 'active', 'completed'].map((f) => (
              <li key={f}><a className={filter === f ? 'selected' : ''} href={'#/' + (f === 'all' ? '' : f)}>
                {f[0].toUpperCase() + f.slice(1)}</a></li>
            ))}
          </ul>
          {todos.length > left && (
            <button className="clear-completed" onClick={() => setTodos((ts) => ts.filter((x) => !x.completed))}>
              Clear completed</button>
          )}
        </footer>
      )}
    </section>
  );
}

createRoot(document.getElementById('app')).render(<StrictMode><App /></StrictMode>);
