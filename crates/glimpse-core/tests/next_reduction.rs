//! Every reduction method on LLaVA-NeXT: budgets count over all of an image's crops (its
//! newline rows included), MustDrop merges within each crop, a plan that keeps every token
//! changes nothing; and `--max-image-tokens` picks smaller tile grids before any of them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::Expected;
use glimpse_core::engine::GenerateOutput;
use glimpse_core::{Engine, GenerateRequest, LoadOptions};

/// Two images in one prompt: 378 tokens (base 144, 18 rows of 12 + newline) and 644
/// (base 144, 20 rows of 24 + newline).
const MODEL: &str = "tiny-llava-next-vicuna";
const IMAGE_TOKENS: [usize; 2] = [378, 644];
/// Patches of one crop (12 × 12).
const CROP: u32 = 144;

fn load(dir: &Path) -> Engine {
    load_within(dir, None).unwrap()
}

fn load_within(dir: &Path, max_image_tokens: Option<usize>) -> glimpse_core::Result<Engine> {
    Engine::load(
        dir,
        LoadOptions {
            threads: Some(2),
            max_image_tokens,
            ..Default::default()
        },
    )
}

fn generate(engine: &Engine, request: &GenerateRequest) -> GenerateOutput {
    engine.generate(request, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

#[test]
fn plans_that_keep_every_token_give_the_unreduced_logits() {
    let expected = Expected::load(MODEL);
    let engine = load(&expected.model_dir());
    let none = engine.next_token_logits(&expected.request("none", 1)).unwrap();
    // 744 is the most a tiny NeXT image can take (base + the 2×2 grid's 24 rows of 25).
    for spec in [
        "fastv:k=1,keep=744",
        "mustdrop:keep=744,merge=off,layers=0/1,evict=0",
        "sparsevlm:keep=744,layers=0/1",
    ] {
        let logits = engine.next_token_logits(&expected.request(spec, 1)).unwrap();
        assert_eq!(logits, none, "{spec}: logits differ from the unreduced run");
    }
    let err = engine
        .next_token_logits(&expected.request("fastv:k=1,keep=745", 1))
        .unwrap_err();
    assert!(err.message.contains("between 1 and the 744 tokens"), "{}", err.message);
}

#[test]
fn budgets_hold_over_all_crops_of_each_image() {
    let expected = Expected::load(MODEL);
    let engine = load(&expected.model_dir());
    for spec in [
        "fastv:k=1,keep=100",
        "sparsevlm:keep=100,layers=1",
        "mustdrop:keep=100,layers=0/1,tau=0.5,evict=0",
    ] {
        let out = generate(&engine, &expected.request(spec, 2));
        assert_eq!(out.stats.vision_tokens_in, IMAGE_TOKENS.iter().sum::<usize>(), "{spec}");
        assert_eq!(out.stats.after_prefill, 200, "{spec}: 100 per image");
        let last = out.reduction.filters.last().unwrap();
        for (image, kept) in last.kept.iter().enumerate() {
            assert_eq!(kept.len(), 100, "{spec}: image {image}");
        }
    }
}

/// MustDrop merges 3×3 windows inside each crop (never across two), and a tile's tokens
/// whose first patch lies in the padding are gone with it.
#[test]
fn mustdrop_merges_within_each_crop() {
    let expected = Expected::load(MODEL);
    let engine = load(&expected.model_dir());
    let out = generate(
        &engine,
        &expected.request("mustdrop:keep=100,layers=1,tau=0.5,evict=0", 1),
    );
    let mut merged = 0;
    for (image, report) in out.reduction.images.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        let mut newlines = 0;
        for token in &report.tokens {
            if token.patches.is_empty() {
                newlines += 1;
                continue;
            }
            let crop = token.patches[0] / CROP;
            assert!(
                token.patches.iter().all(|p| p / CROP == crop),
                "a token spans two crops"
            );
            for &p in &token.patches {
                assert!(seen.insert(p), "image {image}: patch {p} stands in two tokens");
            }
            merged += usize::from(token.patches.len() == 9);
        }
        // The base crop is never unpadded: all its patches are there.
        assert!(
            (0..CROP).all(|p| seen.contains(&p)),
            "image {image}: base patches missing"
        );
        let rows = [18, 20][image];
        assert_eq!(newlines, rows, "image {image}: one newline per kept feature row");
    }
    assert!(merged > 0, "tau=0.5 should merge some windows of the fixture images");

    // Per crop: the tall image's 2×1 grid keeps feature rows 3..21 of 24, so 9 rows of 12
    // patches in each tile.
    let crops = &out.stats.crops[0];
    let names: Vec<&str> = crops.iter().map(|c| c.crop.as_str()).collect();
    assert_eq!(names, ["base", "tile 1,1", "tile 2,1", "newlines"]);
    let tokens_in: Vec<usize> = crops.iter().map(|c| c.tokens_in).collect();
    assert_eq!(tokens_in, [144, 108, 108, 18]);
    for (image, crops) in out.stats.crops.iter().enumerate() {
        let sum = |f: fn(&glimpse_core::reduce::report::CropCount) -> usize| crops.iter().map(f).sum::<usize>();
        assert_eq!(sum(|c| c.tokens_in), IMAGE_TOKENS[image]);
        assert_eq!(sum(|c| c.after_encoder), out.reduction.images[image].tokens.len());
        assert_eq!(sum(|c| c.kept), 100, "image {image}: the budget");
        assert!(crops
            .iter()
            .all(|c| c.kept <= c.after_encoder && c.after_encoder <= c.tokens_in));
    }
    assert_eq!(
        out.stats.after_encoder,
        out.reduction.images.iter().map(|i| i.tokens.len()).sum::<usize>()
    );
}

/// Dynamic-LLaVA's image predictor ranks every row of a NeXT image. The predictors come
/// from the reduction fixture (the same hidden size), beside a copy of the NeXT model.
#[test]
fn dynamic_keeps_its_rate_of_every_image() {
    let expected = Expected::load(MODEL);
    let dir = model_with_predictors(&expected.model_dir());
    let engine = load(&dir);
    let out = generate(&engine, &expected.request("dynamic:keep_rate=0.25,text=off", 1));
    let kept: Vec<usize> = out.reduction.filters[0].kept.iter().map(Vec::len).collect();
    assert_eq!(kept, IMAGE_TOKENS.map(|n| n / 4).to_vec());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A copy of `model` with the reduction fixture's predictors and a `sparse_config` whose
/// sparse layer exists in this two-layer model.
fn model_with_predictors(model: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glimpse-next-dynamic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let reduce = common::fixtures_dir().join("models/tiny-llava-reduce");
    std::fs::copy(
        reduce.join("predictors.safetensors"),
        dir.join("predictors.safetensors"),
    )
    .unwrap();
    let sparse: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reduce.join("config.json")).unwrap()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut sparse = sparse["sparse_config"].clone();
    sparse["sparse_layer"] = 1.into();
    config["sparse_config"] = sparse;
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// Within 400 tokens the tall image keeps its 2×1 grid (378 tokens); the other image's
/// 2×2 grid (644) gives way to the 1×2 grid transformers would pick from the rest (348:
/// base 144, 12 rows of 16 + newline).
#[test]
fn a_token_budget_picks_smaller_grids() {
    let expected = Expected::load(MODEL);
    let engine = load_within(&expected.model_dir(), Some(400)).unwrap();
    let images = expected.images();
    let slots: Vec<usize> = images.iter().map(|i| engine.image_tokens(i).unwrap()).collect();
    assert_eq!(slots, [378, 348]);
    let layout = engine.tile_layout(&images[1]).unwrap().unwrap();
    assert_eq!((layout.tiles.height, layout.tiles.width), (1, 2));
    let out = generate(&engine, &expected.request("mustdrop:keep=100,layers=1,evict=0", 2));
    assert_eq!(out.stats.vision_tokens_in, 378 + 348);
    assert_eq!(out.stats.after_prefill, 200);

    // The smallest grid gives the tall image 252 tokens (1×2: 12 rows of 8 + newline).
    let engine = load_within(&expected.model_dir(), Some(251)).unwrap();
    let err = engine.next_token_logits(&expected.request("none", 1)).unwrap_err();
    assert_eq!(
        err.message,
        "--max-image-tokens 251 is too few for a 45×70 image: its smallest tile grid gives it 252 tokens"
    );
    assert_eq!(err.kind, glimpse_core::ErrorKind::Usage);
}

#[test]
fn token_budgets_no_image_can_meet_are_refused_at_load() {
    let next = Expected::load(MODEL).model_dir();
    let err = load_within(&next, Some(144)).err().unwrap();
    assert!(err.message.contains("leaves no room for tiles"), "{}", err.message);
    let plain = Expected::load("tiny-llava-mha").model_dir();
    let err = load_within(&plain, Some(100)).err().unwrap();
    assert_eq!(
        err.message,
        "--max-image-tokens 100 is below the 144 tokens this model gives every image (it does not cut images into tiles); use --reduce to keep fewer"
    );
    assert!(load_within(&plain, Some(144)).is_ok());
}
