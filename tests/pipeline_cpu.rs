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
