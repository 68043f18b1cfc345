//! Golden tests against Pillow and transformers (fixtures from
//! tools/make_preprocess_fixtures.py) plus config parsing and error cases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::resample::{resize_region, Filter};
use super::*;
use crate::error::ErrorKind;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/preprocess")
}

fn load_fixture(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn base64_decode(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 byte {c}"),
        }
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn rgb(entry: &Value) -> RgbImage {
    let image = RgbImage {
        width: entry["width"].as_u64().unwrap() as u32,
        height: entry["height"].as_u64().unwrap() as u32,
        data: base64_decode(entry["rgb"].as_str().unwrap()),
    };
    assert_eq!(image.data.len(), image.width as usize * image.height as usize * 3);
    image
}

fn images_by_name(fixture: &Value) -> HashMap<String, RgbImage> {
    fixture["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap().to_string(), rgb(entry)))
        .collect()
}

fn full_resize(image: &RgbImage, width: usize, height: usize, filter: Filter) -> RgbImage {
    resize_region(image, width, height, filter, 0..width, 0..height)
}

/// Number of bytes that differ, and the first differing index, for a readable failure.
fn byte_mismatch(actual: &[u8], expected: &[u8]) -> Option<(usize, usize)> {
    let differing: Vec<usize> = (0..expected.len()).filter(|&i| actual[i] != expected[i]).collect();
    differing.first().map(|&first| (differing.len(), first))
}

#[test]
fn base64_decoder_round_trips_known_text() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}

#[test]
fn resize_matches_pillow_bit_for_bit() {
    let fixture = load_fixture("resize.json");
    let images = images_by_name(&fixture);
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 54);
    for case in cases {
        let name = case["image"].as_str().unwrap();
        let filter_id = case["filter"].as_i64().unwrap();
        let filter = Filter::from_pil_id(filter_id).unwrap();
        let expected = rgb(case);
        let (w, h) = (expected.width as usize, expected.height as usize);
        let actual = full_resize(&images[name], w, h, filter);
        assert_eq!((actual.width, actual.height), (expected.width, expected.height));
        if let Some((count, first)) = byte_mismatch(&actual.data, &expected.data) {
            panic!(
                "{name} -> {w}x{h} with filter {filter_id}: {count} bytes differ, first at {first} \
                 (got {}, Pillow {})",
                actual.data[first], expected.data[first]
            );
        }
    }
}

#[test]
fn resized_regions_equal_the_same_part_of_the_full_resize() {
    let fixture = load_fixture("resize.json");
    let images = images_by_name(&fixture);
    for case in fixture["cases"].as_array().unwrap() {
        let filter = Filter::from_pil_id(case["filter"].as_i64().unwrap()).unwrap();
        let expected = rgb(case);
        let (w, h) = (expected.width as usize, expected.height as usize);
        let image = &images[case["image"].as_str().unwrap()];
        let (cols, rows) = (w / 3..w - w / 4, h / 4..h - h / 3);
        let part = resize_region(image, w, h, filter, cols.clone(), rows.clone());
        let want = resample::copy_region(&expected.data, w, cols, rows);
        assert_eq!(part, want, "region of {} -> {w}x{h}", case["image"]);
    }
}

