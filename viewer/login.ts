// /login: fills the hidden _xsrf (from Tornado's _xsrf cookie) and next (from ?next=) fields.
export {};

function cookie(name: string): string {
  for (const part of document.cookie.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) {
      const v = part.slice(i + 1).trim().replace(/^"|"$/g, '');
      try {
        return decodeURIComponent(v);
      } catch {
        return v;
      }
    }
  }
  return '';
}

const params = new URLSearchParams(location.search);
const next = params.get('next') || '/';
// Only same-site paths: never bounce to another origin after login. Browsers read '\' as '/'
// and drop tabs and newlines, and the path may be percent-encoded once or twice (the server
// checks the same: streamdom/web/handlers/base.py safe_next).
function isLocalPath(path: string): boolean {
  let p = path;
  for (let i = 0; i < 3; i++) {
    if (!p.startsWith('/') || p.startsWith('//') || /[\\\u0000-\u001f\u007f]/.test(p)) return false;
    let decoded: string;
    try {
      decoded = decodeURIComponent(p);
    } catch {
      return false;
    }
    if (decoded === p) break;
    p = decoded;
  }
  return true;
}
const safeNext = isLocalPath(next) ? next : '/';
(document.getElementById('next') as HTMLInputElement).value = safeNext;
// Keep ?next= in the URL the form posts to, so a "wrong password" page still knows it.
const form = document.getElementById('login-form') as HTMLFormElement | null;
if (form) form.action = '/login?next=' + encodeURIComponent(safeNext);
const xsrf = document.getElementById('xsrf') as HTMLInputElement;
xsrf.value = cookie('_xsrf');
form?.addEventListener('submit', () => {
  xsrf.value = cookie('_xsrf') || xsrf.value; // the cookie may have been set after load
});
if (params.has('error')) (document.getElementById('login-error') as HTMLElement).hidden = false;
