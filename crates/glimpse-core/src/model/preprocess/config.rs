//! Reading the image processor settings a checkpoint ships.
//!
//! transformers looks in two places (`ImageProcessingMixin.get_image_processor_dict`): the
//! `"image_processor"` object inside processor_config.json (what `ProcessorMixin.
//! save_pretrained` writes since v5), else preprocessor_config.json (older checkpoints and
//! bare image processors). A missing or null setting takes the class default, which is the
//! same for CLIPImageProcessor and LlavaImageProcessor; unknown processor types are read
//! with those defaults too, as long as their settings are ones described here.

use std::path::Path;

use serde_json::{Map, Value};

use super::normalize::{Normalize, PixelMap};
use super::resample::Filter;
use super::{ImageProcessorConfig, Resize, ResizeTarget, Size, SquarePad, Tiling};
use crate::error::{Error, Result};
use crate::model::anyres;

const PROCESSOR_FILE: &str = "processor_config.json";
const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, the CLIP and LLaVA defaults.
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
const DEFAULT_SIZE: usize = 224;

pub fn read_dir(dir: &Path, pad: SquarePad, tiling: Tiling) -> Result<ImageProcessorConfig> {
    let processor_path = dir.join(PROCESSOR_FILE);
    if processor_path.is_file() {
        let root = read_json(&processor_path)?;
        match root.get("image_processor") {
            Some(Value::Object(settings)) => {
                let source = format!("{} (\"image_processor\")", processor_path.display());
                return from_settings(settings, &source, pad, tiling);
            }
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(Error::model(format!(
                    "{}: \"image_processor\" must be an object",
                    processor_path.display()
                )))
            }
        }
    }
    let path = dir.join(PREPROCESSOR_FILE);
    if !path.is_file() {
        return Err(Error::model(format!(
            "{}: no {PREPROCESSOR_FILE} (nor a {PROCESSOR_FILE} with an \"image_processor\" entry)",
            dir.display()
        )));
    }
    let source = path.display().to_string();
    match read_json(&path)? {
        Value::Object(settings) => from_settings(&settings, &source, pad, tiling),
        _ => Err(Error::model(format!("{source}: expected a JSON object"))),
    }
}

