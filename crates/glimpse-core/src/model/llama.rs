//! Llama-family decoder (as transformers' LlamaModel + lm_head): RMSNorm, rotary
//! positions, grouped-query attention over a KV cache, gated MLP.
//!
//! Shapes: `n` tokens, hidden width H, `h` query heads and `kv` key/value heads of
//! `d` features each.

use super::config::TextConfig;
use super::{Linear, Loader};
use crate::backend::{AttentionParams, Backend};
use crate::error::Result;
use crate::generate::kv_cache::KvCache;

struct DecoderLayer<B: Backend> {
    input_layernorm: B::Weight,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    post_attention_layernorm: B::Weight,
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn load(l: &Loader<'_, B>, cfg: &TextConfig) -> Result<Self> {
        let (hid, inter, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
        let attn = l.at("self_attn");
        let mlp = l.at("mlp");
        Ok(DecoderLayer {
            input_layernorm: l.get("input_layernorm.weight", &[hid])?,
            q_proj: Linear::load(&attn, "q_proj", hid, q_out, cfg.attention_bias)?,
            k_proj: Linear::load(&attn, "k_proj", hid, kv_out, cfg.attention_bias)?,
            v_proj: Linear::load(&attn, "v_proj", hid, kv_out, cfg.attention_bias)?,
            o_proj: Linear::load(&attn, "o_proj", q_out, hid, cfg.attention_bias)?,
            post_attention_layernorm: l.get("post_attention_layernorm.weight", &[hid])?,
            gate_proj: Linear::load(&mlp, "gate_proj", hid, inter, cfg.mlp_bias)?,
            up_proj: Linear::load(&mlp, "up_proj", hid, inter, cfg.mlp_bias)?,
            down_proj: Linear::load(&mlp, "down_proj", inter, hid, cfg.mlp_bias)?,
        })
    }
}

/// Buffers reused by every layer and every decode step of one generation.
pub struct LlamaScratch<B: Backend> {
    normed: B::Tensor,
    q: B::Tensor,
    k: B::Tensor,
    v: B::Tensor,
    attn: B::Tensor,
    proj: B::Tensor,
    gate: B::Tensor,
    up: B::Tensor,
    last: B::Tensor,
    selected: B::Tensor,
    pub logits: B::Tensor,
}

impl<B: Backend> LlamaScratch<B> {
    pub fn new(b: &B) -> Self {
        LlamaScratch {
            normed: b.new_tensor(),
            q: b.new_tensor(),
            k: b.new_tensor(),
            v: b.new_tensor(),
            attn: b.new_tensor(),
            proj: b.new_tensor(),
            gate: b.new_tensor(),
            up: b.new_tensor(),
            last: b.new_tensor(),
            selected: b.new_tensor(),
            logits: b.new_tensor(),
        }
    }
}

/// One sequence's row in [`Llama::forward_layer_batch`]: where its new token sits, the
/// sequence's cache, and its own scratch (which receives the row's query and attention).
pub struct BatchRow<'a, B: Backend> {
    pub position: u32,
    pub origin: u32,
    pub cache: &'a mut KvCache<B>,
    pub scratch: &'a mut LlamaScratch<B>,
}

pub struct Llama<B: Backend> {
    cfg: TextConfig,
    embed_tokens: B::Weight,
    layers: Vec<DecoderLayer<B>>,
    norm: B::Weight,
    /// `None` when the output projection is tied to `embed_tokens`.
    lm_head: Option<B::Weight>,
}

