// Diagnostics on the page: WebGPU capability report, the runtime self-test and the kernel
// checks, on a main-thread GpuContext (generation runs in worker.js). Plain ES module.
import init, { GpuContext } from './pkg/animatediff_wgpu.js';

const $ = (id) => document.getElementById(id);
const status = $('gpu-status');

function showInfo(info) {
  const mib = (b) => `${Math.round(b / 2 ** 20)} MiB`;
  const rows = [
    ['Adapter', info.adapterName || '(name hidden by the browser)'],
    ['Type', `${info.deviceType} (${info.backend})`],
    ['shader-f16', info.shaderF16 ? 'yes' : 'no (f32 path)'],
    ['Max buffer', mib(info.maxBufferSize)],
    ['Max storage binding', mib(info.maxStorageBufferBindingSize)],
    ['Workgroup memory', `${info.maxComputeWorkgroupStorageSize / 1024} KiB`],
    ['Invocations / workgroup', info.maxComputeInvocationsPerWorkgroup],
  ];
  const dl = $('gpu-info');
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = String(v);
    return [dt, dd];
  }));
  dl.hidden = false;
}

async function main() {
  if (!('gpu' in navigator)) {
    status.textContent = 'This browser does not expose WebGPU (navigator.gpu is missing). ' +
      'Use Chrome/Edge 113+, Firefox 141+ or Safari 26+, over https or localhost.';
    status.className = 'error';
    return;
  }
  await init();
  let ctx;
  try {
    ctx = await GpuContext.create();
  } catch (e) {
    status.textContent = `Could not start WebGPU: ${e.message ?? e}`;
    status.className = 'error';
    return;
  }
  window.animatediffGpu = ctx; // for debugging from the console
  status.textContent = 'WebGPU ready.';
  showInfo(ctx.info());

  setupKernelChecks(ctx);
  const form = $('selftest');
  const run = $('run');
  const out = $('result');
  run.disabled = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const [m, n, k, seed] = ['m', 'n', 'k', 'seed'].map((key) => Number(f.get(key)));
    run.disabled = true;
    out.className = '';
    out.textContent = `Running ${m}×${n}×${k}…`;
    try {
      const t0 = performance.now();
      const r = await ctx.selfTest(m, n, k, seed);
      const ms = performance.now() - t0;
      out.className = r.passed ? 'pass' : 'fail';
      out.textContent = `${r.passed ? 'PASS' : 'FAIL'}: linear ${m}×${n}×${k}\n` +
        `relative L2 error ${r.relL2Error.toExponential(2)} (tolerance ${r.tolerance.toExponential(0)}), ` +
        `max abs error ${r.maxAbsError.toExponential(2)}\n` +
        `${ms.toFixed(1)} ms end to end (upload, kernel, readback and the CPU check)`;
    } catch (e) {
      out.className = 'error';
      out.textContent = `Error: ${e.message ?? e}`;
    } finally {
      run.disabled = false;
    }
  });
}

function setupKernelChecks(ctx) {
  const button = $('run-kernels');
  const status = $('kernels-status');
  const table = $('kernels');
  button.disabled = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.className = '';
    status.textContent = 'Running kernel checks…';
    try {
      const t0 = performance.now();
      const checks = await ctx.kernelSuite(Math.floor(Math.random() * 2 ** 31));
      const failed = checks.filter((c) => !c.passed).length;
      table.tBodies[0].replaceChildren(...checks.map((c) => {
        const tr = document.createElement('tr');
        for (const v of [c.name, c.dtype, c.relL2Error.toExponential(2), c.tolerance.toExponential(0), c.passed ? 'pass' : 'FAIL']) {
          const td = document.createElement('td');
          td.textContent = v;
          tr.append(td);
        }
        tr.lastChild.className = c.passed ? 'pass' : 'fail';
        return tr;
      }));
      table.hidden = false;
      status.className = failed ? 'fail' : 'pass';
      status.textContent = `${checks.length - failed} passed, ${failed} failed (${((performance.now() - t0) / 1000).toFixed(1)} s)`;
    } catch (e) {
      status.className = 'error';
      status.textContent = `Error: ${e.message ?? e}`;
    } finally {
      button.disabled = false;
    }
  });
}

main().catch((e) => {
  status.textContent = `Error: ${e.message ?? e}`;
  status.className = 'error';
});
