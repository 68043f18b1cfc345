//! Several requests through the model together.
//!
//! Each sequence is prepared and prefilled on its own and keeps its own KV cache, reduction
//! plan, sampler and text state. Decoding is where the batch pays: each step stacks the new
//! token of every sequence still running into one matrix, so every linear layer reads its
//! weights once for the whole batch rather than once per sequence; rotary positions,
//! attention and the cache policies stay per sequence. A sequence that ends (end of
//! sequence, stop string, length) leaves the batch and the others go on, unaffected: each
//! row is computed exactly as it would be alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::decoding::{Decoding, Next};
use super::session::{self, PreparedPrompt};
use super::state::{GenerationState, StepToken};
use super::stats::GenerationStats;
use crate::backend::Backend;
use crate::engine::{Event, FinishReason, GenerateOutput, GenerateRequest};
use crate::error::{Error, Result};
use crate::model::llama::{BatchRow, Llama, LlamaScratch};
use crate::model::llava::Llava;
use crate::reduce::ReductionPlan;
use crate::text::TextTokenizer;

/// A request made ready for the language model: its reduction plan, its prompt with the
/// images encoded, and the statistics gathered so far.
pub(crate) struct Prepared<'m, B: Backend> {
    pub plan: ReductionPlan<'m, B>,
    pub prompt: PreparedPrompt<B>,
    pub stats: GenerationStats,
}

/// One sequence of the batch while it decodes.
struct Member<'m, 't, B: Backend> {
    /// Index of its request (and of its output).
    index: usize,
    state: GenerationState<'m, B>,
    decoding: Decoding<'t, B>,
    /// Where its next token's logits are: its row of the last batched step's logits, or
    /// (before the first step) its own state's.
    batch_row: Option<usize>,
    stats: GenerationStats,
    n_prompt: usize,
}

/// Runs every request to its end and returns their outputs in request order. A request
/// that cannot run (it fails to prepare, say its prompt is longer than the context) gets
/// its error and the others go on; `cancel`, polled once per step, ends every sequence
/// still running as cancelled.
pub(crate) fn run<'m, B: Backend>(
    b: &B,
    model: &'m Llava<B>,
    tokenizer: &TextTokenizer,
    requests: &[GenerateRequest],
    context_len: usize,
    cancel: &AtomicBool,
    prepare: impl Fn(&GenerateRequest) -> Result<Prepared<'m, B>>,
) -> Vec<Result<GenerateOutput>> {
    let mut outputs: Vec<Option<Result<GenerateOutput>>> = requests.iter().map(|_| None).collect();
    let mut members = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            outputs[index] = Some(Err(Error::cancelled()));
            continue;
        }
        match start(b, model, tokenizer, request, index, context_len, &prepare) {
            Ok(member) => members.push(member),
            Err(err) => outputs[index] = Some(Err(err)),
        }
    }

    let started = Instant::now();
    let mut work = BatchWork::new(b);
    let mut noop = |_: Event| {};
    while !members.is_empty() {
        // Each running sequence picks its next token; those that end leave the batch.
        let mut feeding = Vec::with_capacity(members.len());
        let mut still = Vec::with_capacity(members.len());
        for mut member in members {
            let next = if cancel.load(Ordering::Relaxed) {
                Ok(Next::Finished(FinishReason::Cancelled))
            } else {
                let (logits, row, rider) = match member.batch_row {
                    Some(row) => (&work.scratch.logits, row, member.state.rider()),
                    None => {
                        let (logits, rider) = member.state.logits_and_rider();
                        (logits, 0, rider)
                    }
                };
                member.decoding.next(b, logits, row, rider, &mut noop)
            };
            member.state.settle(b);
            match next {
                Ok(Next::Feed(id)) => {
                    feeding.push(id);
                    still.push(member);
                }
                Ok(Next::Finished(reason)) => {
                    let index = member.index;
                    outputs[index] = Some(finish(member, reason, started));
                }
                Err(err) => outputs[member.index] = Some(Err(err)),
            }
        }
        members = still;
        if members.is_empty() {
            break;
        }
        let mut batch: Vec<Feed<'_, 'm, B>> = members
            .iter_mut()
            .zip(&feeding)
            .map(|(member, &id)| Feed {
                state: &mut member.state,
                id,
            })
            .collect();
        let stepped = step(b, &model.language, &mut batch, &mut work);
        drop(batch);
        for (row, member) in members.iter_mut().enumerate() {
            member.batch_row = Some(row);
        }
        if let Err(err) = stepped {
            // A failed step leaves every sequence in it half-fed: none can go on.
            for member in members.drain(..) {
                outputs[member.index] = Some(Err(err.clone()));
            }
        }
    }
    outputs
        .into_iter()
        .map(|output| output.unwrap_or_else(|| Err(Error::internal("a batched request got no output"))))
        .collect()
}