pub fn parse_text(text: &str, source: &str, pad: SquarePad, tiling: Tiling) -> Result<ImageProcessorConfig> {
    match serde_json::from_str(text) {
        Ok(Value::Object(settings)) => from_settings(&settings, source, pad, tiling),
        Ok(_) => Err(Error::model(format!("{source}: expected a JSON object"))),
        Err(e) => Err(Error::model(format!("{source}: invalid JSON: {e}"))),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::model(format!("{}: cannot read: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::model(format!("{}: invalid JSON: {e}", path.display())))
}

/// How an integer `size` is read: transformers' `get_size_dict(default_to_square=...)`.
#[derive(Clone, Copy)]
enum IntSize {
    Square,
    ShortestEdge,
}

/// Typed access to the settings object, with errors that name the file and the key.
struct Settings<'a> {
    map: &'a Map<String, Value>,
    source: &'a str,
}

impl Settings<'_> {
    /// The value of `key`; a JSON null counts as absent, as transformers treats `None`.
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &str, expected: &str) -> Error {
        let got = self.get(key).map_or_else(String::new, Value::to_string);
        Error::model(format!("{}: \"{key}\" must be {expected}, got {got}", self.source))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.invalid(key, "true or false")),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.invalid(key, "a number")))
            .transpose()
    }

    fn string(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A side length: a positive integer that fits Pillow's C int.
    fn length(&self, key: &str, value: &Value) -> Result<usize> {
        value
            .as_u64()
            .filter(|&n| n >= 1 && n <= i32::MAX as u64)
            .map(|n| n as usize)
            .ok_or_else(|| self.invalid(key, "made of positive integers"))
    }

    /// `image_grid_pinpoints`: a non-empty list of `[height, width]` pairs.
    fn pinpoints(&self, value: &Value) -> Result<Vec<anyres::Size>> {
        let key = "image_grid_pinpoints";
        let expected = "a non-empty list of [height, width] pairs";
        let pairs = value
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| self.invalid(key, expected))?;
        pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([height, width]) => Ok(anyres::Size::new(self.length(key, height)?, self.length(key, width)?)),
                _ => Err(self.invalid(key, expected)),
            })
            .collect()
    }

    /// `size`, `crop_size` or `pad_size`: an int, a `[height, width]` list, or a dict with
    /// `shortest_edge` or `height` and `width`.
    fn size(&self, key: &str, int_size: IntSize) -> Result<Option<ResizeTarget>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let target = match value {
            Value::Number(_) => {
                let n = self.length(key, value)?;
                match int_size {
                    IntSize::Square => ResizeTarget::Exact(Size { height: n, width: n }),
                    IntSize::ShortestEdge => ResizeTarget::ShortestEdge(n),
                }
            }
            Value::Array(items) if items.len() == 2 => ResizeTarget::Exact(Size {
                height: self.length(key, &items[0])?,
                width: self.length(key, &items[1])?,
            }),
            Value::Object(dict) => {
                let mut keys: Vec<&str> = dict
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.as_str())
                    .collect();
                keys.sort_unstable();
                match keys.as_slice() {
                    ["shortest_edge"] => ResizeTarget::ShortestEdge(self.length(key, &dict["shortest_edge"])?),
                    ["height", "width"] => ResizeTarget::Exact(Size {
                        height: self.length(key, &dict["height"])?,
                        width: self.length(key, &dict["width"])?,
                    }),
                    _ => {
                        return Err(Error::model(format!(
                            "{}: \"{key}\" with keys {keys:?} is not supported \
                             (expected \"shortest_edge\", or \"height\" and \"width\")",
                            self.source
                        )))
                    }
                }
            }
            _ => return Err(self.invalid(key, "an integer, a [height, width] list or an object")),
        };
        Ok(Some(target))
    }

    /// `crop_size` or `pad_size`, which must name both sides.
    fn exact_size(&self, key: &str) -> Result<Option<Size>> {
        match self.size(key, IntSize::Square)? {
            None => Ok(None),
            Some(ResizeTarget::Exact(size)) => Ok(Some(size)),
            Some(ResizeTarget::ShortestEdge(_)) => Err(self.invalid(key, "a height and a width")),
        }
    }

    /// `image_mean` or `image_std`: one number for all channels, or one per channel.
    fn channels(&self, key: &str, default: [f64; 3]) -> Result<[f64; 3]> {
        let expected = "a number or a list of 3 numbers";
        match self.get(key) {
            None => Ok(default),
            Some(Value::Number(n)) => {
                let x = n.as_f64().ok_or_else(|| self.invalid(key, expected))?;
                Ok([x; 3])
            }
            Some(Value::Array(items)) if items.len() == 3 => {
                let mut out = [0.0; 3];
                for (dst, item) in out.iter_mut().zip(items) {
                    *dst = item.as_f64().ok_or_else(|| self.invalid(key, expected))?;
                }
                Ok(out)
            }
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    fn filter(&self) -> Result<Filter> {
        let Some(value) = self.get("resample") else {
            return Ok(Filter::Bicubic);
        };
        value.as_i64().and_then(Filter::from_pil_id).ok_or_else(|| {
            Error::model(format!(
                "{}: \"resample\": {value} is not a supported filter \
                 (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)",
                self.source
            ))
        })
    }

    /// The processor class, from `image_processor_type` or the older
    /// `feature_extractor_type`, without the backend suffix transformers may add.
    fn processor_type(&self) -> String {
        let name = self
            .string("image_processor_type")
            .or_else(|| self.string("feature_extractor_type"))
            .unwrap_or("");
        let name = name
            .strip_suffix("Fast")
            .or_else(|| name.strip_suffix("Pil"))
            .unwrap_or(name);
        name.replace("FeatureExtractor", "ImageProcessor")
    }
}

fn from_settings(
    map: &Map<String, Value>,
    source: &str,
    pad: SquarePad,
    tiling: Tiling,
) -> Result<ImageProcessorConfig> {
    let settings = Settings { map, source };
    let pinpoints = match (settings.get("image_grid_pinpoints"), tiling) {
        (None, _) => None,
        (Some(_), Tiling::Refuse) => {
            return Err(Error::model(format!(
                "{source}: \"image_grid_pinpoints\" (any-resolution tiling) is not supported"
            )))
        }
        (Some(value), Tiling::Accept) => Some(settings.pinpoints(value)?),
    };
    // `do_convert_rgb` is not read: the input is RGB already, so it never changes anything.
    let is_llava = settings.processor_type() == "LlavaImageProcessor";
    let image_mean = settings.channels("image_mean", CLIP_MEAN)?;
    let image_std = settings.channels("image_std", CLIP_STD)?;

    let do_pad = settings.bool("do_pad", false)?;
    let square_pad = if (is_llava && do_pad) || pad == SquarePad::MeanColour {
        Some(background_colour(image_mean, source)?)
    } else {
        None
    };

    let resize = if settings.bool("do_resize", true)? {
        let int_size = if settings.bool("default_to_square", false)? {
            IntSize::Square
        } else {
            IntSize::ShortestEdge
        };
        let target = settings
            .size("size", int_size)?
            .unwrap_or(ResizeTarget::ShortestEdge(DEFAULT_SIZE));
        Some(Resize {
            target,
            filter: settings.filter()?,
        })
    } else {
        None
    };

    let center_crop = if settings.bool("do_center_crop", true)? {
        let square = Size {
            height: DEFAULT_SIZE,
            width: DEFAULT_SIZE,
        };
        Some(settings.exact_size("crop_size")?.unwrap_or(square))
    } else {
        None
    };

    let rescale_factor = if settings.bool("do_rescale", true)? {
        Some(settings.number("rescale_factor")?.unwrap_or(1.0 / 255.0))
    } else {
        None
    };
    let normalize = if settings.bool("do_normalize", true)? {
        Some(Normalize {
            mean: image_mean.map(|x| x as f32),
            std: image_std.map(|x| x as f32),
        })
    } else {
        None
    };

    // LlavaImageProcessor's `do_pad` is the square pad above; elsewhere the PIL backend pads
    // the finished batch to `pad_size`, or to its largest image, which for images processed
    // one at a time means no padding at all.
    let pad_to = if !is_llava && do_pad {
        settings.exact_size("pad_size")?
    } else {
        None
    };

    let output = fixed_output_size(square_pad.is_some(), resize, center_crop, pad_to, source)?;
    Ok(ImageProcessorConfig {
        square_pad,
        resize,
        center_crop,
        pixel_map: PixelMap {
            rescale_factor,
            normalize,
        },
        pad_to,
        output,
        pinpoints,
    })
}

/// `tuple(int(x * 255) for x in image_mean)`, written into a uint8 image.
fn background_colour(mean: [f64; 3], source: &str) -> Result<[u8; 3]> {
    let mut colour = [0u8; 3];
    for (dst, m) in colour.iter_mut().zip(mean) {
        let level = (m * 255.0).trunc();
        if !(0.0..=255.0).contains(&level) {
            return Err(Error::model(format!(
                "{source}: \"image_mean\" {m} gives a padding colour outside 0..255"
            )));
        }
        *dst = level as u8;
    }
    Ok(colour)
}

/// The output size, which the vision tower needs to be the same for every image.
fn fixed_output_size(
    square_pad: bool,
    resize: Option<Resize>,
    center_crop: Option<Size>,
    pad_to: Option<Size>,
    source: &str,
) -> Result<Size> {
    let after_resize = match resize.map(|r| r.target) {
        Some(ResizeTarget::Exact(size)) => Some(size),
        Some(ResizeTarget::ShortestEdge(edge)) if square_pad => Some(Size {
            height: edge,
            width: edge,
        }),
        _ => None,
    };
    let before_pad = center_crop.or(after_resize);
    if let (Some(image), Some(pad)) = (before_pad, pad_to) {
        if image.height > pad.height || image.width > pad.width {
            return Err(Error::model(format!(
                "{source}: \"pad_size\" {}x{} is smaller than the {}x{} image it pads",
                pad.width, pad.height, image.width, image.height
            )));
        }
    }
    pad_to.or(before_pad).ok_or_else(|| {
        Error::model(format!(
            "{source}: the preprocessed image size would depend on each image \
             (no center crop and no fixed \"size\"); the vision tower needs a fixed size"
        ))
    })
}
