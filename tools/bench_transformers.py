"""The transformers peer of `glimpse-bench --device cuda`, for the same request on the same GPU.

Loads the synthetic checkpoint `glimpse-bench --synthetic-7b` writes (random weights with
LLaVA-1.5-7B's shapes, llava-hf layout) with transformers' LlavaForConditionalGeneration in
fp16, feeds it the prompt glimpse-bench builds (BOS, the image's 576 tokens, the same text
token ids) and the same pixel values, and measures what glimpse-bench reports:

- ttft_ms: the prefill forward pass over image and prompt, up to the first token;
- decode_tokens_per_s: greedy decoding, one token per forward pass with the KV cache, for
  exactly --decode-tokens tokens (no end-of-sequence stop: the weights are random);
- kv_bytes_final: bytes of keys and values held after those tokens (transformers keeps them
  in fp16; glimpse keeps f32 keys and values, twice the bytes per token).

No reduction: transformers has none of glimpse's methods. Prints one JSON object.

    python tools/bench_transformers.py --model /tmp/glimpse-bench-synthetic --decode-tokens 2000
"""

import argparse
import json
import time

import torch
import transformers
from transformers import LlavaForConditionalGeneration


def prompt_ids(config, image_tokens: int, text_tokens: int) -> list[int]:
    """glimpse-bench's prompt: BOS, the image slot, then text ids (100 + 37·i) mod vocab."""
    vocab = config.text_config.vocab_size
    text = [(100 + i * 37) % vocab for i in range(text_tokens)]
    return [1] + [config.image_token_index] * image_tokens + text


def pixel_values(size: int) -> torch.Tensor:
    """glimpse-bench's image: channel-major values ((7919·i) mod 255) / 64 − 2."""
    i = torch.arange(3 * size * size, dtype=torch.int64)
    values = ((i * 7919) % 255).to(torch.float32) / 64.0 - 2.0
    return values.reshape(1, 3, size, size)


def kv_bytes(cache) -> int:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return sum(layer.keys.nbytes + layer.values.nbytes for layer in layers)
    return sum(k.nbytes + v.nbytes for k, v in cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the synthetic checkpoint directory")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--decode-tokens", type=int, default=2000)
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (to try the script out)")
    args = parser.parse_args()

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"

    def synchronize():
        if on_gpu:
            torch.cuda.synchronize(device)

    dtype = getattr(torch, args.dtype)
    model = LlavaForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(device).eval()
    config = model.config
    size = config.vision_config.image_size
    image_tokens = (size // config.vision_config.patch_size) ** 2
    ids = torch.tensor([prompt_ids(config, image_tokens, args.text_tokens)], device=device)
    pixels = pixel_values(size).to(device=device, dtype=dtype)

    def prefill():
        synchronize()
        started = time.perf_counter()
        out = model(input_ids=ids, pixel_values=pixels, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        token.item()
        return out.past_key_values, token, (time.perf_counter() - started) * 1e3

    with torch.inference_mode():
        prefill()  # warm-up: cuBLAS heuristics, allocator
        cache, token, ttft_ms = prefill()
        synchronize()
        started = time.perf_counter()
        for _ in range(args.decode_tokens):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        token.item()
        decode_s = time.perf_counter() - started

    device_name = torch.cuda.get_device_name(device) if on_gpu else "cpu"
    report = {
        "backend": f"transformers {transformers.__version__}, torch {torch.__version__}, {device_name}, {args.dtype}",
        "prompt_tokens": ids.shape[1],
        "ttft_ms": ttft_ms,
        "decode_tokens": args.decode_tokens,
        "decode_tokens_per_s": args.decode_tokens / decode_s,
        "kv_bytes_final": kv_bytes(cache),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if on_gpu else 0,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
