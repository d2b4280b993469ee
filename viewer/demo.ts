// The /demo page: records itself with the recorder bundle served at /streamdom.js.
export {};

interface StreamDOMGlobal {
  init(opts: { sessionId: string }): unknown;
}

function randomId(): string {
  const a = new Uint8Array(6);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(36).padStart(2, '0')).join('').slice(0, 10);
}

function $(id: string): HTMLElement {
  return document.getElementById(id) as HTMLElement;
}

const params = new URLSearchParams(location.search);
// ?session=<id> picks the id; otherwise one per tab (kept across reloads of this tab).
let sessionId = params.get('session') || sessionStorage.getItem('streamdom-demo-session') || '';
if (!sessionId) sessionId = 'demo-' + randomId();
sessionStorage.setItem('streamdom-demo-session', sessionId);

$('demo-session').textContent = sessionId;
($('watch-link') as HTMLAnchorElement).href = '/sessions/' + encodeURIComponent(sessionId);

const sd = (window as unknown as { StreamDOM?: StreamDOMGlobal }).StreamDOM;
if (sd && typeof sd.init === 'function') {
  sd.init({ sessionId });
} else {
  const err = $('demo-error');
  err.textContent = 'The recorder (/streamdom.js) did not load, so this page is not being recorded.';
  err.hidden = false;
}

// --- todo list -------------------------------------------------------------------------
const list = $('todo-list');
const input = $('todo-input') as HTMLInputElement;

function updateCount(): void {
  const left = list.querySelectorAll('li:not(.done)').length;
  $('todo-count').textContent = `${left} left`;
}

function addTodo(text: string): void {
  const li = document.createElement('li');
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.addEventListener('change', () => {
    li.classList.toggle('done', box.checked);
    updateCount();
  });
  const label = document.createElement('span');
  label.textContent = text;
  const del = document.createElement('button');
  del.type = 'button';
  del.className = 'link-btn';
  del.textContent = 'delete';
  del.addEventListener('click', () => {
    li.remove();
    updateCount();
  });
  li.append(box, label, del);
  list.appendChild(li);
  updateCount();
}

$('todo-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  addTodo(text);
  input.value = '';
});
$('todo-clear').addEventListener('click', () => {
  list.querySelectorAll('li.done').forEach((li) => li.remove());
  updateCount();
});
$('todo-all').addEventListener('click', () => {
  const boxes = Array.from(list.querySelectorAll<HTMLInputElement>('input[type=checkbox]'));
  const all = boxes.every((b) => b.checked);
  for (const b of boxes) {
    b.checked = !all;
    b.closest('li')?.classList.toggle('done', !all);
  }
  updateCount();
});
for (const t of ['Watch this session live', 'Rewind a few seconds']) addTodo(t);

// --- sign-in + counter -------------------------------------------------------------------
$('demo-signin').addEventListener('click', () => {
  const email = ($('demo-email') as HTMLInputElement).value || 'nobody';
  $('demo-signin-msg').textContent = `Pretending to sign in ${email}…`;
});
let clicks = 0;
$('counter-btn').addEventListener('click', () => {
  clicks++;
  $('counter-btn').textContent = `Clicked ${clicks} time${clicks === 1 ? '' : 's'}`;
});
