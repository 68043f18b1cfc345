//! Rater selection: which text tokens after an image judge its visual tokens. Chosen once
//! per prompt from the language model's input embeddings: every visual token spreads a
//! softmax over the text by raw dot product, and the text tokens that receive more than
//! the average share become raters.

use crate::reduce::Sequence;

/// Sequence rows of the raters of `image`, ascending. `embeddings` holds one row of `dim`
/// values per sequence row. Empty when the image has no text after it.
pub(crate) fn select_raters(embeddings: &[f32], dim: usize, seq: &Sequence, image: u32) -> Vec<usize> {
    let vision = seq.vision_rows(image);
    let Some(&first) = vision.first() else {
        return Vec::new();
    };
    let text: Vec<usize> = (first + 1..seq.len())
        .filter(|&i| seq.rows[i].vision.is_none())
        .collect();
    if text.is_empty() {
        return Vec::new();
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];

    // Mean over visual rows of each row's softmax over the text.
    let mut share = vec![0f64; text.len()];
    let mut logits = vec![0f64; text.len()];
    for &v in &vision {
        for (logit, &t) in logits.iter_mut().zip(&text) {
            *logit = row(v).iter().zip(row(t)).map(|(&a, &b)| a as f64 * b as f64).sum();
        }
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for (s, w) in share.iter_mut().zip(&weights) {
            *s += w / total;
        }
    }
    share.iter_mut().for_each(|s| *s /= vision.len() as f64);
    let mean = share.iter().sum::<f64>() / share.len() as f64;
    text.into_iter()
        .zip(&share)
        .filter(|(_, &s)| s > mean)
        .map(|(t, _)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::{Row, VisionRef};

    fn text_row(i: u32) -> Row {
        Row {
            position: i,
            origin: i,
            vision: None,
        }
    }

    fn vision_row(i: u32, image: u32) -> Row {
        Row {
            position: i,
            origin: i,
            vision: Some(VisionRef { image, token: i }),
        }
    }

    /// Text, two visual rows, four text rows. Both visual rows point along the first
    /// axis, so text rows with a large first coordinate get most of the softmax.
    fn prompt() -> (Sequence, Vec<f32>) {
        let seq = Sequence {
            rows: vec![
                text_row(0),
                vision_row(1, 0),
                vision_row(2, 0),
                text_row(3),
                text_row(4),
                text_row(5),
                text_row(6),
            ],
        };
        #[rustfmt::skip]
        let embeddings = vec![
            9.0, 9.0, // text before the image: never a rater
            1.0, 0.0,
            2.0, 0.5,
            3.0, 0.0, // strongly preferred
            0.0, 1.0,
            2.5, 0.0, // preferred
            -1.0, 4.0,
        ];
        (seq, embeddings)
    }

    #[test]
    fn raters_get_more_than_the_mean_share() {
        let (seq, e) = prompt();
        assert_eq!(select_raters(&e, 2, &seq, 0), vec![3, 5]);
    }

    #[test]
    fn shares_follow_the_softmax_definition() {
        // Recompute the shares by the definition, independently, and check the threshold
        // splits them where the function does.
        let (seq, e) = prompt();
        let vision = [1usize, 2];
        let text = [3usize, 4, 5, 6];
        let dot = |a: usize, b: usize| e[a * 2] as f64 * e[b * 2] as f64 + e[a * 2 + 1] as f64 * e[b * 2 + 1] as f64;
        let mut share = [0f64; 4];
        for v in vision {
            let z: f64 = text.iter().map(|&t| dot(v, t).exp()).sum();
            for (k, &t) in text.iter().enumerate() {
                share[k] += dot(v, t).exp() / z / 2.0;
            }
        }
        let expected: Vec<usize> = text
            .iter()
            .zip(share)
            .filter(|(_, s)| *s > 0.25)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(select_raters(&e, 2, &seq, 0), expected);
    }

    #[test]
    fn equal_shares_give_no_rater_and_no_text_gives_none() {
        // One text row takes the whole softmax: its share equals the mean.
        let seq = Sequence {
            rows: vec![vision_row(0, 0), text_row(1)],
        };
        assert!(select_raters(&[1.0, 2.0], 1, &seq, 0).is_empty());
        let seq = Sequence {
            rows: vec![text_row(0), vision_row(1, 0)],
        };
        assert!(select_raters(&[1.0, 2.0], 1, &seq, 0).is_empty());
    }

    #[test]
    fn each_image_is_rated_by_the_text_after_it() {
        // Image 0, text, image 1, text: image 1's raters come only from the last rows.
        let seq = Sequence {
            rows: vec![
                vision_row(0, 0),
                text_row(1),
                text_row(2),
                vision_row(3, 1),
                text_row(4),
                text_row(5),
            ],
        };
        let e = [1.0, 5.0, -5.0, 1.0, -3.0, 3.0];
        // Image 0: logits 5, −5, −3, 3 → shares ≈ 0.88, 0, 0, 0.12; only row 1 is above 1/4.
        assert_eq!(select_raters(&e, 1, &seq, 0), vec![1]);
        assert_eq!(select_raters(&e, 1, &seq, 1), vec![5]);
    }
}