/// Prepares and prefills one request, ready to decode.
fn start<'m, 't, B: Backend>(
    b: &B,
    model: &'m Llava<B>,
    tokenizer: &'t TextTokenizer,
    request: &GenerateRequest,
    index: usize,
    context_len: usize,
    prepare: &impl Fn(&GenerateRequest) -> Result<Prepared<'m, B>>,
) -> Result<Member<'m, 't, B>> {
    let Prepared {
        plan,
        prompt,
        mut stats,
    } = prepare(request)?;
    let n_prompt = prompt.unreduced_len;
    let max_new = session::max_new_tokens(request, n_prompt, context_len);
    let decoding = Decoding::new(b, tokenizer, request, &prompt.ids, max_new)?;
    // Checked against what the batch's earlier sequences left free.
    session::ensure_kv_fits(b, model, prompt.ids.len(), max_new)?;
    let mut state = GenerationState::new(b, model, plan, prompt.ids.len() + max_new);
    let started = Instant::now();
    state.prefill(b, model, &prompt)?;
    stats.ms_prefill = started.elapsed().as_secs_f64() * 1e3;
    Ok(Member {
        index,
        state,
        decoding,
        batch_row: None,
        stats,
        n_prompt,
    })
}

/// The output of a sequence that ended for `reason`; its decode time runs from the start
/// of the batch's decoding to now.
fn finish<B: Backend>(
    member: Member<'_, '_, B>,
    reason: FinishReason,
    decode_started: Instant,
) -> Result<GenerateOutput> {
    let Member {
        state,
        decoding,
        mut stats,
        n_prompt,
        ..
    } = member;
    let decoded = decoding.finish(reason, &mut |_| {})?;
    stats.ms_decode = decode_started.elapsed().as_secs_f64() * 1e3;
    Ok(session::output(state, decoded, stats, n_prompt))
}

/// Buffers of the stacked rows, reused every step.
pub(super) struct BatchWork<B: Backend> {
    hidden: B::Tensor,
    scratch: LlamaScratch<B>,
}

impl<B: Backend> BatchWork<B> {
    pub(super) fn new(b: &B) -> Self {
        BatchWork {
            hidden: b.new_tensor(),
            scratch: LlamaScratch::new(b),
        }
    }
}

/// One sequence's part in a batched step: its state and the token it is fed.
pub(super) struct Feed<'a, 'm, B: Backend> {
    pub state: &'a mut GenerationState<'m, B>,
    pub id: u32,
}

