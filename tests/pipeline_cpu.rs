//! CPU pipeline pieces against the Python references in `tests/fixtures/` (no GPU needed):
//! tokenizer (transformers `CLIPTokenizer`), torch CPU `randn`, diffusers DDIM tables/steps.

use std::path::{Path, PathBuf};

use animatediff_wgpu::pipeline::rng::torch_randn;
use animatediff_wgpu::pipeline::scheduler::{alphas_cumprod, BetaSchedule, Ddim, SchedulerConfig, TimestepSpacing};
use animatediff_wgpu::pipeline::tokenizer::{ClipTokenizer, BOS, EOS, MAX_LEN};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixture(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).expect("fixture JSON")
}

fn f32s(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn i64_scalar(st: &SafeTensors<'_>, name: &str) -> i64 {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    let b = t.data();
    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn tokenizer_matches_transformers() {
    let cases = json("tokenizer_cases.json");
    assert_eq!(cases["bos"].as_u64(), Some(BOS as u64));
    assert_eq!(cases["eos"].as_u64(), Some(EOS as u64));
    assert_eq!(cases["max_length"].as_u64(), Some(MAX_LEN as u64));
    let tok = ClipTokenizer::new().expect("bundled vocabulary");
    let cases = cases["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for case in cases {
        let prompt = case["prompt"].as_str().expect("prompt");
        let name = case["name"].as_str().unwrap_or("?");
        let padded = tok.encode_padded(prompt, MAX_LEN);
        let mut untruncated = vec![BOS];
        untruncated.extend(tok.encode(prompt));
        untruncated.push(EOS);
        if padded != ids(&case["ids"]) || untruncated != ids(&case["ids_untruncated"]) {
            failures.push(format!(
                "{name}: {prompt:?}\n  got      {untruncated:?}\n  expected {:?}",
                ids(&case["ids_untruncated"])
            ));
        }
    }
    eprintln!("tokenizer: {}/{} transformers cases identical", cases.len() - failures.len(), cases.len());
    assert!(cases.len() >= 40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn randn_matches_torch() {
    let meta = json("randn_cases.json");
    let bytes = read("randn_cases.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut lines = Vec::new();
    let mut worst = 0.0f32;
    for case in meta["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let seed = case["seed"].as_u64().expect("seed");
        let shape: Vec<usize> =
            case["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
        let expected = f32s(&st, name);
        let got = torch_randn(seed, &shape);
        assert_eq!(got.len(), expected.len(), "{name}");
        let exact = got.iter().zip(&expected).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        let max = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        worst = worst.max(max);
        lines.push(format!("{name}: {exact}/{} bit-exact, max |diff| {max:.3e}", got.len()));
    }
    eprintln!("randn vs torch {}:\n  {}", meta["torch"], lines.join("\n  "));
    assert!(worst <= 1e-6, "max |diff| {worst}");
}

fn fixture_scheduler_config() -> SchedulerConfig {
    let text = String::from_utf8(read("tiny/diffusers/scheduler/scheduler_config.json")).expect("utf-8");
    SchedulerConfig::from_json(&text).expect("scheduler config")
}

#[test]
fn scheduler_tables_match_diffusers() {
    let bytes = read("tiny/reference/scheduler.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let cfg = fixture_scheduler_config();
    assert_eq!(cfg.beta_schedule, BetaSchedule::Linear);

    let betas = cfg.betas().unwrap();
    assert_eq!(betas, f32s(&st, "betas_linear"), "betas_linear");
    assert_eq!(alphas_cumprod(&betas), f32s(&st, "alphas_cumprod_linear"), "alphas_cumprod_linear");
    let mut scaled = cfg.clone();
    scaled.beta_schedule = BetaSchedule::ScaledLinear;
    assert_eq!(
        alphas_cumprod(&scaled.betas().unwrap()),
        f32s(&st, "alphas_cumprod_scaled_linear"),
        "alphas_cumprod_scaled_linear"
    );

    // The 4-step chain (linspace, set_alpha_to_one false): exact f32 step and the axpby form.
    let ddim = Ddim::new(&cfg, 4).unwrap();
    let mut worst_axpby = 0.0f32;
    for i in 0..4 {
        let t = i64_scalar(&st, &format!("ddim_step{i}.t"));
        assert_eq!(t as usize, ddim.timesteps()[i]);
        let eps = f32s(&st, &format!("ddim_step{i}.model_output"));
        let x = f32s(&st, &format!("ddim_step{i}.sample"));
        let expected = f32s(&st, &format!("ddim_step{i}.prev_sample"));
        let got = ddim.step(&eps, t as usize, &x).unwrap();
        let exact = got.iter().zip(&expected).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        let max = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max <= 1e-6 * (1.0 + expected.iter().fold(0.0f32, |m, v| m.max(v.abs()))), "step {i}: {max}");
        let c = ddim.coefficients(t as usize).unwrap();
        for ((&xv, &e), &y) in x.iter().zip(&eps).zip(&expected) {
            worst_axpby = worst_axpby.max((c.sample * xv + c.noise * e - y).abs() / (1.0 + y.abs()));
        }
        eprintln!("ddim step {i} (t={t}): {exact}/{} bit-exact, max |diff| {max:.3e}", got.len());
    }
    eprintln!("ddim axpby form: max relative diff {worst_axpby:.3e}");
    assert!(worst_axpby < 1e-5);
}

#[test]
fn scheduler_timesteps_match_diffusers() {
    let all = json("tiny/reference/scheduler_timesteps.json");
    let mut checked = 0;
    for (spacing_name, spacing) in [
        ("linspace", TimestepSpacing::Linspace),
        ("leading", TimestepSpacing::Leading),
        ("trailing", TimestepSpacing::Trailing),
    ] {
        let table = &all[spacing_name];
        let mut cfg = SchedulerConfig::animatediff_default();
        cfg.timestep_spacing = spacing;
        cfg.set_alpha_to_one = table["set_alpha_to_one"].as_bool().expect("set_alpha_to_one");
        cfg.steps_offset = table["steps_offset"].as_u64().expect("steps_offset") as usize;
        cfg.num_train_timesteps = table["num_train_timesteps"].as_u64().expect("T") as usize;
        for (n, case) in table["by_num_steps"].as_object().expect("by_num_steps") {
            let n: usize = n.parse().expect("N");
            let ddim = Ddim::new(&cfg, n).unwrap_or_else(|e| panic!("{spacing_name} N={n}: {e}"));
            let expected: Vec<usize> =
                case["timesteps"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as usize).collect();
            assert_eq!(ddim.timesteps(), &expected[..], "{spacing_name} N={n}");
            let prev: Vec<i64> =
                case["prev_timesteps"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
            let got_prev: Vec<i64> = ddim.timesteps().iter().map(|&t| ddim.prev_timestep(t)).collect();
            assert_eq!(got_prev, prev, "{spacing_name} N={n}");
            let fac = case["final_alpha_cumprod"].as_f64().unwrap() as f32;
            assert_eq!(ddim.final_alpha_cumprod(), fac, "{spacing_name} N={n}");
            checked += 1;
        }
    }
    assert_eq!(checked, 150);
}

// ---------------------------------------------------------------------------------------------
// Few-step schedulers (scripts/make_scheduler_fixtures.py): Euler discrete and LCM, built like
// the model cards do from the tiny pipeline's DDIM config.

fn fewstep() -> (Vec<u8>, Value) {
    (read("tiny/reference/schedulers_fewstep.safetensors"), json("tiny/reference/schedulers_fewstep.json"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

#[test]
fn scheduler_config_class_names() {
    use animatediff_wgpu::pipeline::sampler::SchedulerKind;
    let lcm = SchedulerConfig::from_json(r#"{"_class_name": "LCMScheduler", "beta_schedule": "linear"}"#).unwrap();
    assert_eq!(lcm.kind(), Some(SchedulerKind::Lcm));
    assert_eq!((lcm.beta_start, lcm.steps_offset, lcm.set_alpha_to_one, lcm.clip_sample), (0.00085, 0, true, false));
    assert_eq!(lcm.original_inference_steps, 50);
    let e = SchedulerConfig::from_json(r#"{"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing", "use_karras_sigmas": null}"#).unwrap();
    assert_eq!(e.kind(), Some(SchedulerKind::Euler));
    assert_eq!((e.beta_start, e.timestep_spacing), (0.0001, TimestepSpacing::Trailing));
    let d = fixture_scheduler_config();
    assert_eq!(d.kind(), Some(SchedulerKind::Ddim));
    assert_eq!(SchedulerConfig::from_json(r#"{"_class_name": "PNDMScheduler"}"#).unwrap().kind(), None);
    let karras = SchedulerConfig::from_json(r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true}"#).unwrap();
    assert!(animatediff_wgpu::pipeline::sampler::Euler::new(&karras, 4).is_err());
}

#[test]
fn euler_tables_match_diffusers() {
    use animatediff_wgpu::pipeline::sampler::{Euler, Sampler};
    let (_, js) = fewstep();
    let base = fixture_scheduler_config();
    let (mut checked, mut worst_ulps, mut not_exact) = (0, 0u32, 0usize);
    for (name, spacing) in [("trailing", TimestepSpacing::Trailing), ("linspace", TimestepSpacing::Linspace), ("leading", TimestepSpacing::Leading)] {
        let mut cfg = base.clone();
        cfg.timestep_spacing = spacing;
        cfg.beta_schedule = BetaSchedule::Linear;
        for (n, case) in js[format!("euler_{name}")].as_object().expect("table") {
            let n: usize = n.parse().unwrap();
            let e = Euler::new(&cfg, n).unwrap_or_else(|err| panic!("{name} N={n}: {err}"));
            assert_eq!(e.timesteps(), &floats(&case["timesteps"])[..], "{name} N={n}: timesteps");
            let want = floats(&case["sigmas"]);
            for (a, b) in e.sigmas().iter().zip(&want) {
                worst_ulps = worst_ulps.max(ulps(*a, *b));
                not_exact += usize::from(a != b);
            }
            assert_eq!(e.sigmas().len(), want.len());
            let ins = case["init_noise_sigma"].as_f64().unwrap() as f32;
            assert!(ulps(e.init_noise_sigma(), ins) <= 1, "{name} N={n}: init_noise_sigma {} vs {ins}", e.init_noise_sigma());
            checked += 1;
        }
    }
    eprintln!("euler: {checked} schedules, sigmas: {not_exact} values not bit-exact, worst {worst_ulps} ulp");
    assert_eq!(checked, 150);
    assert!(worst_ulps <= 1, "sigmas differ by {worst_ulps} ulp");
}

#[test]
fn euler_step_chain_matches_diffusers() {
    use animatediff_wgpu::pipeline::sampler::{make_sampler, recipe_config, Euler, SchedulerKind};
    let (bytes, _) = fewstep();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cfg = recipe_config(&fixture_scheduler_config(), SchedulerKind::Euler);
    let e = Euler::new(&cfg, 4).unwrap();
    for (a, b) in e.sigmas().iter().zip(&f32s(&st, "euler_trailing_4.sigmas")) {
        assert!(ulps(*a, *b) <= 1, "sigma {a} vs {b}");
    }
    let s = make_sampler(&cfg, SchedulerKind::Euler, 4).unwrap();
    assert_eq!(s.timesteps(), &[999.0, 749.0, 499.0, 249.0]);
    let (mut worst_cpu, mut worst_lin, mut worst_in) = (0.0f32, 0.0f32, 0.0f32);
    for i in 0..4 {
        let p = |k: &str| f32s(&st, &format!("euler_chain.step{i}.{k}"));
        let (x, mi, eps, prev) = (p("sample"), p("model_input"), p("model_output"), p("prev_sample"));
        let scale = 1.0 + prev.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let in_scale = 1.0 + mi.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // σ_1 is 1 ulp off (torch's sqrt), so this is not bit-exact on every step.
        worst_in = worst_in.max(max_diff(&e.scale_model_input_cpu(i, &x).unwrap(), &mi) / in_scale);
        let k = s.model_input_scale(i);
        worst_in = worst_in.max(max_diff(&x.iter().map(|v| v * k).collect::<Vec<_>>(), &mi) / in_scale);
        worst_cpu = worst_cpu.max(max_diff(&e.step_cpu(i, &eps, &x).unwrap(), &prev) / scale);
        let c = s.step(i).unwrap();
        assert_eq!(c.noise, 0.0);
        let lin: Vec<f32> = x.iter().zip(&eps).map(|(a, b)| c.sample * a + c.eps * b).collect();
        worst_lin = worst_lin.max(max_diff(&lin, &prev) / scale);
    }
    eprintln!("euler chain: f32 step rel {worst_cpu:.2e}, axpby form rel {worst_lin:.2e}, model input (÷s and ×1/s) rel {worst_in:.2e}");
    assert!(worst_cpu <= 1e-6 && worst_lin <= 2e-6 && worst_in <= 1e-6);
}

#[test]
fn lcm_tables_match_diffusers() {
    use animatediff_wgpu::pipeline::sampler::{recipe_config, Lcm, SchedulerKind};
    let (bytes, js) = fewstep();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cfg = recipe_config(&fixture_scheduler_config(), SchedulerKind::Lcm);
    let (mut checked, mut values, mut off_by_one) = (0, 0, 0);
    for (n, case) in js["lcm"].as_object().expect("lcm") {
        let n: usize = n.parse().unwrap();
        let l = Lcm::new(&cfg, n).unwrap_or_else(|e| panic!("N={n}: {e}"));
        let want: Vec<usize> = case["timesteps"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as usize).collect();
        assert_eq!(l.timesteps_int(), &want[..], "N={n}");
        let (cs, co) = (floats(&case["c_skip"]), floats(&case["c_out"]));
        for i in 0..n {
            let (a, b) = l.scalings(i).unwrap();
            assert_eq!(a, cs[i], "N={n} step {i}: c_skip");
            // torch's f32 sqrt (MKL) is not always correctly rounded (√2528100.25 → 1590.0, not
            // 1590.0001): c_out = 10t/√(…) may be off by an ulp or two.
            assert!(ulps(b, co[i]) <= 2, "N={n} step {i}: c_out {b} vs {}", co[i]);
            values += 1;
            off_by_one += usize::from(b != co[i]);
        }
        checked += 1;
    }
    eprintln!("lcm: {checked} schedules, c_skip bit-exact, c_out {off_by_one}/{values} values 1-2 ulp off (torch sqrt)");
    assert_eq!(checked, 50);
    for n in [1, 2, 4, 6, 8] {
        let l = Lcm::new(&cfg, n).unwrap();
        let ap = f32s(&st, &format!("lcm_{n}.alpha_prev"));
        for (i, &a) in ap.iter().enumerate().take(n - 1) {
            assert_eq!(l.alpha_prev(i).unwrap(), Some(a), "N={n} step {i}");
        }
        assert_eq!(l.alpha_prev(n - 1).unwrap(), None);
    }
    assert!(Lcm::new(&cfg, 51).is_err());
}

#[test]
fn lcm_step_chain_matches_diffusers() {
    use animatediff_wgpu::pipeline::rng::TorchGenerator;
    use animatediff_wgpu::pipeline::sampler::{make_sampler, recipe_config, Lcm, SchedulerKind};
    let (bytes, js) = fewstep();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let seed = js["meta"]["seeds"]["lcm_chain"].as_u64().expect("seed");
    let cfg = recipe_config(&fixture_scheduler_config(), SchedulerKind::Lcm);
    let l = Lcm::new(&cfg, 4).unwrap();
    let s = make_sampler(&cfg, SchedulerKind::Lcm, 4).unwrap();
    let mut g = TorchGenerator::new(seed);
    let (mut worst_cpu, mut worst_den, mut worst_lin) = (0.0f32, 0.0f32, 0.0f32);
    for i in 0..4 {
        let p = |k: &str| f32s(&st, &format!("lcm_chain.step{i}.{k}"));
        let (x, eps, prev, den) = (p("sample"), p("model_output"), p("prev_sample"), p("denoised"));
        let z = if i < 3 {
            let z = g.randn(&[1, 4, 2, 8, 8]);
            assert_eq!(z, p("noise"), "step {i}: generator noise");
            z
        } else {
            Vec::new()
        };
        let scale = 1.0 + prev.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (gp, gd) = l.step_cpu(i, &eps, &x, &z).unwrap();
        worst_cpu = worst_cpu.max(max_diff(&gp, &prev) / scale);
        worst_den = worst_den.max(max_diff(&gd, &den) / scale);
        let c = s.step(i).unwrap();
        let lin: Vec<f32> = (0..x.len()).map(|k| c.sample * x[k] + c.eps * eps[k] + if i < 3 { c.noise * z[k] } else { 0.0 }).collect();
        worst_lin = worst_lin.max(max_diff(&lin, &prev) / scale);
    }
    eprintln!("lcm chain: f32 step rel {worst_cpu:.2e}, denoised rel {worst_den:.2e}, axpby form rel {worst_lin:.2e}");
    assert!(worst_cpu <= 1e-6 && worst_den <= 1e-6 && worst_lin <= 2e-6);
}
