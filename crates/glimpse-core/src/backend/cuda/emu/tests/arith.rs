//! add, add_bias and the 16-bit rounding kernels: add against the CPU backend, rounding
//! against the `half` crate bit for bit (the host converts weights with it, so a model
//! converted either way holds the same values).

use super::*;
use crate::backend::cuda::launch;

#[test]
fn add_and_bias_match_cpu() {
    let b = cpu();
    let mut rng = rng(21);
    let (rows, cols) = (7, 300);
    let x = random(&mut rng, rows * cols, 3.0);
    let y = random(&mut rng, rows * cols, 3.0);
    let mut want = tensor(&b, &x, rows, cols);
    b.add(&mut want, &tensor(&b, &y, rows, cols));
    let (x_dev, y_dev) = (DeviceBuffer::from_slice(&x), DeviceBuffer::from_slice(&y));
    Launch::new("add")
        .buf(&x_dev)
        .buf(&y_dev)
        .arg((rows * cols) as i64)
        .run(&launch::elementwise(rows * cols));
    assert_same_bits(&x_dev.to_vec(), &b.download(&want), "add");

    let bias = random(&mut rng, cols, 1.0);
    let x_dev = DeviceBuffer::from_slice(&x);
    let bias_dev = DeviceBuffer::from_slice(&bias);
    Launch::new("add_bias")
        .buf(&x_dev)
        .buf(&bias_dev)
        .arg((rows * cols) as i64)
        .arg(cols as i32)
        .run(&launch::elementwise(rows * cols));
    let want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + bias[i % cols]).collect();
    assert_same_bits(&x_dev.to_vec(), &want, "add_bias");
}

/// Values at every edge of the formats: halfway cases both ways, the largest finite
/// values and just beyond, subnormals and the smallest ones, underflow to zero, signed
/// zeros, infinities; then many random magnitudes.
fn rounding_inputs() -> Vec<f32> {
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        65504.0,
        65519.99,
        65520.0,
        -70000.0,
        6.0e-8,
        3.0e-8,
        2.9e-8,
        5.96e-8,
        1.0e-5,
        -6.1e-5,
        6.097e-5,
        3.4e38,
        1.0e-40,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
    ];
    let mut rng = rng(22);
    for exponent in -30..20 {
        for _ in 0..20 {
            let v: f32 = rng.random_range(1.0..2.0) * 2f32.powi(exponent);
            values.push(if rng.random_bool(0.5) { v } else { -v });
        }
    }
    values
}

fn round(kernel: &str, values: &[f32]) -> Vec<u16> {
    let x = DeviceBuffer::from_slice(values);
    let out = DeviceBuffer::<u16>::unwritten(values.len());
    Launch::new(kernel)
        .buf(&x)
        .buf(&out)
        .arg(values.len() as i64)
        .run(&launch::elementwise(values.len()));
    out.to_vec()
}

#[test]
fn rounding_to_f16_matches_the_half_crate() {
    let values = rounding_inputs();
    let got = round("round_to_f16", &values);
    for (v, g) in values.iter().zip(got) {
        assert_eq!(g, half::f16::from_f32(*v).to_bits(), "f16 of {v:e}");
    }
    let nan = round("round_to_f16", &[f32::NAN])[0];
    assert!(half::f16::from_bits(nan).is_nan());
}

#[test]
fn rounding_to_bf16_matches_the_half_crate() {
    let values = rounding_inputs();
    let got = round("round_to_bf16", &values);
    for (v, g) in values.iter().zip(got) {
        assert_eq!(g, half::bf16::from_f32(*v).to_bits(), "bf16 of {v:e}");
    }
    let nan = round("round_to_bf16", &[-f32::NAN])[0];
    assert!(half::bf16::from_bits(nan).is_nan());
}
