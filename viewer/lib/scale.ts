// Scales a replayer's .replayer-wrapper (the recorded viewport) to fit its stage element, leaving
// room below it for the controls row, so the timeline stays on screen.
const CONTROLS_PX = 72;

export function fitReplayer(stage: HTMLElement, wrapper: HTMLElement, width: number, height: number): void {
  const avail = stage.clientWidth || 800;
  const top = stage.getBoundingClientRect().top + window.scrollY;
  const maxH = Math.max(240, window.innerHeight - top - 24 - CONTROLS_PX);
  const s = Math.min(avail / width, maxH / height, 1);
  wrapper.style.transform = `scale(${s})`;
  wrapper.style.left = `${Math.max(0, (avail - width * s) / 2)}px`;
  stage.style.height = `${Math.ceil(height * s)}px`;
}
