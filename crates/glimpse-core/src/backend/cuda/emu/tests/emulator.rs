//! The emulator itself: shuffles behave as on a GPU, and the mistakes it promises to
//! expose (a missing barrier, a barrier not every thread reaches, warp operations in a
//! partial warp, writes past a buffer) do show.

use super::*;
use crate::backend::cuda::launch::LaunchConfig;

fn block(threads: u32, blocks: u32, shared_bytes: u32) -> LaunchConfig {
    LaunchConfig {
        grid: [blocks, 1, 1],
        block: [threads, 1, 1],
        shared_bytes,
    }
}

#[test]
fn shuffles_exchange_within_each_warp() {
    let out = DeviceBuffer::<i32>::unwritten(64 * 3);
    Launch::new("selftest_shuffles").buf(&out).run(&block(64, 1, 0));
    let out = out.to_vec();
    for t in 0..64i32 {
        let (warp0, lane) = (t / 32 * 32, t % 32);
        assert_eq!(out[3 * t as usize], warp0 + (lane ^ 5), "xor, thread {t}");
        let down = if lane + 3 < 32 { t + 3 } else { t };
        assert_eq!(out[3 * t as usize + 1], down, "down, thread {t}");
        assert_eq!(out[3 * t as usize + 2], 10 * (warp0 + 7), "indexed, thread {t}");
    }
}

/// Reading a neighbour's shared-memory slot is right with the barrier; without it, both
/// run orders (forward in block 0, backward in block 1) read slots not yet written.
#[test]
fn a_missing_barrier_gives_wrong_results() {
    let config = block(64, 2, 64 * 4);
    let with = DeviceBuffer::<f32>::unwritten(128);
    Launch::new("selftest_neighbour").buf(&with).arg(1i32).run(&config);
    let expected: Vec<f32> = (0..128).map(|i| ((i % 64 + 1) % 64) as f32).collect();
    assert_eq!(with.to_vec(), expected);

    let without = DeviceBuffer::<f32>::unwritten(128);
    Launch::new("selftest_neighbour").buf(&without).arg(0i32).run(&config);
    let out = without.to_vec();
    assert!(
        out[..64].iter().any(|v| v.is_nan()),
        "forward order reads unwritten slots"
    );
    assert!(
        out[64..].iter().any(|v| v.is_nan()),
        "backward order reads unwritten slots"
    );
}

#[test]
fn a_barrier_some_threads_skip_is_an_error() {
    let out = DeviceBuffer::<i32>::unwritten(64);
    let e = Launch::new("selftest_divergent_barrier")
        .buf(&out)
        .try_run(&block(64, 1, 0))
        .unwrap_err();
    assert!(
        e.contains("16 threads wait at __syncthreads") && e.contains("48 have exited"),
        "{e}"
    );
}

#[test]
fn warp_operations_need_whole_warps() {
    let out = DeviceBuffer::<f32>::unwritten(48);
    let e = Launch::new("selftest_partial_warp")
        .buf(&out)
        .try_run(&block(48, 1, 0))
        .unwrap_err();
    assert!(e.contains("partial warp"), "{e}");
}

#[test]
#[should_panic(expected = "wrote outside the buffer passed as argument 0")]
fn writes_past_a_buffer_are_caught() {
    // 64 threads write 64 slots of a 60-element buffer.
    let out = DeviceBuffer::<f32>::unwritten(60);
    Launch::new("selftest_neighbour")
        .buf(&out)
        .arg(1i32)
        .run(&block(64, 1, 64 * 4));
}

#[test]
fn unknown_kernels_and_bad_shapes_are_errors() {
    let out = DeviceBuffer::<f32>::unwritten(1);
    let e = Launch::new("no_such_kernel")
        .buf(&out)
        .try_run(&block(32, 1, 0))
        .unwrap_err();
    assert!(e.contains("no such kernel"), "{e}");
    let e = Launch::new("selftest_partial_warp")
        .buf(&out)
        .try_run(&block(2048, 1, 0))
        .unwrap_err();
    assert!(e.contains("1 to 1024"), "{e}");
}