#[test]
fn pipeline_matches_transformers() {
    let fixture = load_fixture("pipeline.json");
    let images = images_by_name(&fixture);
    let configs: HashMap<&str, ImageProcessorConfig> = fixture["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap();
            let config = ImageProcessorConfig::from_json_str(c["json"].as_str().unwrap(), name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, config)
        })
        .collect();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 42);
    for case in cases {
        let config_name = case["config"].as_str().unwrap();
        let image_name = case["image"].as_str().unwrap();
        let label = format!("{config_name} on {image_name}");
        let config = &configs[config_name];
        let image = &images[image_name];

        // The uint8 image Pillow produced inside transformers' resize, bit for bit.
        if let Some(expected) = case.get("resized").map(rgb) {
            let resize = config.resize.expect("fixture resized without a resize step");
            let padded = config.square_pad.map(|bg| canvas::pad_to_square(image, bg));
            let source = padded.as_ref().unwrap_or(image);
            assert_eq!(
                config.resized_size(Size::of(source)).unwrap(),
                Size {
                    height: expected.height as usize,
                    width: expected.width as usize
                },
                "{label}: resized size"
            );
            let actual = full_resize(source, expected.width as usize, expected.height as usize, resize.filter);
            if let Some((count, first)) = byte_mismatch(&actual.data, &expected.data) {
                panic!("{label}: resized image has {count} differing bytes, first at {first}");
            }
        } else {
            assert!(config.resize.is_none(), "{label}: fixture lacks the resized image");
        }

        let shape = (
            case["height"].as_u64().unwrap() as usize,
            case["width"].as_u64().unwrap() as usize,
        );
        assert_eq!(case["channels"].as_u64(), Some(3));
        assert_eq!(config.output_size(), shape, "{label}: output size");
        let expected: Vec<f32> = base64_decode(case["pixel_values_f32"].as_str().unwrap())
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let actual = config.preprocess(image).unwrap();
        assert_eq!(actual.len(), 3 * shape.0 * shape.1, "{label}: value count");
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-6,
                "{label}: value {i} is {a}, transformers gives {e}"
            );
        }
    }
}

#[test]
fn fused_crop_equals_full_resize_then_crop_on_a_photo_sized_image() {
    // 4:3 like a camera photo, large enough that the crop drops whole columns.
    let (w, h) = (800usize, 600usize);
    let data = (0..w * h * 3)
        .map(|i| ((i * 7919) % 251) as u8 ^ ((i / (w * 3)) as u8))
        .collect();
    let image = RgbImage {
        width: w as u32,
        height: h as u32,
        data,
    };
    let config = ImageProcessorConfig::from_json_str(
        r#"{"size": {"shortest_edge": 336}, "crop_size": 336, "do_normalize": false, "do_rescale": false}"#,
        "test",
    )
    .unwrap();
    let values = config.preprocess(&image).unwrap();

    let resized = full_resize(&image, 448, 336, Filter::Bicubic);
    let cropped = resample::copy_region(&resized.data, 448, 56..392, 0..336);
    let plane = 336 * 336;
    for (i, px) in cropped.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            assert_eq!(values[c * plane + i], px[c] as f32, "pixel {i} channel {c}");
        }
    }
}

// ---- configuration files ----

/// A fresh empty directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("glimpse-preprocess-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.0.join(name), text).unwrap();
        self
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(json: &str) -> Result<ImageProcessorConfig> {
    ImageProcessorConfig::from_json_str(json, "preprocessor_config.json")
}

fn model_error(result: Result<ImageProcessorConfig>) -> String {
    let error = result.expect_err("expected a configuration error");
    assert_eq!(error.kind, ErrorKind::Model, "{error}");
    assert!(!error.message.contains('\n'), "error is not one line: {error}");
    error.message
}

/// What the saved LlavaImageProcessor in both fixture layouts says.
fn assert_saved_llava_config(config: &ImageProcessorConfig) {
    assert_eq!(config.square_pad, Some([122, 116, 104]));
    assert_eq!(
        config.resize,
        Some(Resize {
            target: ResizeTarget::ShortestEdge(30),
            filter: Filter::Bilinear
        })
    );
    assert_eq!(config.center_crop, Some(Size { height: 28, width: 26 }));
    assert_eq!(config.output_size(), (28, 26));
    assert_eq!(config.pad_to, None);
}

#[test]
fn reads_the_nested_image_processor_of_processor_config() {
    let config = ImageProcessorConfig::from_dir(&fixture_dir().join("configs/nested")).unwrap();
    assert_saved_llava_config(&config);
}

#[test]
fn reads_a_flat_preprocessor_config() {
    let config = ImageProcessorConfig::from_dir(&fixture_dir().join("configs/flat")).unwrap();
    assert_saved_llava_config(&config);
}

