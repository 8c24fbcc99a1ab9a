// Logs the element's events (the browser test reads window.events).
const gen = document.getElementById('gen');
const log = document.getElementById('log');
window.events = [];
for (const type of ['progress', 'preview', 'done', 'error']) {
  gen.addEventListener(type, (e) => {
    window.events.push({ type, detail: e.detail });
    if (type === 'progress' && e.detail.phase !== 'step') return;
    const li = document.createElement('li');
    li.textContent = type === 'done' ? `done: ${e.detail.frames.length} frames, ${e.detail.blob.type} ${e.detail.blob.size} B`
      : type === 'error' ? `error: ${e.detail.error.name}: ${e.detail.error.message}`
      : type === 'preview' ? `preview after step ${e.detail.step}` : `step ${e.detail.step} of ${e.detail.steps}`;
    log.append(li);
  });
}