/// [`GenerationState::step`] for several sequences at once: the same phases per sequence,
/// with the layers run over the stacked rows. Row `r` of `work`'s logits is then the next
/// token's logits of `batch[r]`.
pub(super) fn step<B: Backend>(
    b: &B,
    llama: &Llama<B>,
    batch: &mut [Feed<'_, '_, B>],
    work: &mut BatchWork<B>,
) -> Result<()> {
    let tokens: Vec<StepToken> = batch.iter_mut().map(|f| f.state.begin_step()).collect();
    let ids: Vec<u32> = batch.iter().map(|f| f.id).collect();
    llama.embed(b, &ids, &mut work.hidden);
    let width = b.shape(&work.hidden).1;
    for i in 0..llama.n_layers() {
        for (r, feed) in batch.iter_mut().enumerate() {
            let state = &mut *feed.state;
            if state.needs_hidden_before(i) {
                b.reserve_rows(&mut state.hidden, 1, width);
                b.copy_rows(&work.hidden, r, &mut state.hidden, 0, 1);
            }
            state.before_layer(b, i)?;
        }
        let mut rows: Vec<BatchRow<'_, B>> = batch
            .iter_mut()
            .zip(&tokens)
            .map(|(feed, token)| {
                let state = &mut *feed.state;
                BatchRow {
                    position: state.layer_position(i, token),
                    origin: token.origin,
                    cache: &mut state.cache,
                    scratch: &mut state.scratch,
                }
            })
            .collect();
        llama.forward_layer_batch(b, i, &mut work.hidden, &mut rows, &mut work.scratch)?;
        drop(rows);
        for feed in batch.iter_mut() {
            feed.state.after_layer(b, llama, i);
        }
    }
    for feed in batch.iter_mut() {
        feed.state.end_step(b);
    }
    llama.logits_of_rows(b, &work.hidden, &mut work.scratch);
    b.check()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::generate::state::initial_sequence;
    use crate::model::config::LlavaConfig;
    use crate::model::predictor::DynamicPredictors;
    use crate::model::weights::Weights;
    use crate::reduce::ReduceSpec;

    fn load(name: &str) -> (CpuBackend, Llava<CpuBackend>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../test/fixtures/models")
            .join(name);
        let b = CpuBackend::new(Some(2)).unwrap();
        let weights = Weights::open(&dir).unwrap();
        let mut model = Llava::load(&b, &weights, LlavaConfig::from_dir(&dir).unwrap()).unwrap();
        model.predictors = DynamicPredictors::load(&b, &weights, &dir, &model.config).unwrap();
        (b, model)
    }

    /// One sequence of a test batch: its reduction, its image (a pattern picked by
    /// `image`), how many text tokens follow the image, and how many tokens it is fed.
    #[derive(Clone, Copy)]
    struct Case {
        spec: &'static str,
        image: usize,
        text: usize,
        steps: usize,
    }

    /// A prepared prompt and a fresh state for `case`, as the engine would make them.
    fn begin<'m>(
        b: &CpuBackend,
        model: &'m Llava<CpuBackend>,
        case: Case,
    ) -> (GenerationState<'m, CpuBackend>, PreparedPrompt<CpuBackend>) {
        let plan = ReduceSpec::parse(case.spec).unwrap().plan(model).unwrap();
        let size = model.config.vision.image_size;
        let pixels: Vec<f32> = (0..3 * size * size)
            .map(|i| ((i * (31 + 6 * case.image)) % (13 + case.image)) as f32 / 6.0 - 1.0)
            .collect();
        let (image, _) = model.encode_image(b, &pixels, plan.encoder.as_deref()).unwrap();
        let slot = image.slot_len;
        let image_token = model.config.image_token_index;
        let mut ids = vec![1u32, 40];
        ids.extend(std::iter::repeat_n(image_token, image.tokens.len()));
        ids.extend((0..case.text as u32).map(|t| 41 + (t * 7 + case.image as u32) % 50));
        let images = vec![image];
        let prompt = PreparedPrompt {
            sequence: initial_sequence(&ids, image_token, &images, plan.positions),
            unreduced_len: ids.len() - images[0].tokens.len() + slot,
            ids,
            images,
        };
        let state = GenerationState::new(b, model, plan, prompt.ids.len() + case.steps);
        (state, prompt)
    }

    fn argmax(logits: &[f32]) -> u32 {
        (0..logits.len())
            .max_by(|&i, &j| logits[i].total_cmp(&logits[j]))
            .unwrap() as u32
    }

    /// What one sequence went through: the tokens it was fed, its logits after prefill and
    /// after each step, and how its reduction ended (report and cache contents).
    #[derive(Debug, PartialEq)]
    struct Trace {
        fed: Vec<u32>,
        logits: Vec<Vec<f32>>,
        report: String,
        cache: Vec<(Vec<u32>, Vec<u32>)>,
    }

    fn trace(state: GenerationState<'_, CpuBackend>, fed: Vec<u32>, logits: Vec<Vec<f32>>) -> Trace {
        let cache = state
            .cache
            .layers
            .iter()
            .map(|l| (l.positions.clone(), l.origins.clone()))
            .collect();
        let report = serde_json::to_string(&state.finish(&mut GenerationStats::default())).unwrap();
        Trace {
            fed,
            logits,
            report,
            cache,
        }
    }

    /// The sequence alone through [`GenerationState::step`], fed its greedy tokens.
    fn alone(b: &CpuBackend, model: &Llava<CpuBackend>, case: Case) -> Trace {
        let (mut state, prompt) = begin(b, model, case);
        state.prefill(b, model, &prompt).unwrap();
        let mut logits = vec![state.download_logits(b)];
        let mut fed = Vec::new();
        for _ in 0..case.steps {
            let id = argmax(logits.last().unwrap());
            state.settle(b);
            state.step(b, &model.language, id).unwrap();
            fed.push(id);
            logits.push(state.download_logits(b));
        }
        state.settle(b);
        trace(state, fed, logits)
    }

    /// All sequences through the batched step, each fed its own greedy tokens and leaving
    /// the batch after its own number of steps.
    fn together(b: &CpuBackend, model: &Llava<CpuBackend>, cases: &[Case]) -> Vec<Trace> {
        let mut states = Vec::new();
        let mut logits = Vec::new();
        for &case in cases {
            let (mut state, prompt) = begin(b, model, case);
            state.prefill(b, model, &prompt).unwrap();
            logits.push(vec![state.download_logits(b)]);
            states.push(state);
        }
        let mut fed: Vec<Vec<u32>> = cases.iter().map(|_| Vec::new()).collect();
        let mut work = BatchWork::new(b);
        let longest = cases.iter().map(|c| c.steps).max().unwrap_or(0);
        for t in 0..longest {
            let mut batch = Vec::new();
            let mut running = Vec::new();
            for (r, state) in states.iter_mut().enumerate() {
                if t < cases[r].steps {
                    let id = argmax(logits[r].last().unwrap());
                    fed[r].push(id);
                    state.settle(b);
                    batch.push(Feed { state, id });
                    running.push(r);
                }
            }
            step(b, &model.language, &mut batch, &mut work).unwrap();
            for (row, &r) in running.iter().enumerate() {
                let mut next = vec![0f32; model.config.text.vocab_size];
                b.download_row(&work.scratch.logits, row, &mut next);
                logits[r].push(next);
            }
        }
        states
            .into_iter()
            .zip(fed)
            .zip(logits)
            .map(|((mut state, fed), logits)| {
                state.settle(b);
                trace(state, fed, logits)
            })
            .collect()
    }

    /// Batches of 1 to 4 sequences (different images, prompt lengths and lengths of
    /// decoding) give every sequence the tokens, logits, reduction report and cache
    /// contents it has alone.
    fn check(model_name: &str, cases: &[Case]) {
        let (b, model) = load(model_name);
        let alone: Vec<Trace> = cases.iter().map(|&case| alone(&b, &model, case)).collect();
        for n in 1..=cases.len() {
            let together = together(&b, &model, &cases[..n]);
            for (r, (got, want)) in together.iter().zip(&alone).enumerate() {
                assert_eq!(got.fed, want.fed, "{model_name}, batch of {n}: tokens of sequence {r}");
                for (s, (g, w)) in got.logits.iter().zip(&want.logits).enumerate() {
                    let worst = g.iter().zip(w).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
                    assert!(
                        worst <= 1e-6,
                        "{model_name}, batch of {n}: sequence {r}, step {s}: logits differ by {worst}"
                    );
                }
                assert_eq!(got.logits.len(), want.logits.len());
                assert_eq!(
                    got.report, want.report,
                    "{model_name}, batch of {n}: report of sequence {r}"
                );
                assert_eq!(
                    got.cache, want.cache,
                    "{model_name}, batch of {n}: cache of sequence {r}"
                );
            }
        }
    }

    #[test]
    fn a_batch_computes_what_each_sequence_computes_alone() {
        let cases = [
            Case {
                spec: "none",
                image: 0,
                text: 3,
                steps: 6,
            },
            Case {
                spec: "none",
                image: 1,
                text: 9,
                steps: 2,
            },
            Case {
                spec: "none",
                image: 2,
                text: 1,
                steps: 8,
            },
            Case {
                spec: "none",
                image: 3,
                text: 5,
                steps: 4,
            },
        ];
        check("tiny-llava-gqa", &cases);
        check("tiny-llava-bf16", &cases);
    }

    /// The same with reductions whose cache policies act while decoding: evictions
    /// (MustDrop), refused tokens (Dynamic-LLaVA), positions renumbered, and sequences
    /// with different reductions in one batch.
    #[test]
    fn cache_policies_act_per_sequence_in_a_batch() {
        let evict = "mustdrop:keep=32,tau=0.58,evict=0.3,warmup=2";
        let cases = [
            Case {
                spec: evict,
                image: 0,
                text: 4,
                steps: 7,
            },
            Case {
                spec: "dynamic",
                image: 1,
                text: 4,
                steps: 8,
            },
            Case {
                spec: "mustdrop:keep=16,positions=compact",
                image: 2,
                text: 6,
                steps: 3,
            },
            Case {
                spec: evict,
                image: 3,
                text: 1,
                steps: 5,
            },
        ];
        check("tiny-llava-reduce", &cases);
        // The reductions did act, so the comparison covered them.
        let (b, model) = load("tiny-llava-reduce");
        let report =
            |case: Case| -> serde_json::Value { serde_json::from_str(&alone(&b, &model, case).report).unwrap() };
        let evicted = report(cases[0])["decode_evicted"].as_array().unwrap().len();
        assert!(evicted > 0, "MustDrop evicted nothing");
        let admitted = report(cases[1])["decode_admitted"].clone();
        assert!(
            admitted.as_array().unwrap().contains(&false.into()),
            "Dynamic-LLaVA refused no token: {admitted}"
        );
    }
}
