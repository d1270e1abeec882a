// Audible cue for urgent alerts: a WebAudio beep (no audio file). Browsers allow sound only after a
// user gesture; the login click or any click on the page unlocks it.

const KEY = 'qly.sound';
let ctx = null;
let enabled = (() => {
  try {
    return localStorage.getItem(KEY) !== 'off';
  } catch {
    return true;
  }
})();

function context() {
  if (!ctx) {
    const C = window.AudioContext || window.webkitAudioContext;
    if (!C) return null;
    ctx = new C();
  }
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  return ctx;
}

/** Call from a user gesture so later beeps may play. */
export function unlockSound() {
  if (enabled) context();
}

export function soundEnabled() {
  return enabled;
}

export function setSoundEnabled(on) {
  enabled = on;
  try {
    localStorage.setItem(KEY, on ? 'on' : 'off');
  } catch {
    /* not remembered */
  }
  if (on) context();
}

let lastBeep = 0;
/** Beeps: two tones for `high`, three rising for `critical`. Rate-limited to one per 1.5 s. */
export function beep(severity) {
  if (!enabled) return;
  const now = Date.now();
  if (now - lastBeep < 1500) return;
  lastBeep = now;
  const c = context();
  if (!c) return;
  const tones = severity === 'critical' ? [880, 1175, 1568] : [880, 660];
  let at = c.currentTime + 0.02;
  for (const f of tones) {
    const osc = c.createOscillator();
    const gain = c.createGain();
    osc.type = 'square';
    osc.frequency.value = f;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
    osc.connect(gain).connect(c.destination);
    osc.start(at);
    osc.stop(at + 0.2);
    at += 0.22;
  }
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
}
