//! rms_norm_* and layer_norm_* against the CPU backend, for every weight type. Widths:
//! under a warp, ragged warps, and more columns than the 256 threads of a row block.

use super::*;
use crate::backend::cuda::launch;

const ROWS: usize = 5;
const WIDTHS: [usize; 4] = [1, 37, 300, 1100];

#[test]
fn rms_norm_matches_cpu_for_every_weight_type() {
    let b = cpu();
    let mut rng = rng(1);
    for cols in WIDTHS {
        let x = random(&mut rng, ROWS * cols, 3.0);
        let gain = random(&mut rng, cols, 2.0);
        for dtype in DTYPES {
            let w = weight(&b, dtype, &[cols], &gain);
            let mut want = b.new_tensor();
            b.rms_norm(&tensor(&b, &x, ROWS, cols), &w.cpu, 1e-5, &mut want);

            let (x_dev, out) = (
                DeviceBuffer::from_slice(&x),
                DeviceBuffer::<f32>::unwritten(ROWS * cols),
            );
            let w_dev = weight_buffer(&w);
            let kernel = format!("rms_norm_{}", suffix(dtype));
            w_dev
                .pass(Launch::new(&kernel).buf(&x_dev))
                .buf(&out)
                .arg(cols as i32)
                .arg(1e-5f32)
                .run(&launch::per_row(ROWS, cols));
            assert_close(
                &out.to_vec(),
                &b.download(&want),
                2e-6,
                &format!("{kernel} cols {cols}"),
            );
        }
    }
}

#[test]
fn layer_norm_matches_cpu_for_every_weight_type() {
    let b = cpu();
    let mut rng = rng(2);
    for cols in WIDTHS {
        // An offset mean, as CLIP's residual stream has.
        let x: Vec<f32> = random(&mut rng, ROWS * cols, 2.0).iter().map(|v| v + 5.0).collect();
        let (gain, bias) = (random(&mut rng, cols, 2.0), random(&mut rng, cols, 1.0));
        for dtype in DTYPES {
            let (w, bb) = (weight(&b, dtype, &[cols], &gain), weight(&b, dtype, &[cols], &bias));
            let mut want = b.new_tensor();
            b.layer_norm(&tensor(&b, &x, ROWS, cols), &w.cpu, &bb.cpu, 1e-5, &mut want);

            let (x_dev, out) = (
                DeviceBuffer::from_slice(&x),
                DeviceBuffer::<f32>::unwritten(ROWS * cols),
            );
            let (w_dev, b_dev) = (weight_buffer(&w), weight_buffer(&bb));
            let kernel = format!("layer_norm_{}", suffix(dtype));
            let launch = w_dev.pass(Launch::new(&kernel).buf(&x_dev));
            b_dev
                .pass(launch)
                .buf(&out)
                .arg(cols as i32)
                .arg(1e-5f32)
                .run(&launch::per_row(ROWS, cols));
            // The mean is subtracted before squaring in both, so only summation order
            // differs; the offset makes that a little larger than for rms_norm.
            assert_close(
                &out.to_vec(),
                &b.download(&want),
                1e-5,
                &format!("{kernel} cols {cols}"),
            );
        }
    }
}
