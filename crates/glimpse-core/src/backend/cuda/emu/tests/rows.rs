//! gather_rows_*, select_rows and retain_rows against the CPU backend: pure data
//! movement (and exact widening), so the results must be bit-identical.

use super::*;
use crate::backend::cuda::launch;

/// Embedding lookups from a table in each storage type, with repeated ids, the first and
/// last rows, and 16-bit values at the edges of their formats (f16 subnormals, the
/// largest f16, infinities, signed zeros), which widening must keep exactly.
#[test]
fn gather_rows_matches_cpu_for_every_table_type() {
    let b = cpu();
    let mut rng = rng(8);
    for cols in [7, 300] {
        let table_rows = 50;
        let mut values = random(&mut rng, table_rows * cols, 4.0);
        let specials = [
            6.0e-8,
            -3.0e-6,
            65504.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1.0e-40,
        ];
        values[..specials.len()].copy_from_slice(&specials);
        let ids: Vec<u32> = vec![0, 49, 3, 3, 17, 0];
        for dtype in DTYPES {
            let table = weight(&b, dtype, &[table_rows, cols], &values);
            let mut want = b.new_tensor();
            b.gather_rows(&table.cpu, &ids, &mut want);

            let (ids_dev, out) = (
                DeviceBuffer::from_slice(&ids),
                DeviceBuffer::<f32>::unwritten(ids.len() * cols),
            );
            let kernel = format!("gather_rows_{}", suffix(dtype));
            weight_buffer(&table)
                .pass(Launch::new(&kernel))
                .buf(&ids_dev)
                .buf(&out)
                .arg(cols as i32)
                .arg(table_rows as u32)
                .run(&launch::per_row(ids.len(), cols));
            assert_same_bits(&out.to_vec(), &b.download(&want), &format!("{kernel} cols {cols}"));
        }
    }
}

/// The CPU backend panics on an id past the table; the kernel must not read out of
/// bounds, and marks the row with NaN.
#[test]
fn gather_rows_marks_an_id_past_the_table() {
    let table = DeviceBuffer::from_slice(&[1.0f32, 2.0, 3.0, 4.0]);
    let ids = DeviceBuffer::from_slice(&[1u32, 2]);
    let out = DeviceBuffer::<f32>::from_slice(&[0.0; 4]);
    Launch::new("gather_rows_f32")
        .buf(&table)
        .buf(&ids)
        .buf(&out)
        .arg(2i32)
        .arg(2u32)
        .run(&launch::per_row(2, 2));
    let out = out.to_vec();
    assert_eq!(&out[..2], &[3.0, 4.0]);
    assert!(out[2].is_nan() && out[3].is_nan());
}

#[test]
fn select_rows_matches_cpu() {
    let b = cpu();
    let (rows, cols) = (20, 37);
    let src = random(&mut rng(9), rows * cols, 1.0);
    let picks = [3usize, 3, 0, 19, 7];
    let mut want = b.new_tensor();
    b.select_rows(&tensor(&b, &src, rows, cols), &picks, &mut want);

    let picks_u32: Vec<u32> = picks.iter().map(|&r| r as u32).collect();
    let (src_dev, picks_dev) = (DeviceBuffer::from_slice(&src), DeviceBuffer::from_slice(&picks_u32));
    let out = DeviceBuffer::<f32>::unwritten(picks.len() * cols);
    Launch::new("select_rows")
        .buf(&src_dev)
        .buf(&picks_dev)
        .buf(&out)
        .arg(cols as i32)
        .run(&launch::per_row(picks.len(), cols));
    assert_same_bits(&out.to_vec(), &b.download(&want), "select_rows");
}

/// In-place compaction where later sources are earlier destinations (rows shift down by
/// different amounts), over more columns than one block of threads.
#[test]
fn retain_rows_compacts_in_place_like_cpu() {
    let b = cpu();
    let (rows, cols) = (30, 300);
    let data = random(&mut rng(10), rows * cols, 1.0);
    for keep in [
        vec![0usize, 2, 3, 7, 8, 9, 15, 29],
        vec![5, 6, 7],
        vec![0, 1, 2],
        vec![],
    ] {
        let mut want = tensor(&b, &data, rows, cols);
        b.retain_rows(&mut want, &keep);

        let keep_u32: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
        let (x_dev, keep_dev) = (DeviceBuffer::from_slice(&data), DeviceBuffer::from_slice(&keep_u32));
        Launch::new("retain_rows")
            .buf(&x_dev)
            .buf(&keep_dev)
            .arg(keep.len() as i32)
            .arg(cols as i32)
            .run(&launch::retain_rows(cols));
        // The tensor shrinks to the kept rows; what lies past them is not specified.
        let got = x_dev.to_vec();
        assert_same_bits(
            &got[..keep.len() * cols],
            &b.download(&want),
            &format!("retain {keep:?}"),
        );
    }
}
