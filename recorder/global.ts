// Entry of the <script src=".../streamdom.js"> bundle: window.StreamDOM / window.StreamDom.
// Without an endpoint, init() streams to the server this script was loaded from.
import StreamDOM, { ingestUrl, type StreamDOMOptions } from './StreamDOM.ts';

const src = (document.currentScript as HTMLScriptElement | null)?.src || '';
const endpoint = ingestUrl(/^https?:/.test(src) ? src : location.href);
const w = window as any;
w.StreamDOM = w.StreamDom = w.StreamDOM || {
  ...StreamDOM,
  init: (o: StreamDOMOptions) => StreamDOM.init(o && { ...o, endpoint: o.endpoint || endpoint }),
};