#[test]
fn nested_settings_take_priority_over_preprocessor_config() {
    let dir = TempDir::new("priority");
    dir.write(
        "processor_config.json",
        r#"{"image_processor": {"crop_size": 40, "size": 40}}"#,
    )
    .write("preprocessor_config.json", r#"{"crop_size": 50, "size": 50}"#);
    assert_eq!(ImageProcessorConfig::from_dir(&dir.0).unwrap().output_size(), (40, 40));
}

#[test]
fn processor_config_without_image_processor_falls_back_to_preprocessor_config() {
    let dir = TempDir::new("fallback");
    dir.write(
        "processor_config.json",
        r#"{"patch_size": 14, "image_processor": null}"#,
    )
    .write("preprocessor_config.json", r#"{"crop_size": 50, "size": 50}"#);
    assert_eq!(ImageProcessorConfig::from_dir(&dir.0).unwrap().output_size(), (50, 50));
}

#[test]
fn missing_config_files_are_a_model_error_naming_them() {
    let dir = TempDir::new("missing");
    dir.write("processor_config.json", r#"{"patch_size": 14}"#);
    let message = model_error(ImageProcessorConfig::from_dir(&dir.0));
    assert!(message.contains("preprocessor_config.json"), "{message}");
    assert!(message.contains("processor_config.json"), "{message}");
}

#[test]
fn unreadable_json_is_a_model_error_naming_the_file() {
    let dir = TempDir::new("badjson");
    dir.write("preprocessor_config.json", "{\"size\": ");
    let message = model_error(ImageProcessorConfig::from_dir(&dir.0));
    assert!(message.contains("preprocessor_config.json: invalid JSON"), "{message}");
}

#[test]
fn empty_settings_take_the_clip_defaults() {
    let config = parse("{}").unwrap();
    assert_eq!(config.square_pad, None);
    assert_eq!(
        config.resize,
        Some(Resize {
            target: ResizeTarget::ShortestEdge(224),
            filter: Filter::Bicubic
        })
    );
    assert_eq!(
        config.center_crop,
        Some(Size {
            height: 224,
            width: 224
        })
    );
    assert_eq!(config.pixel_map.rescale_factor, Some(1.0 / 255.0));
    let normalize = config.pixel_map.normalize.unwrap();
    // transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, rounded to f32 as numpy does.
    let mean: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
    let std: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
    assert_eq!(normalize.mean, mean.map(|x| x as f32));
    assert_eq!(normalize.std, std.map(|x| x as f32));
    assert_eq!(config.output_size(), (224, 224));
}

#[test]
fn null_settings_count_as_absent() {
    let config = parse(r#"{"size": null, "crop_size": null, "resample": null, "do_resize": null}"#).unwrap();
    assert_eq!(config, parse("{}").unwrap());
}

#[test]
fn sizes_may_be_ints_lists_or_dicts() {
    let int_sizes = parse(r#"{"size": 336, "crop_size": 336}"#).unwrap();
    assert_eq!(int_sizes.resize.unwrap().target, ResizeTarget::ShortestEdge(336));
    assert_eq!(
        int_sizes.center_crop,
        Some(Size {
            height: 336,
            width: 336
        })
    );

    let square = parse(r#"{"size": 20, "default_to_square": true, "do_center_crop": false}"#).unwrap();
    assert_eq!(
        square.resize.unwrap().target,
        ResizeTarget::Exact(Size { height: 20, width: 20 })
    );
    assert_eq!(square.output_size(), (20, 20));

    let lists = parse(r#"{"size": [30, 40], "crop_size": [10, 12]}"#).unwrap();
    assert_eq!(
        lists.resize.unwrap().target,
        ResizeTarget::Exact(Size { height: 30, width: 40 })
    );
    assert_eq!(lists.output_size(), (10, 12));

    let dicts = parse(r#"{"size": {"height": 30, "width": 40}, "crop_size": {"height": 9, "width": 7}}"#).unwrap();
    assert_eq!(
        dicts.resize.unwrap().target,
        ResizeTarget::Exact(Size { height: 30, width: 40 })
    );
    assert_eq!(dicts.output_size(), (9, 7));
}

#[test]
fn llava_pad_colour_truncates_mean_times_255() {
    let config = parse(
        r#"{"image_processor_type": "LlavaImageProcessor", "do_pad": true,
            "image_mean": [0.5, 0.2509804, 0.999]}"#,
    )
    .unwrap();
    // 127.5 -> 127, 64.000002 -> 64, 254.745 -> 254.
    assert_eq!(config.square_pad, Some([127, 64, 254]));
    assert_eq!(config.pad_to, None);

    let clip = parse(r#"{"image_processor_type": "CLIPImageProcessor", "do_pad": true}"#).unwrap();
    assert_eq!(clip.square_pad, None);
}

#[test]
fn square_pad_then_shortest_edge_gives_a_fixed_size_without_crop() {
    let config = parse(
        r#"{"image_processor_type": "LlavaImageProcessorPil", "do_pad": true,
            "size": {"shortest_edge": 32}, "do_center_crop": false}"#,
    )
    .unwrap();
    assert_eq!(config.output_size(), (32, 32));
    let image = RgbImage {
        width: 5,
        height: 2,
        data: vec![200; 30],
    };
    assert_eq!(config.preprocess(&image).unwrap().len(), 3 * 32 * 32);
}

#[test]
fn unsupported_settings_are_named_in_one_line() {
    let message = model_error(parse(r#"{"resample": 7}"#));
    assert!(message.contains("\"resample\": 7"), "{message}");

    let message = model_error(parse(r#"{"size": {"shortest_edge": 336, "longest_edge": 600}}"#));
    assert!(message.contains("longest_edge"), "{message}");

    let message = model_error(parse(r#"{"crop_size": {"shortest_edge": 336}}"#));
    assert!(message.contains("crop_size"), "{message}");

    let message = model_error(parse(r#"{"size": 0}"#));
    assert!(message.contains("\"size\""), "{message}");

    let message = model_error(parse(r#"{"image_mean": [0.5, 0.5]}"#));
    assert!(message.contains("image_mean"), "{message}");

    let message = model_error(parse(r#"{"do_resize": "yes"}"#));
    assert!(message.contains("do_resize"), "{message}");

    let message = model_error(parse(r#"{"image_grid_pinpoints": [[336, 672]]}"#));
    assert!(message.contains("image_grid_pinpoints"), "{message}");

    let message = model_error(parse(r#"{"do_center_crop": false}"#));
    assert!(message.contains("fixed size"), "{message}");

    let message = model_error(parse(
        r#"{"do_pad": true, "pad_size": {"height": 100, "width": 300}, "crop_size": 224}"#,
    ));
    assert!(message.contains("pad_size"), "{message}");

    let message = model_error(parse(
        r#"{"image_processor_type": "LlavaImageProcessor", "do_pad": true, "image_mean": [2.0, 0, 0]}"#,
    ));
    assert!(message.contains("image_mean"), "{message}");
}

#[test]
fn invalid_images_are_input_errors() {
    let config = parse(r#"{"size": 8, "crop_size": 8}"#).unwrap();
    let cases = [
        RgbImage {
            width: 0,
            height: 4,
            data: vec![],
        },
        RgbImage {
            width: 4,
            height: 0,
            data: vec![],
        },
        RgbImage {
            width: 2,
            height: 2,
            data: vec![0; 11],
        },
        RgbImage {
            width: 2,
            height: 2,
            data: vec![0; 13],
        },
    ];
    for image in &cases {
        let error = config.preprocess(image).expect_err("invalid image accepted");
        assert_eq!(error.kind, ErrorKind::Input, "{error}");
        assert!(!error.message.contains('\n'));
    }
}

#[test]
fn center_crop_offsets_follow_floor_division() {
    // Larger crop: the image sits ceil(diff / 2) from the start.
    assert_eq!(canvas::crop_axis(5, 8), (0..5, 2));
    // Smaller crop: starts at floor(diff / 2).
    assert_eq!(canvas::crop_axis(8, 5), (1..6, 0));
    assert_eq!(canvas::crop_axis(7, 7), (0..7, 0));
}

#[test]
fn mean_colour_square_pad_makes_a_clip_processor_act_like_llavas() {
    // The openai/clip-vit-large-patch14-336 settings, as original LLaVA's
    // image_aspect_ratio "pad" uses them: the same steps as LlavaImageProcessor with do_pad.
    let clip = r#"{"image_processor_type": "CLIPImageProcessor", "size": 336, "crop_size": 336, "resample": 3}"#;
    let llava = r#"{"image_processor_type": "LlavaImageProcessor", "do_pad": true, "size": 336, "crop_size": 336, "resample": 3}"#;
    let padded = ImageProcessorConfig::from_json_str_with(clip, "clip", SquarePad::MeanColour).unwrap();
    assert_eq!(padded.square_pad, Some([122, 116, 104]));
    assert_eq!(padded, parse(llava).unwrap());
    assert_eq!(parse(clip).unwrap().square_pad, None);
}

/// LLaVA-NeXT's tiles for images of several aspects (fixtures from
/// tools/make_anyres_cases.py): the processor config as transformers saves it, the same
/// number of tiles in the same order, every value within 1e-6 of transformers'.
#[test]
fn tiled_preprocessing_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/fixtures/anyres");
    let config = ImageProcessorConfig::from_dir_tiled(&dir.join("processor")).unwrap();
    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("pixels.json")).unwrap()).unwrap();
    let tile = goldens["tile"].as_u64().unwrap() as usize;
    assert_eq!(config.tile_side(), tile);
    for case in goldens["cases"].as_array().unwrap() {
        let (height, width) = (
            case["size"][0].as_u64().unwrap() as u32,
            case["size"][1].as_u64().unwrap() as u32,
        );
        let image = RgbImage {
            width,
            height,
            data: base64_decode(case["rgb"].as_str().unwrap()),
        };
        let layout = config.tile_layout(&image, 14).unwrap();
        let tiles = config.preprocess_tiles(&image, &layout).unwrap();
        assert_eq!(
            tiles.len() as u64,
            case["tiles"].as_u64().unwrap(),
            "{height}x{width}: tiles"
        );
        let expected: Vec<f32> = base64_decode(case["values"].as_str().unwrap())
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let actual: Vec<f32> = tiles.concat();
        assert_eq!(actual.len(), expected.len(), "{height}x{width}: values");
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-6,
                "{height}x{width}: value {i} (tile {}) is {a}, transformers gives {e}",
                i / (3 * tile * tile)
            );
        }
    }
}

#[test]
fn pinpoints_are_read_only_where_tiling_is_accepted() {
    let text = r#"{"image_grid_pinpoints": [[28, 56], [56, 28]], "crop_size": 28, "size": {"shortest_edge": 28}}"#;
    let tiled = config::parse_text(text, "test", SquarePad::AsConfigured, Tiling::Accept).unwrap();
    assert_eq!(
        tiled.pinpoints(),
        Some(&[anyres::Size::new(28, 56), anyres::Size::new(56, 28)][..])
    );
    let bad = r#"{"image_grid_pinpoints": [[28, 56, 3]]}"#;
    let err = config::parse_text(bad, "test", SquarePad::AsConfigured, Tiling::Accept).unwrap_err();
    assert!(err.message.contains("image_grid_pinpoints"), "{}", err.message);
    let err = config::parse_text(
        "{\"image_grid_pinpoints\": []}",
        "test",
        SquarePad::AsConfigured,
        Tiling::Accept,
    )
    .unwrap_err();
    assert!(err.message.contains("non-empty"), "{}", err.message);
}
