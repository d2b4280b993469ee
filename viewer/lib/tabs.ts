// The tab bar: one button per tab (stream) of the session with its page URL, a live dot while
// the tab is still connected, and an eye on the tab the user is acting in; "Follow the user"
// (the default) shows that tab, a click on a tab pins it. Hooks: [data-testid="tab"] with
// data-stream-id, data-active="true" on the tab shown, data-focus="true" on the user's tab.
import { h } from './format';
import type { SessionStore } from './session';

export interface TabState {
  shown: string | null;
  focus: string | null;
  following: boolean;
  /** Whether a tab is connected now (live dot). */
  isLive(streamId: string): boolean;
}

export interface TabsHost {
  tabState(): TabState;
  /** null: follow the user. */
  pin(streamId: string | null): void;
}

export class TabBar {
  private drawn = '';

  constructor(private readonly root: HTMLElement, private readonly store: SessionStore, private readonly host: TabsHost) {
    root.addEventListener('click', (ev) => {
      const b = (ev.target as HTMLElement).closest<HTMLButtonElement>('button');
      if (!b) return;
      if (b.dataset.follow !== undefined) host.pin(this.host.tabState().following ? this.host.tabState().shown : null);
      else if (b.dataset.streamId) host.pin(b.dataset.streamId);
    });
    store.listen({ tabs: () => this.draw() });
  }

  /** 1-based number of a tab in order of appearance. */
  number(streamId: string): number {
    let i = 1;
    for (const id of this.store.tabs.keys()) {
      if (id === streamId) return i;
      i++;
    }
    return 0;
  }

  /** Redraws when anything it shows changed. */
  draw(): void {
    const st = this.host.tabState();
    const tabs = [...this.store.tabs.values()];
    const key = JSON.stringify([st.shown, st.focus, st.following, tabs.map((t) => [t.id, t.href, st.isLive(t.id)])]);
    if (key === this.drawn) return;
    this.drawn = key;
    this.root.hidden = tabs.length === 0;
    const follow = h('button', { type: 'button', class: 'btn btn-follow', 'data-follow': '', 'aria-pressed': String(st.following), title: 'Show the tab the user is acting in (F)' }, st.following ? '● Following the user' : 'Follow the user');
    const buttons = tabs.map((t, i) =>
      h(
        'button',
        {
          type: 'button',
          class: 'tab',
          'data-testid': 'tab',
          'data-stream-id': t.id,
          'data-active': String(t.id === st.shown),
          'data-focus': String(t.id === st.focus),
          'data-live': String(st.isLive(t.id)),
          title: `${t.href}\n(${i + 1}: key ${i + 1})`,
        },
        ...(st.isLive(t.id) ? [h('span', { class: 'live-dot', title: 'connected' })] : []),
        h('span', { class: 'tab-n' }, String(i + 1)),
        h('span', { class: 'tab-url' }, shortURL(t.href) || 'loading…'),
        ...(t.id === st.focus ? [h('span', { class: 'tab-focus', title: 'the user is acting in this tab' }, 'user')] : []),
      ),
    );
    this.root.replaceChildren(follow, ...buttons);
  }
}

/** host + path of a URL, without query or scheme. */
function shortURL(href: string): string {
  try {
    const u = new URL(href);
    return u.host + (u.pathname === '/' ? '' : u.pathname);
  } catch {
    return href;
  }
}