impl<B: Backend> Llama<B> {
    /// `model` is the decoder's prefix (`language_model.model`), `lm_head` the output
    /// projection's full name.
    pub(crate) fn load(model: &Loader<'_, B>, lm_head: &Loader<'_, B>, cfg: &TextConfig) -> Result<Self> {
        // LlavaConfig has checked that the head counts divide evenly.
        let (vocab, hid) = (cfg.vocab_size, cfg.hidden_size);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(&model.at(&format!("layers.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings && !lm_head.contains("weight") {
            None
        } else {
            Some(lm_head.get("weight", &[vocab, hid])?)
        };
        Ok(Llama {
            cfg: cfg.clone(),
            embed_tokens: model.get("embed_tokens.weight", &[vocab, hid])?,
            layers,
            norm: model.get("norm.weight", &[hid])?,
            lm_head,
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// Width of one cached key (or value) row.
    pub fn kv_width(&self) -> usize {
        self.cfg.num_key_value_heads * self.cfg.head_dim
    }

    pub fn new_cache(&self, b: &B, capacity: usize) -> KvCache<B> {
        KvCache::new(b, self.layers.len(), capacity, self.kv_width())
    }

    /// Token embeddings for `ids` into `out` [n, H].
    pub fn embed(&self, b: &B, ids: &[u32], out: &mut B::Tensor) {
        b.gather_rows(&self.embed_tokens, ids, out);
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Weight bytes one decode step reads: every layer, the final norm and the output
    /// projection (of the embedding table it reads one row, not counted).
    pub fn decode_weight_bytes(&self, b: &B) -> usize {
        let linear = |l: &Linear<B>| b.weight_bytes(&l.weight) + l.bias.as_ref().map_or(0, |w| b.weight_bytes(w));
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                b.weight_bytes(&l.input_layernorm)
                    + b.weight_bytes(&l.post_attention_layernorm)
                    + [
                        &l.q_proj,
                        &l.k_proj,
                        &l.v_proj,
                        &l.o_proj,
                        &l.gate_proj,
                        &l.up_proj,
                        &l.down_proj,
                    ]
                    .into_iter()
                    .map(linear)
                    .sum::<usize>()
            })
            .sum();
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        layers + b.weight_bytes(&self.norm) + b.weight_bytes(head)
    }

    fn attention_params(&self) -> AttentionParams {
        let cfg = &self.cfg;
        AttentionParams {
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            causal: true,
            scale: (cfg.head_dim as f32).powf(-0.5),
        }
    }

    /// Runs decoder layer `i` over `x` [n, H] (rows rotated to `positions`), appending
    /// their keys and values to the layer's cache under `origins`; `x` becomes the layer's
    /// output. The rows' rotated queries stay in `s` for [`Llama::attention_rows`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_layer(
        &self,
        b: &B,
        i: usize,
        x: &mut B::Tensor,
        positions: &[u32],
        origins: &[u32],
        cache: &mut KvCache<B>,
        s: &mut LlamaScratch<B>,
    ) -> Result<()> {
        self.attention_input(b, i, x, positions, s);
        self.attend(b, i, positions, origins, cache, s)?;
        self.attention_output_and_mlp(b, i, x, s);
        Ok(())
    }

    /// Layer `i` over one new token of each of several sequences, stacked as the rows of
    /// `x` [n, H]: the projections and the MLP take all rows at once (each weight is read
    /// once for the whole batch), while each row is rotated to its own position and attends
    /// over its own sequence's cache. Row `r`'s rotated query is left in `rows[r].scratch`
    /// as [`Llama::forward_layer`] would leave it, for [`Llama::attention_rows`].
    pub fn forward_layer_batch(
        &self,
        b: &B,
        i: usize,
        x: &mut B::Tensor,
        rows: &mut [BatchRow<'_, B>],
        s: &mut LlamaScratch<B>,
    ) -> Result<()> {
        let positions: Vec<u32> = rows.iter().map(|r| r.position).collect();
        self.attention_input(b, i, x, &positions, s);
        let cols = b.shape(&s.q).1;
        b.reserve_rows(&mut s.attn, rows.len(), cols);
        for (r, row) in rows.iter_mut().enumerate() {
            let own = &mut *row.scratch;
            for (stacked, single) in [(&s.q, &mut own.q), (&s.k, &mut own.k), (&s.v, &mut own.v)] {
                b.reserve_rows(single, 1, b.shape(stacked).1);
                b.copy_rows(stacked, r, single, 0, 1);
            }
            self.attend(b, i, &[row.position], &[row.origin], row.cache, own)?;
            b.copy_rows(&own.attn, 0, &mut s.attn, r, 1);
        }
        self.attention_output_and_mlp(b, i, x, s);
        Ok(())
    }

    /// Normalises `x` and projects it to rotated queries and keys, and values, in `s`.
    fn attention_input(&self, b: &B, i: usize, x: &B::Tensor, positions: &[u32], s: &mut LlamaScratch<B>) {
        let cfg = &self.cfg;
        let layer = &self.layers[i];
        let (h, kv, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        b.rms_norm(x, &layer.input_layernorm, cfg.rms_norm_eps, &mut s.normed);
        layer.q_proj.forward(b, &s.normed, &mut s.q);
        layer.k_proj.forward(b, &s.normed, &mut s.k);
        layer.v_proj.forward(b, &s.normed, &mut s.v);
        b.rope(&mut s.q, positions, h, d, cfg.rope_theta);
        b.rope(&mut s.k, positions, kv, d, cfg.rope_theta);
    }

    /// Appends the keys and values in `s` to layer `i`'s cache, then attends the queries
    /// in `s` over it into `s.attn`.
    fn attend(
        &self,
        b: &B,
        i: usize,
        positions: &[u32],
        origins: &[u32],
        cache: &mut KvCache<B>,
        s: &mut LlamaScratch<B>,
    ) -> Result<()> {
        cache.append(b, i, &s.k, &s.v, positions, origins)?;
        let layer_cache = &cache.layers[i];
        b.attention(
            &s.q,
            &layer_cache.k,
            &layer_cache.v,
            layer_cache.len,
            self.attention_params(),
            &mut s.attn,
        );
        Ok(())
    }

    /// The rest of the layer once `s.attn` holds the attention: output projection and
    /// residual, then the gated MLP and residual, into `x`.
    fn attention_output_and_mlp(&self, b: &B, i: usize, x: &mut B::Tensor, s: &mut LlamaScratch<B>) {
        let cfg = &self.cfg;
        let layer = &self.layers[i];
        layer.o_proj.forward(b, &s.attn, &mut s.proj);
        b.add(x, &s.proj);

        b.rms_norm(x, &layer.post_attention_layernorm, cfg.rms_norm_eps, &mut s.normed);
        layer.gate_proj.forward(b, &s.normed, &mut s.gate);
        layer.up_proj.forward(b, &s.normed, &mut s.up);
        b.gated_activate(&mut s.gate, &s.up, cfg.hidden_act);
        layer.down_proj.forward(b, &s.gate, &mut s.proj);
        b.add(x, &s.proj);
    }

    /// Head-averaged attention probabilities of some rows of the last `forward_layer` call
    /// over the first `visible[r]` rows of layer `i`'s cache, as `queries.len() × cache
    /// length` (the side pass token filters read; the main attention stays fused).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_rows(
        &self,
        b: &B,
        i: usize,
        queries: &[usize],
        visible: &[usize],
        cache: &KvCache<B>,
        s: &mut LlamaScratch<B>,
        out: &mut Vec<f32>,
    ) {
        b.select_rows(&s.q, queries, &mut s.selected);
        let layer_cache = &cache.layers[i];
        b.attention_probs(
            &s.selected,
            &layer_cache.k,
            layer_cache.len,
            visible,
            self.attention_params(),
            out,
        );
    }

    /// Adds `weight` × the head-averaged attention of the last `forward_layer` call's single
    /// row (a decode token) over layer `i`'s cache to `totals`, on the backend.
    pub fn accumulate_attention(
        &self,
        b: &B,
        i: usize,
        cache: &KvCache<B>,
        s: &LlamaScratch<B>,
        weight: f32,
        totals: &mut B::Tensor,
    ) {
        let layer_cache = &cache.layers[i];
        b.accumulate_attention(
            &s.q,
            &layer_cache.k,
            layer_cache.len,
            self.attention_params(),
            weight,
            totals,
        );
    }

    /// Logits of the last row of `x` into `s.logits` [1, vocab]: only the next token's
    /// distribution is ever needed, so the vocabulary projection skips the other rows.
    pub fn logits_of_last(&self, b: &B, x: &B::Tensor, s: &mut LlamaScratch<B>) {
        let (n, hid) = b.shape(x);
        b.reserve_rows(&mut s.last, 1, hid);
        b.copy_rows(x, n - 1, &mut s.last, 0, 1);
        b.rms_norm(&s.last, &self.norm, self.cfg.rms_norm_eps, &mut s.normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        b.linear(&s.normed, head, None, &mut s.logits);
    }

    /// Logits of every row of `x` into `s.logits` [n, vocab]: for a decode batch, whose
    /// rows are each the last token of their own sequence.
    pub fn logits_of_rows(&self, b: &B, x: &B::Tensor, s: &mut LlamaScratch<B>) {
        b.rms_norm(x, &self.norm, self.cfg.rms_norm_eps, &mut s.normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        b.linear(&s.normed, head, None, &mut s.logits);
    }
}
